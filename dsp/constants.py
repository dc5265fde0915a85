"""Front-end settings: the single place where earshot's audio and feature parameters live.

Every value carries its unit in its name. Models store these next to their weights
(see ``FrontEndSettings``) and refuse to load when they differ from the live front end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SAMPLE_RATE_HZ = 16_000
"""Sample rate of everything past the audio sources, in Hz (mono)."""

WINDOW_MS = 25
"""Analysis window length, in milliseconds."""

HOP_MS = 10
"""Hop between consecutive feature frames, in milliseconds."""

WINDOW_SAMPLES = SAMPLE_RATE_HZ * WINDOW_MS // 1000
"""Analysis window length, in samples (400)."""

HOP_SAMPLES = SAMPLE_RATE_HZ * HOP_MS // 1000
"""Hop between feature frames, in samples (160)."""

N_FFT = 512
"""FFT size, in samples; the Hann window is zero-padded to this length, centred."""

N_FREQ_BINS = N_FFT // 2 + 1
"""Number of one-sided FFT bins (257)."""

N_MELS = 40
"""Number of mel bands."""

F_MIN_HZ = 0.0
"""Lowest mel filter edge, in Hz."""

F_MAX_HZ = SAMPLE_RATE_HZ / 2
"""Highest mel filter edge, in Hz (Nyquist)."""

LOG_FLOOR = 1e-6
"""Added to the mel power before the natural log, so silence maps to log(1e-6) ~ -13.8."""

FRAMES_PER_SECOND = 1000 // HOP_MS
"""Feature frames per second of audio (100)."""

SILENCE_DBFS = -120.0
"""The level reported for digital silence, and the floor of every level in dBFS."""


@dataclass(frozen=True)
class FrontEndSettings:
    """The front-end parameters a model was trained with.

    Parameters
    ----------
    sample_rate_hz, window_samples, hop_samples, n_fft, n_mels : int
        As the module constants of the same meaning.
    f_min_hz, f_max_hz : float
        Mel filter range, in Hz.
    log_floor : float
        Constant added before the log.
    """

    sample_rate_hz: int = SAMPLE_RATE_HZ
    window_samples: int = WINDOW_SAMPLES
    hop_samples: int = HOP_SAMPLES
    n_fft: int = N_FFT
    n_mels: int = N_MELS
    f_min_hz: float = F_MIN_HZ
    f_max_hz: float = F_MAX_HZ
    log_floor: float = LOG_FLOOR

    def as_dict(self) -> dict[str, float | int]:
        """Return the settings as a plain dict, for storing beside model weights."""
        return asdict(self)

    def differences(self, other: FrontEndSettings) -> list[str]:
        """List ``"name: self_value != other_value"`` for every field that differs."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}" for key in mine if mine[key] != theirs[key]
        ]


LIVE_FRONT_END = FrontEndSettings()
"""The settings this build of earshot computes features with."""
