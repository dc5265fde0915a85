"""Log-mel features: offline for whole signals, streaming for audio that arrives in chunks.

The framing reproduces ``librosa.feature.melspectrogram(center=False)``: frame ``i`` spans samples
``[i * HOP_SAMPLES, i * HOP_SAMPLES + N_FFT)`` and the Hann window (``WINDOW_SAMPLES`` long) sits in
its centre, zero-padded to ``N_FFT``. librosa is not imported here (it pulls in numba): the
mel filterbank is computed in numpy and checked against ``librosa.filters.mel`` by the tests.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dsp.constants import (
    F_MAX_HZ,
    F_MIN_HZ,
    HOP_SAMPLES,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
)

_WINDOW_OFFSET = (N_FFT - WINDOW_SAMPLES) // 2
"""Where the window starts inside an ``N_FFT``-long frame, in samples (56)."""

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3
_MEL_LOG_START_HZ = 1000.0
_MEL_LOG_START_MEL = _MEL_LOG_START_HZ / _MEL_LINEAR_HZ_PER_MEL
_MEL_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: npt.ArrayLike) -> np.ndarray:
    """Convert frequencies in Hz to Slaney mels [shape=any]."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _MEL_LINEAR_HZ_PER_MEL
    log_part = (
        _MEL_LOG_START_MEL
        + np.log(np.maximum(hz, _MEL_LOG_START_HZ) / _MEL_LOG_START_HZ) / _MEL_LOG_STEP
    )
    return np.where(hz >= _MEL_LOG_START_HZ, log_part, linear)


def mel_to_hz(mel: npt.ArrayLike) -> np.ndarray:
    """Convert Slaney mels to frequencies in Hz [shape=any]; the inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _MEL_LINEAR_HZ_PER_MEL
    log_part = _MEL_LOG_START_HZ * np.exp(_MEL_LOG_STEP * (mel - _MEL_LOG_START_MEL))
    return np.where(mel >= _MEL_LOG_START_MEL, log_part, linear)


def mel_filterbank(
    *,
    sr: int = SAMPLE_RATE_HZ,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min_hz: float = F_MIN_HZ,
    f_max_hz: float = F_MAX_HZ,
) -> np.ndarray:
    """Triangular, Slaney-normalised mel filters, as ``librosa.filters.mel(htk=False)``.

    Parameters
    ----------
    sr : int
        Sample rate, in Hz.
    n_fft : int
        FFT size, in samples.
    n_mels : int
        Number of mel bands.
    f_min_hz, f_max_hz : float
        Lowest and highest filter edges, in Hz.

    Returns
    -------
    np.ndarray
        Filter weights, float64 [shape=(n_mels, n_fft // 2 + 1)].
    """
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(f_min_hz), hz_to_mel(f_max_hz), n_mels + 2))
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths_hz[:-1, None]
    falling = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def hann_window(n: int = WINDOW_SAMPLES) -> np.ndarray:
    """Periodic Hann window (as ``scipy.signal.get_window('hann', n)``) [shape=(n,)], float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def frame_count(n_samples: int) -> int:
    """Number of complete feature frames in ``n_samples`` samples of audio."""
    return 0 if n_samples < N_FFT else 1 + (n_samples - N_FFT) // HOP_SAMPLES


class _LogMelCore:
    """Window, FFT, mel projection and log for a block of frames; shared by both front ends."""

    def __init__(self) -> None:
        window = np.zeros(N_FFT)
        window[_WINDOW_OFFSET : _WINDOW_OFFSET + WINDOW_SAMPLES] = hann_window()
        self.window = window
        self.mel_basis_t = np.ascontiguousarray(mel_filterbank().T)  # (n_bins, n_mels)

    def log_mel_of(self, samples: np.ndarray, n_frames: int) -> np.ndarray:
        """Log-mel of the first ``n_frames`` frames of ``samples`` (float64, 1-D, contiguous)."""
        step = samples.strides[0]
        frames = np.lib.stride_tricks.as_strided(
            samples, shape=(n_frames, N_FFT), strides=(HOP_SAMPLES * step, step), writeable=False
        )
        spectrum = np.fft.rfft(frames * self.window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        return np.log(power @ self.mel_basis_t + LOG_FLOOR).astype(np.float32)


_CORE: _LogMelCore | None = None


def _core() -> _LogMelCore:
    global _CORE
    if _CORE is None:
        _CORE = _LogMelCore()
    return _CORE


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram of a whole signal.

    Equals ``log(librosa.feature.melspectrogram(y=samples, sr=16000, n_fft=512, hop_length=160,
    win_length=400, window="hann", center=False, power=2.0, n_mels=40) + LOG_FLOOR).T``.

    Parameters
    ----------
    samples : np.ndarray
        Mono audio at `dsp.constants.SAMPLE_RATE_HZ`, float in [-1, 1] [shape=(n_samples,)].

    Returns
    -------
    np.ndarray
        float32 [shape=(frame_count(n_samples), N_MELS)]; zero rows when the signal is shorter
        than one frame (``N_FFT`` samples).
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"log_mel: expected mono samples of shape (n,), got shape {samples.shape}")
    n_frames = frame_count(samples.size)
    if n_frames == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    return _core().log_mel_of(samples, n_frames)


class LogMelStream:
    """Streaming log-mel: feed chunks of any size, get exactly the frames `log_mel` would give.

    Examples
    --------
    >>> stream = LogMelStream()
    >>> frames = [stream.push(chunk) for chunk in chunks]   # each [shape=(k, N_MELS)], k >= 0
    >>> np.concatenate(frames)  # == log_mel(np.concatenate(chunks))
    """

    def __init__(self) -> None:
        self._core = _core()
        # Samples not yet consumed by a frame; never longer than N_FFT - 1 + the largest chunk.
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0
        """Frames returned so far; frame ``k`` starts at stream sample ``k * HOP_SAMPLES``."""

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append ``chunk`` (mono, float, [shape=(n,)]) and return the frames it completes.

        Returns
        -------
        np.ndarray
            float32 [shape=(k, N_MELS)], k >= 0.
        """
        pending = np.concatenate((self._pending, np.asarray(chunk, dtype=np.float64).ravel()))
        n_frames = frame_count(pending.size)
        if n_frames == 0:
            self._pending = pending
            return np.zeros((0, N_MELS), dtype=np.float32)
        features = self._core.log_mel_of(pending, n_frames)
        self._pending = pending[n_frames * HOP_SAMPLES :]
        self.frames_emitted += n_frames
        return features

    def reset(self) -> None:
        """Forget buffered audio and restart frame numbering, e.g. after a capture gap."""
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0
