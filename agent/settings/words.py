"""The ``wake_words`` and ``commands`` sections: what the user says, and what it sets off.

`WakeWordSettings` is one wake word: its name (also its detector's file name), the phrase, the
user's recordings of it and its operating point (a target false-accept rate or a fixed threshold).
`LocalCommandSettings` is a voice command handled on the device after a wake word: a trained phrase
or a word of the base model's speech-commands head, and its action. Both share the name and phrase
rules checked here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from agent.settings.schema import in_range, join_path, show
from kernels.errors import ConfigError

DEFAULT_FALSE_ACCEPTS_PER_HOUR = 0.1
"""Target false accepts per hour of a wake word that sets neither a rate nor a threshold."""

_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
RESERVED_NAMES = frozenset({"base"})
"""Wake-word names the CLI uses for something else."""
_PHRASE_MAX_CHARS = 60
_PHRASE_PUNCTUATION = frozenset(" '\u2019-")


@dataclass(frozen=True)
class WakeWordSettings:
    """One wake word: what to listen for and how eagerly to fire."""

    name: str
    """Identifier, also the detector's file name: 1-40 of ``a-z 0-9 _ -``, not starting with
    ``_`` or ``-``."""
    phrase: str
    """What is said: letters (any case, accented included), spaces, apostrophes and hyphens."""
    recordings: tuple[str, ...] = ()
    """The user's own recordings of the phrase; ``~`` is expanded, and relative paths in a config
    file are relative to that file's directory. Existence is checked by enrollment, not here."""
    false_accepts_per_hour: float | None = field(default=None, metadata=in_range(0.001, 100))
    """Target false accepts per hour the threshold is calibrated for; see
    `target_false_accepts_per_hour`."""
    threshold: float | None = field(default=None, metadata=in_range(0.001, 0.999))
    """A fixed detection threshold on the smoothed score, instead of a calibrated one."""
    smoothing_hops: int = field(default=2, metadata=in_range(1, 20))
    """Scores are averaged over this many hops (80 ms on the imported base, 100 ms on the
    DS-CNN) before the threshold is applied."""
    refractory_s: float = field(default=2.0, metadata=in_range(0, 60))
    """After a detection, the same wake word cannot fire again for this many seconds."""
    verify_speaker: bool = False
    """Also require the voice to match the takes of ``earshot enroll`` (needs an enrollment)."""

    @property
    def target_false_accepts_per_hour(self) -> float | None:
        """The false-accept rate to calibrate for; None when a fixed `threshold` is set."""
        if self.threshold is not None:
            return None
        if self.false_accepts_per_hour is not None:
            return self.false_accepts_per_hour
        return DEFAULT_FALSE_ACCEPTS_PER_HOUR

    def _validate(self, path: str) -> None:
        """Check the name and phrase patterns, and that at most one operating point is set.

        Raises
        ------
        ConfigError
            A field breaks its pattern, or both ``false_accepts_per_hour`` and ``threshold`` are
            set.
        """
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, expected 1-40 characters of "
                "lowercase letters a-z, digits, '_' or '-', starting with a letter or digit"
            )
        if self.name in RESERVED_NAMES:
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, which is reserved "
                f"(`earshot train base` trains the base model); choose another name"
            )
        if not _is_phrase(self.phrase):
            raise ConfigError(
                f"{join_path(path, 'phrase')}: got {show(self.phrase)}, expected 1-"
                f"{_PHRASE_MAX_CHARS} characters of letters, spaces, apostrophes and hyphens, "
                "with at least one letter"
            )
        for index, recording in enumerate(self.recordings):
            if not recording.strip():
                raise ConfigError(
                    f"{join_path(path, 'recordings')}[{index}]: got {show(recording)}, "
                    "expected a file path"
                )
        if self.false_accepts_per_hour is not None and self.threshold is not None:
            raise ConfigError(
                f"{path or 'wake word'}: set false_accepts_per_hour or threshold, not both"
            )


def _is_phrase(text: str) -> bool:
    """Whether ``text`` is 1-60 letters, spaces, apostrophes and hyphens with a letter in it."""

    def allowed(char: str) -> bool:
        # Combining marks keep decomposed accented letters ("e" + U+0301) acceptable.
        return (
            char.isalpha()
            or char in _PHRASE_PUNCTUATION
            or unicodedata.category(char).startswith("M")
        )

    return (
        1 <= len(text) <= _PHRASE_MAX_CHARS
        and all(allowed(char) for char in text)
        and any(char.isalpha() for char in text)
    )


COMMAND_ACTIONS = ("shell", "event", "forward")


@dataclass(frozen=True)
class LocalCommandSettings:
    """A voice command handled on the device: said after a wake word, nothing is sent."""

    name: str
    """Identifier, also the command detector's file name (as for wake words)."""
    phrase: str | None = None
    """What is said; a detector is trained from it like a wake word's."""
    builtin: str | None = None
    """Instead of a phrase: a word of the built-in speech-commands head (yes, no, up, down,
    left, right, on, off, stop, go)."""
    action: Literal["shell", "event", "forward"] = "event"
    """``shell``: run ``run`` with the details in ``EARSHOT_*`` environment variables;
    ``event``: only emit a ``command`` event; ``forward``: send the utterance to the endpoint."""
    run: str | None = None
    """The shell command of ``action: shell``."""
    min_score: float = field(default=0.5, metadata=in_range(0.01, 0.999))
    """Score the utterance needs for this command to be chosen."""

    def _validate(self, path: str) -> None:
        """Check the name, exactly one of phrase and builtin, and the action's needs.

        Raises
        ------
        ConfigError
            A pattern is broken, or the fields do not fit together.
        """
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, expected 1-40 characters of "
                "lowercase letters a-z, digits, '_' or '-', starting with a letter or digit"
            )
        if (self.phrase is None) == (self.builtin is None):
            raise ConfigError(f"{path or 'command'}: set exactly one of phrase and builtin")
        if self.phrase is not None and not _is_phrase(self.phrase):
            raise ConfigError(
                f"{join_path(path, 'phrase')}: got {show(self.phrase)}, expected 1-"
                f"{_PHRASE_MAX_CHARS} characters of letters, spaces, apostrophes and hyphens"
            )
        if self.builtin is not None and self.builtin not in BUILTIN_COMMAND_WORDS:
            raise ConfigError(
                f"{join_path(path, 'builtin')}: got {show(self.builtin)}, expected one of "
                f"{list(BUILTIN_COMMAND_WORDS)}"
            )
        if (self.action == "shell") != (self.run is not None):
            raise ConfigError(
                f"{join_path(path, 'run')}: a shell command is needed with action: shell, "
                "and only then"
            )


BUILTIN_COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""Words of the shipped base model's speech-commands head."""
