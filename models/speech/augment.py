"""Audio augmentation for training: make clean synthetic speech sound like a real room and mic.

Every function is pure: it takes samples at 16 kHz (float32 [shape=(n,)]) and explicit parameters,
and randomness comes only from the ``rng`` passed in, so a seeded `Augmenter` reproduces a data set
exactly. Training-side only (uses scipy and librosa); the agent never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from dsp.audio import resample
from dsp.constants import SAMPLE_RATE_HZ

SR = SAMPLE_RATE_HZ
_EPS = 1e-12


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster: duration / factor, every frequency x factor (tape speed)."""
    return resample(x, orig_sr=round(SR * factor), target_sr=SR)


PITCH_SHIFT_N_FFT = 512
"""Phase-vocoder window for pitch shifting, in samples (32 ms): short words are a few hundred ms."""


def shift_pitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration (librosa's phase vocoder)."""
    import librosa

    shifted = librosa.effects.pitch_shift(
        x.astype(np.float32), sr=SR, n_steps=semitones, n_fft=PITCH_SHIFT_N_FFT
    )
    return shifted.astype(np.float32)


FORMANT_FRAME, FORMANT_HOP, FORMANT_ORDER = 512, 128, 18
"""Frames (32 ms, every 8 ms) and linear-prediction order of `shift_formants`: 18 poles model
up to nine formants below 8 kHz."""
_TAIL = 256
"""Samples of each frame's filtered tail kept for the overlap-add."""


def _moved_predictors(predictors: np.ndarray, factor: float) -> np.ndarray:
    """Prediction polynomials [frames, order + 1] with their roots' angles scaled by ``factor``."""
    order = predictors.shape[1] - 1
    companion = np.zeros((predictors.shape[0], order, order))
    companion[:, 0, :] = -predictors[:, 1:]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    poles = np.linalg.eigvals(companion)
    angle = np.clip(np.abs(np.angle(poles)) * factor, 0.0, np.pi * 0.98)
    poles = np.abs(poles) * np.exp(1j * np.sign(np.angle(poles)) * angle)
    coefficients = np.zeros((predictors.shape[0], order + 1), complex)
    coefficients[:, 0] = 1.0
    for k in range(order):  # multiply by (1 - p_k z^-1), every frame at once
        coefficients[:, 1 : k + 2] -= poles[:, k : k + 1] * coefficients[:, : k + 1]
    return coefficients.real


def shift_formants(x: np.ndarray, factor: float) -> np.ndarray:
    """Scale the formant frequencies by ``factor``, keeping pitch and duration.

    A shorter vocal tract (a child, many women) has formants up to ~20 % higher than a long one
    at the same pitch: this is vocal-tract length perturbation. Source and filter are separated
    by linear prediction, frame by frame: the frame is inverse-filtered to its excitation (the
    pitch pulses), the prediction filter's pole angles are scaled by ``factor`` (the formants
    move, their bandwidths stay), and the excitation is filtered again with the moved poles; the
    frames are overlap-added. Output level follows the input's.
    """
    from scipy.linalg import solve_toeplitz

    x = np.asarray(x, dtype=np.float64)
    if x.size < FORMANT_FRAME or not np.any(x):
        return x.astype(np.float32)
    window = sps.get_window("hann", FORMANT_FRAME)
    starts = np.arange(0, x.size, FORMANT_HOP)
    padded = np.concatenate((x, np.zeros(FORMANT_FRAME)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, FORMANT_FRAME)[starts] * window
    # Autocorrelation of every frame at once; a faint floor keeps silent frames well posed.
    spectrum = np.abs(np.fft.rfft(frames, 2 * FORMANT_FRAME, axis=1)) ** 2
    autocorrelation = np.fft.irfft(spectrum, axis=1)[:, : FORMANT_ORDER + 1]
    autocorrelation[:, 0] *= 1.0 + 1e-6
    autocorrelation[:, 0] += 1e-12
    predictors = np.stack(
        [np.concatenate(([1.0], -solve_toeplitz(r[:-1], r[1:]))) for r in autocorrelation]
    )
    moved = _moved_predictors(predictors, factor)
    out = np.zeros(x.size + FORMANT_FRAME + _TAIL)
    tail = np.zeros(_TAIL)
    for start, frame, a, b in zip(starts, frames, predictors, moved, strict=True):
        if np.any(frame):
            source = sps.lfilter(a, [1.0], np.concatenate((frame, tail)))
            out[start : start + FORMANT_FRAME + _TAIL] += sps.lfilter([1.0], b, source)
    out = out[: x.size] * (FORMANT_HOP / window.sum())
    scale = _rms(x) / (_rms(out) + _EPS)
    return (out * scale).astype(np.float32)


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels."""
    return (x * 10 ** (gain_db / 20)).astype(np.float32)


def colored_noise(n: int, *, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1/f^exponent (0 white, 1 pink, 2 brown) [shape=(n,)]."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return (noise / (_rms(noise) + _EPS)).astype(np.float32)


def babble(n: int, talkers: Sequence[np.ndarray], *, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS crowd noise: the given speech clips, tiled with random offsets and summed."""
    out = np.zeros(n, dtype=np.float64)
    for clip in talkers:
        if clip.size == 0:
            continue
        tiled = np.tile(clip, n // clip.size + 2)
        start = int(rng.integers(0, clip.size))
        out += tiled[start : start + n] / (_rms(clip) + _EPS)
    return (out / (_rms(out) + _EPS)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` (tiled or cut to length) scaled so that speech power / noise power = snr_db."""
    noise = np.resize(noise, speech.shape)
    scale = _rms(speech) / (_rms(noise) + _EPS) / 10 ** (snr_db / 20)
    return (speech + scale * noise).astype(np.float32)


def synthetic_rir(
    *, rt60_s: float, rng: np.random.Generator, direct_ratio_db: float = 0.0
) -> np.ndarray:
    """A room impulse response: a direct path, then exponentially decaying diffuse noise.

    Parameters
    ----------
    rt60_s : float
        Reverberation time, in seconds (time for the energy to fall by 60 dB); 0.1-1.2 is typical.
    rng : np.random.Generator
        Source of the diffuse tail.
    direct_ratio_db : float
        Energy of the direct path relative to the tail, in dB.

    Returns
    -------
    np.ndarray
        float32 [shape=(round(rt60_s * SR),)], direct path at sample 0.
    """
    n = max(2, round(rt60_s * SR))
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-3 * np.log(10) * t / rt60_s)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= 10 ** (-direct_ratio_db / 20) / (np.linalg.norm(tail) + _EPS)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir``, keep the input's length, and restore its RMS level."""
    wet = sps.fftconvolve(x, rir)[: x.size]
    return (wet * (_rms(x) / (_rms(wet) + _EPS))).astype(np.float32)


def band_limit(x: np.ndarray, *, low_hz: float, high_hz: float, order: int = 6) -> np.ndarray:
    """Butterworth band-pass from ``low_hz`` to ``high_hz`` (a telephone is 300-3400 Hz)."""
    sos = sps.butter(order, [low_hz, high_hz], btype="bandpass", fs=SR, output="sos")
    return sps.sosfiltfilt(sos, x).astype(np.float32)


def color_microphone(x: np.ndarray, *, rng: np.random.Generator, max_db: float = 6.0) -> np.ndarray:
    """A random smooth EQ curve (+-``max_db`` at 8 log-spaced points) like a cheap microphone's."""
    points_hz = np.geomspace(100, SR / 2, 8)
    gains_db = rng.uniform(-max_db, max_db, points_hz.size)
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    curve_db = np.interp(np.log(np.maximum(freqs, points_hz[0])), np.log(points_hz), gains_db)
    return np.fft.irfft(np.fft.rfft(x) * 10 ** (curve_db / 20), x.size).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation (all ranges inclusive)."""

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.85, 1.15)
    pitch_prob: float = 0.5
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)
    formant_prob: float = 0.0
    """Vocal-tract length perturbation (`shift_formants`); off unless asked for, so data sets
    made before it existed are made the same."""
    formant_range: tuple[float, float] = (0.85, 1.18)
    reverb_prob: float = 0.4
    rt60_range_s: tuple[float, float] = (0.15, 0.9)
    band_limit_prob: float = 0.3
    narrowband_share: float = 0.5
    """Of the band-limited clips, the share cut at 3.4-4 kHz, like Bluetooth headsets, telephones
    and 8 kHz recordings; the rest keep up to 4-7.5 kHz."""
    mic_color_prob: float = 0.5
    noise_prob: float = 0.8
    snr_range_db: tuple[float, float] = (5.0, 30.0)
    babble_share: float = 0.35
    """Of the noisy clips, the share whose noise is babble rather than coloured noise."""
    gain_range_db: tuple[float, float] = (-20.0, 6.0)


class Augmenter:
    """Applies a random chain of augmentations; reproducible for a given ``rng`` state.

    Parameters
    ----------
    config : AugmentConfig
        What to apply and how strongly.
    babble_sources : sequence of np.ndarray
        Speech clips to build babble from (other words and sentences).
    """

    def __init__(
        self, config: AugmentConfig | None = None, babble_sources: Sequence[np.ndarray] = ()
    ):
        self.config = config or AugmentConfig()
        self.babble_sources = list(babble_sources)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return an augmented copy of ``x`` (its length may change with speed perturbation)."""
        c = self.config
        if rng.random() < c.speed_prob:
            x = change_speed(x, rng.uniform(*c.speed_range))
        if rng.random() < c.pitch_prob:
            x = shift_pitch(x, rng.uniform(*c.pitch_semitones))
        if c.formant_prob > 0 and rng.random() < c.formant_prob:
            x = shift_formants(x, rng.uniform(*c.formant_range))
        if rng.random() < c.reverb_prob:
            x = reverberate(x, synthetic_rir(rt60_s=rng.uniform(*c.rt60_range_s), rng=rng))
        if rng.random() < c.mic_color_prob:
            x = color_microphone(x, rng=rng)
        if rng.random() < c.band_limit_prob:
            narrow = rng.random() < c.narrowband_share
            high_hz = rng.uniform(3400, 4000) if narrow else rng.uniform(4000, 7500)
            x = band_limit(x, low_hz=rng.uniform(60, 300), high_hz=high_hz)
        if rng.random() < c.noise_prob:
            x = mix_at_snr(x, self._noise(x.size, rng), rng.uniform(*c.snr_range_db))
        # A real converter clips: loud takes saturate at full scale.
        return np.clip(apply_gain(x, rng.uniform(*c.gain_range_db)), -1.0, 1.0)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.babble_sources and rng.random() < self.config.babble_share:
            picks = rng.choice(
                len(self.babble_sources), size=min(5, len(self.babble_sources)), replace=False
            )
            return babble(n, [self.babble_sources[i] for i in picks], rng=rng)
        return colored_noise(n, exponent=rng.uniform(0.0, 2.0), rng=rng)
