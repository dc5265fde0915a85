"""Local commands: the built-in speech-commands words, recognised in whole utterances.

The words are scored by the base's speech-commands head (`load_words_head`): the DS-CNN's own,
or the head shipped for the imported base.
"""

import numpy as np
import pytest

from agent.daemon.detectors import load_words_head
from agent.daemon.local_commands import MIN_SCORED_S, CommandMatcher, padded
from agent.settings import BUILTIN_COMMAND_WORDS, LocalCommandSettings
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ModelError
from models.base.architecture import BaseConfig, build_base
from models.base.loading import load_base
from models.base.model import BaseModel
from models.speech.synth import Rendition, SpeechCache, Voice
from tests.conftest import require

VOICE = Voice("espeak-ng", "en-us")


@pytest.fixture(scope="module", params=["dscnn", "speech_embedding"])
def matcher(request):
    base = load_base(request.param)
    words = load_words_head(base)
    assert set(BUILTIN_COMMAND_WORDS) <= set(words.labels)
    assert words.base_sha256 == base.sha256
    commands = [(LocalCommandSettings(name=w, builtin=w), None) for w in BUILTIN_COMMAND_WORDS]
    return CommandMatcher(base, commands, words)


def test_a_ds_cnn_without_a_commands_head_has_no_words_for_built_in_commands():
    small = BaseConfig(first_channels=8, channels=16, blocks=1, embedding_dim=12)
    headless = BaseModel(small, build_base(small, np.random.default_rng(0)))
    assert headless.commands_head() is None
    with pytest.raises(ModelError, match="no speech-commands head"):
        load_words_head(headless)


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


def test_half_a_second_of_silence_is_no_command(matcher):
    probabilities = matcher.words.probabilities(matcher.base, np.zeros(8000, np.float32))
    assert probabilities.shape == (len(matcher.words.labels),)
    if matcher.base.name == "dscnn":
        # Below one 1 s window the DS-CNN's head has nothing to score: every probability is 0.
        assert not probabilities.any()
    else:  # the imported base's head centres short audio in silence, and hears silence
        assert matcher.words.labels[int(np.argmax(probabilities))] == "_silence_"


def test_a_matcher_refuses_built_in_words_its_head_does_not_know():
    base = load_base()
    commands = [(LocalCommandSettings(name="stop", builtin="stop"), None)]
    with pytest.raises(ModelError, match=r"built-in words \['stop'\]"):
        CommandMatcher(base, commands, None)
