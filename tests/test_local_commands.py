"""Local commands: the built-in speech-commands words, recognised in whole utterances."""

import numpy as np
import pytest

from agent.daemon.detectors import load_base
from agent.daemon.local_commands import MIN_SCORED_S, CommandMatcher, padded
from agent.settings import BUILTIN_COMMAND_WORDS, LocalCommandSettings, load_settings
from dsp.constants import SAMPLE_RATE_HZ
from models.speech.synth import Rendition, SpeechCache, Voice
from tests.conftest import require

VOICE = Voice("espeak-ng", "en-us")


@pytest.fixture(scope="module")
def matcher():
    base = load_base(load_settings())
    commands = [(LocalCommandSettings(name=w, builtin=w), None) for w in BUILTIN_COMMAND_WORDS]
    return CommandMatcher(base, commands)


def said(text: str) -> np.ndarray:
    import shutil

    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    return SpeechCache().get(Rendition(text, VOICE))


def test_a_short_utterance_is_centred_in_enough_silence_to_be_scored():
    word = np.ones(SAMPLE_RATE_HZ // 2, np.float32)  # a 0.5 s command: shorter than a window
    audio = padded(word)
    assert audio.size >= MIN_SCORED_S * SAMPLE_RATE_HZ
    start = int(np.flatnonzero(audio)[0])
    assert abs(start - (audio.size - start - word.size)) <= 0.3 * SAMPLE_RATE_HZ + 1
    assert np.array_equal(audio[start : start + word.size], word)


@pytest.mark.parametrize("word", BUILTIN_COMMAND_WORDS)
def test_each_built_in_word_is_matched_to_its_own_command(matcher, word):
    match = matcher.match(said(word))
    assert match is not None and match.command.name == word
    assert match.score >= match.command.min_score
