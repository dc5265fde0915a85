"""Reading audio files into earshot's format: 16 kHz mono float32 in [-1, 1].

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis, MP3 and more, with any channel count, rate and
sample format; soxr resamples (the same "soxr_hq" resampler librosa uses by default). libsndfile
accepts a WAV whose data chunk is cut short and silently returns fewer samples, so RIFF headers are
checked here against the file's real size.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr

from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError

_RIFF_HEADER_BYTES = 12
_CHUNK_HEADER_BYTES = 8
_STREAMED_SIZE_PLACEHOLDER = 0x7FFFF000
"""Writers that stream WAV to a pipe cannot know the length and declare a placeholder at or above
this (espeak-ng writes 0x7FFFF000, arecord 0x7FFFFFFF, sox and ffmpeg 0xFFFFFFFF); such files
are read to their end."""
_READ_BLOCK_FRAMES = 1 << 16
MIN_SAMPLE_RATE_HZ = 1000
"""Lower sample rates are refused: no speech fits below 500 Hz, and resampling a header's rate of
1 Hz to 16 kHz would turn a 40 kB file into 1.3 GB."""


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Resample with soxr's high-quality band-limited resampler.

    Parameters
    ----------
    samples : np.ndarray
        Audio [shape=(n,) or (n, channels)], float.
    orig_sr, target_sr : int
        Rates in Hz, both > 0.

    Returns
    -------
    np.ndarray
        float32 [shape=(round(n * target_sr / orig_sr),) or (..., channels)].
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(
            f"resample: rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}"
        )
    samples = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return samples
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of [shape=(n, channels)] audio; 1-D input is returned as is."""
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def _check_wav_length(path: Path, header: bytes, file_bytes: int) -> None:
    """Raise AudioError when a RIFF/WAVE file declares more data than it holds."""
    if len(header) < _RIFF_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return
    with path.open("rb") as f:
        offset = _RIFF_HEADER_BYTES
        while offset + _CHUNK_HEADER_BYTES <= file_bytes:
            f.seek(offset)
            chunk_id, size = struct.unpack("<4sI", f.read(_CHUNK_HEADER_BYTES))
            if chunk_id == b"data":
                available = file_bytes - offset - _CHUNK_HEADER_BYTES
                if size < _STREAMED_SIZE_PLACEHOLDER and size > available:
                    raise AudioError(
                        f"{path}: truncated WAV file: its header declares {size} bytes of audio "
                        f"but only {available} are present"
                    )
                return
            offset += _CHUNK_HEADER_BYTES + size + (size & 1)  # chunks are 2-byte aligned
    raise AudioError(f"{path}: WAV file has no data chunk (truncated header?)")


def _open_checked(path: Path) -> soundfile.SoundFile:
    """Open ``path`` with libsndfile after checks that give clear reasons for common failures."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    file_bytes = path.stat().st_size
    if file_bytes == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with path.open("rb") as f:
            header = f.read(_RIFF_HEADER_BYTES)
    except OSError as err:
        raise AudioError(f"{path}: cannot read file: {err.strerror}") from err
    _check_wav_length(path, header, file_bytes)
    try:
        return soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        reason = str(err).split(": ", 1)[-1] if "Error opening" in str(err) else str(err)
        raise AudioError(f"{path}: not a readable audio file ({reason})") from err


def _read_all(f: soundfile.SoundFile) -> np.ndarray:
    """Every frame of ``f`` as float32 [shape=(n, channels)], read block by block.

    A single ``f.read()`` allocates the frame count the header declares before decoding, and a
    FLAC header can declare up to 2**36 frames (256 GiB of float32) in a file of a few bytes;
    reading in blocks allocates only what is really decoded.
    """
    blocks = []
    while True:
        block = f.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        blocks.append(block)
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)


def load_audio(path: str | os.PathLike[str], *, sr: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Load an audio file as mono float32 at ``sr``.

    Parameters
    ----------
    path : str or PathLike
        WAV, FLAC, OGG/Vorbis, MP3 or any other format libsndfile reads; any channel count, sample
        rate and sample format (integer samples are scaled to [-1, 1)).
    sr : int
        Target sample rate, in Hz.

    Returns
    -------
    np.ndarray
        float32 [shape=(n_samples,)], n_samples >= 1.

    Raises
    ------
    AudioError
        The file is missing, empty, truncated, not audio, undecodable, holds no samples, holds
        NaN or infinite samples, has a sample rate below `MIN_SAMPLE_RATE_HZ`, or is too short to
        give one sample at ``sr``. The message names the file and the problem.
    """
    path = Path(path)
    with _open_checked(path) as f:
        native_sr = f.samplerate
        if native_sr < MIN_SAMPLE_RATE_HZ:
            raise AudioError(
                f"{path}: sample rate {native_sr} Hz is below {MIN_SAMPLE_RATE_HZ} Hz; "
                "not usable audio"
            )
        try:
            samples = _read_all(f)
        except (soundfile.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{path}: cannot decode audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    resampled = resample(to_mono(samples), orig_sr=native_sr, target_sr=sr)
    if resampled.size == 0:
        raise AudioError(
            f"{path}: too short: {samples.shape[0]} sample(s) at {native_sr} Hz make no sample "
            f"at {sr} Hz"
        )
    return resampled
