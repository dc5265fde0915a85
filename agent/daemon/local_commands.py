"""Voice commands handled on the device: which one, if any, an utterance after a wake word is.

A command is either a phrase, with a detector trained from text like a wake word's (``earshot
train`` trains both, and ``earshot enroll`` can fit it to a voice), or a word of the base model's
built-in speech-commands head. The utterance is scored whole, once it has ended: a phrase's score
is its detector's highest hop score over the utterance, a built-in word's its highest class
probability over the utterance's 1 s windows. The best command at or above its ``min_score`` is
handled locally; otherwise the utterance goes to the endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from agent.settings import LocalCommandSettings, WakeWordSettings
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ModelError
from models.base.geometry import Embedder, WordsHead
from models.wake.detector import stream_scores
from models.wake.model import WakeWordModel

_LOGGER = logging.getLogger(__name__)

TAIL_SILENCE_S = 0.3
"""Silence appended to an utterance so that a phrase at its very end still fills a context."""
MIN_SCORED_S = 1.3
"""Utterances shorter than this are centred in silence: the networks read whole 1 s windows."""


def padded(utterance: np.ndarray) -> np.ndarray:
    """``utterance`` with silence around: `TAIL_SILENCE_S` after at least, `MIN_SCORED_S` in all."""
    short = max(0, int(MIN_SCORED_S * SAMPLE_RATE_HZ) - utterance.size)
    lead = short // 2
    tail = max(short - lead, int(TAIL_SILENCE_S * SAMPLE_RATE_HZ))
    return np.concatenate((np.zeros(lead, np.float32), utterance, np.zeros(tail, np.float32)))


def as_wake_word(command: LocalCommandSettings) -> WakeWordSettings:
    """A phrase command as the wake-word settings its detector is trained and loaded with."""
    assert command.phrase is not None
    return WakeWordSettings(name=command.name, phrase=command.phrase)


@dataclass(frozen=True)
class Match:
    """The command an utterance was recognised as."""

    command: LocalCommandSettings
    score: float


class CommandMatcher:
    """Scores utterances against the configured local commands.

    Parameters
    ----------
    base : Embedder
        The base whose embedding the detectors and the built-in words' head read.
    commands : sequence of (LocalCommandSettings, WakeWordModel or None)
        Each command with its trained detector (None for built-in words).
    words : WordsHead, optional
        The speech-commands head built-in words are scored with; needed when any is configured.
    """

    def __init__(
        self,
        base: Embedder,
        commands: list[tuple[LocalCommandSettings, WakeWordModel | None]],
        words: WordsHead | None = None,
    ):
        self.base = base
        self.commands = commands
        self.words = words
        labels = words.labels if words is not None else []
        self._label_index = {label: i for i, label in enumerate(labels)}
        missing = [c.builtin for c, _ in commands if c.builtin and c.builtin not in labels]
        if missing:
            raise ModelError(
                f"commands: built-in words {missing} need a speech-commands head that knows them "
                f"(the head in use knows {labels or 'none'})"
            )

    def __bool__(self) -> bool:
        return bool(self.commands)

    def scores(self, utterance: np.ndarray) -> list[float]:
        """Every command's score for an utterance (16 kHz mono float), in config order."""
        audio = padded(np.asarray(utterance, np.float32))
        phrase_heads = [model.head for _, model in self.commands if model is not None]
        phrase_scores = iter(
            stream_scores(self.base, phrase_heads, audio).max(axis=0, initial=0.0)
            if phrase_heads
            else []
        )
        builtin = self._builtin_probabilities(audio)
        out = []
        for command, model in self.commands:
            if model is not None:
                out.append(float(next(phrase_scores)))
            else:
                assert command.builtin is not None
                out.append(float(builtin[self._label_index[command.builtin]]))
        return out

    def match(self, utterance: np.ndarray) -> Match | None:
        """The best-scoring command at or above its ``min_score``, or None."""
        if not self.commands:
            return None
        scores = self.scores(utterance)
        _LOGGER.debug(
            "command scores: %s",
            ", ".join(f"{c.name} {s:.3f}" for (c, _), s in zip(self.commands, scores, strict=True)),
        )
        best = max(range(len(scores)), key=lambda i: scores[i])
        command = self.commands[best][0]
        if scores[best] < command.min_score:
            return None
        return Match(command, scores[best])

    def _builtin_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Highest probability of every built-in class over the audio (`WordsHead`)."""
        if self.words is None or not any(model is None for _, model in self.commands):
            return np.zeros(0, np.float32)
        return self.words.probabilities(self.base, audio)
