"""The log-mel front end of Google's ``speech_embedding`` network, as openWakeWord 0.5.1 feeds it.

openWakeWord computes these features with its ``melspectrogram.onnx`` graph and then applies
``x / 10 + 2`` (``AudioFeatures._get_melspectrogram``); the graph receives int16 sample values
as float32. This module reproduces both steps in numpy, for earshot's float32 audio in [-1, 1]:

1. frame ``t`` spans samples ``[t * EMBEDDING_HOP_SAMPLES, t * EMBEDDING_HOP_SAMPLES +
   EMBEDDING_N_FFT)``; the graph's STFT is a stride-160 convolution without padding, so nothing
   is centred or padded;
2. a periodic Hann window of ``EMBEDDING_WINDOW_SAMPLES`` samples, centred in the ``N_FFT`` frame
   (the graph's Conv weights are this window times cos / -sin), on samples scaled to int16 units
   (``PCM16_FULL_SCALE``);
3. power spectrum, projected on 32 Slaney-normalised mel filters from 60 Hz to 3800 Hz (the
   graph's 257 x 32 MatMul, equal to ``librosa.filters.mel(fmin=60, fmax=3800)``);
4. ``10 * log10(max(power, EMBEDDING_POWER_FLOOR))`` in dB, then openWakeWord's ``/ 10 + 2``,
   i.e. ``log10(max(power, EMBEDDING_POWER_FLOOR)) + 2``.

The graph ends with one more step: every value is raised to at least ``max - 80 dB``, where
``max`` is the largest value of the *whole call's input* (ReduceMax over all frames and bands,
then Sub 80). That makes each frame depend on audio that has not arrived yet, and on where the
caller cuts the stream into calls, so it cannot be streamed: openWakeWord's own streaming path
runs the graph on overlapping 1760-sample calls, so its live features already differ from its
offline ones wherever a call spans more than 80 dB. earshot's front end leaves the clip out:
`EmbeddingMelStream` and `embedding_log_mel` (by default) apply only the graph's fixed floor,
``EMBEDDING_POWER_FLOOR`` (outputs >= ``EMBEDDING_OUTPUT_FLOOR`` = -8). Both are causal and give
the same frames for any chunking. They equal the graph's output wherever the call's values span
less than 80 dB; where loud audio meets digital silence or near-silence, the graph lifts the
quiet values to ``max - 8`` and earshot keeps them lower. ``embedding_log_mel(audio,
top_db=EMBEDDING_TOP_DB)`` reproduces the graph's clip exactly, for parity checks and for
comparing with openWakeWord's offline ``embed_clips``.

librosa and scipy are not imported: the window and the filterbank come from `dsp.features`.
"""

from __future__ import annotations

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ, FrontEndSettings
from dsp.features import hann_window, mel_filterbank

EMBEDDING_N_MELS = 32
"""Mel bands of the embedding network's input."""

EMBEDDING_N_FFT = 512
"""FFT size (the graph's Conv kernel length), in samples."""

EMBEDDING_N_FREQ_BINS = EMBEDDING_N_FFT // 2 + 1
"""One-sided FFT bins (the graph's Conv output channels): 257."""

EMBEDDING_HOP_SAMPLES = 160
"""Hop between frames (the graph's Conv stride), in samples: 10 ms at 16 kHz."""

EMBEDDING_WINDOW_SAMPLES = 400
"""Length of the periodic Hann window inside each ``EMBEDDING_N_FFT`` frame, in samples (25 ms)."""

EMBEDDING_F_MIN_HZ = 60.0
"""Lowest edge of the mel filters, in Hz."""

EMBEDDING_F_MAX_HZ = 3800.0
"""Highest edge of the mel filters, in Hz."""

EMBEDDING_POWER_FLOOR = 1e-10
"""The graph's fixed floor on mel power (its first Clip), in int16 units squared."""

EMBEDDING_TOP_DB = 80.0
"""The graph's dynamic range: values are raised to at least (the call's maximum - 80 dB)."""

EMBEDDING_DB_DIVISOR = 10.0
"""openWakeWord's ``melspec_transform`` divides the graph's dB values by this (dB per unit)."""

EMBEDDING_OFFSET = 2.0
"""openWakeWord's ``melspec_transform`` adds this after the division."""

EMBEDDING_OUTPUT_FLOOR = float(np.log10(EMBEDDING_POWER_FLOOR)) + EMBEDDING_OFFSET
"""Lowest output value, reached by digital silence: -8.0."""

