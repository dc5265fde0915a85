"""Feedback the user chose to keep: false alarms they marked and wake words the agent missed.

With ``learning.enabled``, `earshot feedback false-alarm` keeps the audio around the agent's last
detection and `earshot feedback missed` the last few seconds, both from the running agent's
memory (`agent.daemon.loop.Daemon.feedback`). Each clip is a 16 kHz WAV file beside a JSON file
saying what it is, in one owner-only folder::

    ~/.local/share/earshot/feedback/                     drwx------
        20261206T020304-false-alarm-computer.wav         -rw-------
        20261206T020304-false-alarm-computer.json        -rw-------   kind, wake word, score...

`FeedbackStore.keep` deletes clips older than ``max_age_days`` and then the oldest ones beyond
``max_mb``; `FeedbackStore.clear` deletes them all (or one wake word's), and the detectors
learned from them (``models/NAME.npz``, written by `agent.learning.improve`). Nothing here is ever
forwarded: the privacy gate never reads this folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent.private_files import private_dir, wav_bytes, write_private
from agent.settings import LearningSettings
from dsp.constants import SAMPLE_RATE_HZ

MODELS_FOLDER = "models"
EXAMPLES_FOLDER = "examples"
"""Placed, embedded examples of the user's takes, kept between fine-tunes (a cache)."""
"""Detectors learned from the clips (`agent.learning.improve`), in the feedback folder."""
Kind = Literal["false-alarm", "missed"]
KINDS: tuple[Kind, ...] = ("false-alarm", "missed")


@dataclass(frozen=True)
class FeedbackClip:
    """One kept clip, as its JSON file describes it."""

    audio_path: Path
    kind: str
    wake_word: str
    kept_at: float
    """`time.time` when it was kept."""
    seconds: float
    score: float | None

    @property
    def info_path(self) -> Path:
        """The JSON file beside the audio."""
        return self.audio_path.with_suffix(".json")

    @property
    def size(self) -> int:
        """Bytes on disk, audio and description."""
        return sum(p.stat().st_size for p in (self.audio_path, self.info_path) if p.exists())

    def delete(self) -> None:
        """Remove the clip's files."""
        for path in (self.audio_path, self.info_path):
            path.unlink(missing_ok=True)


class FeedbackStore:
    """The feedback folder and its limits (from the ``learning`` settings)."""

    def __init__(self, settings: LearningSettings) -> None:
        self.directory = settings.resolved_directory()
        self.max_bytes = int(settings.max_mb * 1e6)
        self.max_age_s = settings.max_age_days * 86400.0

    def keep(
        self, kind: Kind, wake_word: str, audio: np.ndarray, **details: Any
    ) -> FeedbackClip:
        """Write a clip (owner-only), then apply the age and size limits; return the clip."""
        if kind not in KINDS:
            raise ValueError(f"kind: got {kind!r}, expected one of {list(KINDS)}")
        private_dir(self.directory)
        now = time.time()
        stem = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{kind}-{wake_word}"
        audio_path = self.directory / f"{stem}.wav"
        for n in range(2, 1000):  # two in one second: number the later ones
            if not audio_path.exists():
                break
            audio_path = self.directory / f"{stem}-{n}.wav"
        seconds = round(audio.size / SAMPLE_RATE_HZ, 3)
        info = {"kind": kind, "wake_word": wake_word, "kept_at": now, "seconds": seconds, **details}
        write_private(audio_path, wav_bytes(audio))
        write_private(audio_path.with_suffix(".json"), json.dumps(info, indent=2).encode())
        self.prune(now)
        return _clip(audio_path, info)

    def clips(self, wake_word: str | None = None) -> list[FeedbackClip]:
        """Kept clips, oldest first (only ``wake_word``'s when given)."""
        if not self.directory.is_dir():
            return []
        found = []
        for info_path in self.directory.glob("*.json"):
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError):
                continue  # a half-written description: the clip is ignored until cleared
            audio_path = info_path.with_suffix(".wav")
            if audio_path.is_file() and (wake_word is None or info.get("wake_word") == wake_word):
                found.append(_clip(audio_path, info))
        return sorted(found, key=lambda c: (c.kept_at, c.audio_path.name))

    def prune(self, now: float | None = None) -> list[FeedbackClip]:
        """Delete clips past the age limit, then the oldest beyond the size limit; return them."""
        now = time.time() if now is None else now
        clips = self.clips()
        gone = [c for c in clips if now - c.kept_at > self.max_age_s]
        kept = [c for c in clips if c not in gone]
        total = sum(c.size for c in kept)
        while kept and total > self.max_bytes:
            oldest = kept.pop(0)
            total -= oldest.size
            gone.append(oldest)
        for clip in gone:
            clip.delete()
        return gone

    def clear(self, wake_word: str | None = None) -> int:
        """Delete the kept clips and the detectors learned from them; return how many clips.

        Only ``wake_word``'s when given.
        """
        clips = self.clips(wake_word)
        for clip in clips:
            clip.delete()
        models = self.directory / MODELS_FOLDER
        learned = models.glob("*" if wake_word is None else f"{wake_word}.*")
        strays = self.directory.glob("*.wav") if wake_word is None else iter(())
        examples = (self.directory / EXAMPLES_FOLDER).glob("*")  # derived from the user's voice
        for path in [*learned, *strays, *examples]:  # strays: audio whose description was lost
            path.unlink(missing_ok=True)
        return len(clips)


def examples_cache_dir(settings: LearningSettings) -> Path:
    """Where the examples made from the user's takes are kept between fine-tunes (owner-only)."""
    return settings.resolved_directory() / EXAMPLES_FOLDER


def learned_models_dir(settings: LearningSettings) -> Path:
    """Where detectors learned from feedback are kept (owner-only, beside the clips)."""
    return settings.resolved_directory() / MODELS_FOLDER


def _clip(audio_path: Path, info: dict[str, Any]) -> FeedbackClip:
    score = info.get("score")
    return FeedbackClip(
        audio_path, str(info.get("kind")), str(info.get("wake_word")),
        float(info.get("kept_at", 0.0)), float(info.get("seconds", 0.0)),
        None if score is None else float(score),
    )  # fmt: skip