PCM16_FULL_SCALE = 32768.0
"""int16 value of a sample of 1.0: openWakeWord feeds the graph int16 values as float32."""

EMBEDDING_FRONT_END = FrontEndSettings(
    window_samples=EMBEDDING_WINDOW_SAMPLES, hop_samples=EMBEDDING_HOP_SAMPLES,
    n_fft=EMBEDDING_N_FFT, n_mels=EMBEDDING_N_MELS, f_min_hz=EMBEDDING_F_MIN_HZ,
    f_max_hz=EMBEDDING_F_MAX_HZ, log_floor=EMBEDDING_POWER_FLOOR,
)
"""This front end as a model file records it (`models.nn.checkpoint`): a network imported for
it refuses to load on other features."""

_WINDOW_OFFSET = (EMBEDDING_N_FFT - EMBEDDING_WINDOW_SAMPLES) // 2
"""Where the window starts inside a frame, in samples (56)."""


def embedding_window() -> np.ndarray:
    """Analysis window of one frame, in int16 units: the graph's Conv weights at bin 0 x 32768.

    Returns
    -------
    np.ndarray
        float64 [shape=(EMBEDDING_N_FFT,)]: a periodic Hann window of ``EMBEDDING_WINDOW_SAMPLES``
        samples starting at sample 56, zeros elsewhere, times ``PCM16_FULL_SCALE`` so that audio
        in [-1, 1] gives the spectra the graph computes from int16 values (a power-of-two scale,
        hence exact).
    """
    window = np.zeros(EMBEDDING_N_FFT)
    window[_WINDOW_OFFSET : _WINDOW_OFFSET + EMBEDDING_WINDOW_SAMPLES] = hann_window(
        EMBEDDING_WINDOW_SAMPLES
    )
    return window * PCM16_FULL_SCALE


def embedding_mel_filterbank() -> np.ndarray:
    """Mel filters of the graph's MatMul: 32 Slaney-normalised bands, 60 Hz to 3800 Hz.

    Returns
    -------
    np.ndarray
        float64 [shape=(EMBEDDING_N_FREQ_BINS, EMBEDDING_N_MELS)], oriented as the graph's
        ``melW`` (power spectrum @ filters).
    """
    filters = mel_filterbank(
        sr=SAMPLE_RATE_HZ,
        n_fft=EMBEDDING_N_FFT,
        n_mels=EMBEDDING_N_MELS,
        f_min_hz=EMBEDDING_F_MIN_HZ,
        f_max_hz=EMBEDDING_F_MAX_HZ,
    )
    return np.ascontiguousarray(filters.T)


def embedding_frame_count(n_samples: int) -> int:
    """Number of complete frames in ``n_samples`` samples (the graph's output length).

    Parameters
    ----------
    n_samples : int
        Number of audio samples, >= 0.

    Returns
    -------
    int
        ``1 + (n_samples - 512) // 160``, or 0 below 512 samples.
    """
    if n_samples < EMBEDDING_N_FFT:
        return 0
    return 1 + (n_samples - EMBEDDING_N_FFT) // EMBEDDING_HOP_SAMPLES


def _check_audio(where: str, audio: np.ndarray) -> np.ndarray:
    """Return ``audio`` as an ndarray, or raise ValueError unless it is 1-D float32."""
    audio = np.asarray(audio)
    if audio.dtype != np.float32:
        raise ValueError(
            f"{where}: audio: got dtype {audio.dtype}, expected float32 samples in [-1, 1] "
            f"(divide int16 PCM by {PCM16_FULL_SCALE:.0f})"
        )
    if audio.ndim != 1:
        raise ValueError(
            f"{where}: audio: got shape {audio.shape}, expected mono samples of shape (n,)"
        )
    return audio


class _EmbeddingMelCore:
    """Window, FFT, mel projection and log of a block of frames; shared by both front ends."""

    def __init__(self) -> None:
        self.window = embedding_window()
        filters = embedding_mel_filterbank()
        used = np.flatnonzero(filters.any(axis=1))
        # Bins outside [60 Hz, 3800 Hz] carry no weight: skip them in the projection.
        self.bins = slice(int(used[0]), int(used[-1]) + 1)
        self.filters = np.ascontiguousarray(filters[self.bins])

    def log_mel_of(self, samples: np.ndarray, n_frames: int) -> np.ndarray:
        """Features of the first ``n_frames`` frames of ``samples`` (1-D float64, contiguous).

        Returns
        -------
        np.ndarray
            float32 [shape=(n_frames, EMBEDDING_N_MELS)], without the graph's top-dB clip.
        """
        step = samples.strides[0]
        frames = np.lib.stride_tricks.as_strided(
            samples,
            shape=(n_frames, EMBEDDING_N_FFT),
            strides=(EMBEDDING_HOP_SAMPLES * step, step),
            writeable=False,
        )
        spectrum = np.fft.rfft(frames * self.window, axis=-1)[:, self.bins]
        power = spectrum.real**2 + spectrum.imag**2
        mel = power @ self.filters
        features = np.log10(np.maximum(mel, EMBEDDING_POWER_FLOOR)) + EMBEDDING_OFFSET
        return features.astype(np.float32)


_CORE: _EmbeddingMelCore | None = None


def _core() -> _EmbeddingMelCore:
    global _CORE
    if _CORE is None:
        _CORE = _EmbeddingMelCore()
    return _CORE


def embedding_log_mel(audio: np.ndarray, *, top_db: float | None = None) -> np.ndarray:
    """Features of a whole signal, scaled as openWakeWord scales them before the embedding.

    Parameters
    ----------
    audio : np.ndarray
        Mono float32 audio at 16 kHz, in [-1, 1] [shape=(n_samples,)].
    top_db : float or None
        None (default): only the graph's fixed floor, as `EmbeddingMelStream` computes.
        A positive number: also raise every value to at least (the signal's maximum - ``top_db``
        dB), as the graph does over a whole call with ``EMBEDDING_TOP_DB``; then the result equals
        ``melspectrogram.onnx`` run on ``audio * 32768`` in one call, followed by ``/ 10 + 2``.

    Returns
    -------
    np.ndarray
        float32 [shape=(embedding_frame_count(n_samples), EMBEDDING_N_MELS)], values >=
        ``EMBEDDING_OUTPUT_FLOOR``; zero rows below ``EMBEDDING_N_FFT`` samples.

    Raises
    ------
    ValueError
        ``audio`` is not 1-D float32, or ``top_db`` is not a positive finite number.
    """
    audio = _check_audio("embedding_log_mel", audio)
    if top_db is not None and not (np.isfinite(top_db) and top_db > 0):
        raise ValueError(
            f"embedding_log_mel: top_db: got {top_db!r}, expected None or a positive number of dB"
        )
    n_frames = embedding_frame_count(audio.size)
    if n_frames == 0:
        return np.zeros((0, EMBEDDING_N_MELS), dtype=np.float32)
    features = _core().log_mel_of(np.ascontiguousarray(audio, dtype=np.float64), n_frames)
    if top_db is not None:
        lowest = features.max() - np.float32(top_db / EMBEDDING_DB_DIVISOR)
        np.maximum(features, lowest, out=features)
    return features


class EmbeddingMelStream:
    """Streaming `embedding_log_mel`: chunks of any size in, the frames they complete out.

    The concatenated output equals ``embedding_log_mel(np.concatenate(chunks))`` (no top-dB
    clip, see the module docstring) for every way of cutting the audio into chunks.

    Examples
    --------
    >>> stream = EmbeddingMelStream()
    >>> frames = [stream.push(chunk) for chunk in chunks]  # each [shape=(k, 32)], k >= 0
    >>> np.concatenate(frames)  # == embedding_log_mel(np.concatenate(chunks))
    """

    def __init__(self) -> None:
        self._core = _core()
        # Samples not yet consumed by a frame: fewer than EMBEDDING_N_FFT + the last chunk's size.
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0
        """Frames returned so far; frame ``k`` starts at stream sample ``160 k``."""

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append ``chunk`` and return the frames it completes.

        Parameters
        ----------
        chunk : np.ndarray
            Mono float32 audio at 16 kHz, in [-1, 1] [shape=(n,)], n >= 0.

        Returns
        -------
        np.ndarray
            float32 [shape=(k, EMBEDDING_N_MELS)], k >= 0.

        Raises
        ------
        ValueError
            ``chunk`` is not 1-D float32.
        """
        chunk = _check_audio("EmbeddingMelStream.push", chunk)
        pending = np.concatenate((self._pending, chunk.astype(np.float64)))
        n_frames = embedding_frame_count(pending.size)
        if n_frames == 0:
            self._pending = pending
            return np.zeros((0, EMBEDDING_N_MELS), dtype=np.float32)
        features = self._core.log_mel_of(pending, n_frames)
        self._pending = pending[n_frames * EMBEDDING_HOP_SAMPLES :]
        self.frames_emitted += n_frames
        return features

    def reset(self) -> None:
        """Forget buffered audio and restart frame numbering, e.g. after a capture gap."""
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0
