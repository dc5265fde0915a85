"""Reading audio files into earshot's format: 16 kHz mono float32 in [-1, 1].

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis, MP3 and more, with any channel count, rate and
sample format; soxr resamples (the same "soxr_hq" resampler librosa uses by default). libsndfile
accepts a WAV whose data chunk is cut short and silently returns fewer samples, so RIFF headers are
checked here against the file's real size. libsndfile's MP3 decoder (libmpg123) prints notes about
damaged or unusual files on stderr itself; they are kept off the terminal (`_decoder_notes`) and
failures are reported as `AudioError`s instead.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import tempfile
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile
import soxr

from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError

_LOGGER = logging.getLogger(__name__)
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
NOISY_FORMATS = frozenset({"MP3"})
"""libsndfile formats whose decoder writes to stderr on its own while decoding (libmpg123)."""
QUIET_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM")
"""Leading bytes of formats whose decoders never write to stderr (WAV, FLAC, OGG, AIFF): opening
them needs no redirection of stderr, which would also swallow other threads' messages."""
_MAX_NOTE_BYTES = 4096
"""Most of a decoder's captured notes that is logged."""
_STDERR_FD = 2
_redirecting = threading.Lock()
"""Held while file descriptor 2 is redirected, so that two redirections never interleave."""


@contextmanager
def _decoder_notes(path: Path, *, capture: bool = True) -> Iterator[None]:
    """Keep what C decoders write to file descriptor 2 off the terminal meanwhile.

    libmpg123 writes notes such as "Warning: Xing stream size off by more than 1%" or "error:
    dequantization failed" to stderr itself, bypassing Python. During the block, descriptor 2
    points at a temporary file; it is restored afterwards, and what was captured is logged at
    debug level naming ``path``. Real failures still reach the caller as libsndfile's
    exceptions. Anything another thread writes to stderr during the block is captured with it,
    which is why only libsndfile's calls are wrapped (and reads only for `NOISY_FORMATS`).
    """
    if not capture:
        yield
        return
    with _redirecting, tempfile.TemporaryFile() as sink:
        _flush_stderr()
        saved = os.dup(_STDERR_FD)
        os.dup2(sink.fileno(), _STDERR_FD)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, _STDERR_FD)
            os.close(saved)
            sink.seek(0)
            text = sink.read(_MAX_NOTE_BYTES).decode(errors="replace")
            notes = " / ".join(line.strip() for line in text.splitlines() if line.strip())
            if notes:
                _LOGGER.debug("%s: the decoder said: %s", path, notes)


def _flush_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


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
        with _decoder_notes(path, capture=not header.startswith(QUIET_MAGIC)):
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
            with _decoder_notes(path, capture=f.format in NOISY_FORMATS):
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


def stream_audio(
    path: str | os.PathLike[str],
    *,
    sr: int = SAMPLE_RATE_HZ,
    block_frames: int = _READ_BLOCK_FRAMES,
) -> Generator[np.ndarray, None, None]:
    """Decode an audio file block by block as mono float32 at ``sr``, in memory of one block.

    The file is opened and checked at once (as `load_audio` checks it); decoding, mixing to mono
    and resampling (soxr's streaming resampler at the same quality) then happen block by block as
    the returned iterator is read, so memory does not grow with the file's length. Concatenated,
    the blocks equal `load_audio`'s result for the same file.

    Parameters
    ----------
    path : str or PathLike
        Any file `load_audio` reads.
    sr : int
        Target sample rate, in Hz.
    block_frames : int
        Frames decoded at a time, >= 1.

    Returns
    -------
    Generator[np.ndarray, None, None]
        float32 blocks [shape=(n,)] of varying length; closing it (or reading it to its end)
        closes the file.

    Raises
    ------
    AudioError
        At once: the file is missing, empty, truncated, not audio or below `MIN_SAMPLE_RATE_HZ`.
        While reading: the block cannot be decoded, holds NaN or infinite samples, or the file
        holds no samples or too few to give one sample at ``sr``. The message names the file.
    """
    if block_frames < 1:
        raise ValueError(f"stream_audio: block_frames: got {block_frames}, expected >= 1")
    path = Path(path)
    f = _open_checked(path)
    if f.samplerate < MIN_SAMPLE_RATE_HZ:
        f.close()
        raise AudioError(
            f"{path}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE_HZ} Hz; "
            "not usable audio"
        )
    return _decode_blocks(path, f, sr=sr, block_frames=block_frames)


def _decode_blocks(
    path: Path, f: soundfile.SoundFile, *, sr: int, block_frames: int
) -> Generator[np.ndarray, None, None]:
    """`stream_audio`'s blocks from the opened file ``f``, which is closed at the end."""
    native_sr = f.samplerate
    resampler = None
    if native_sr != sr:
        resampler = soxr.ResampleStream(native_sr, sr, 1, dtype="float32", quality="HQ")
    decoded = produced = 0
    noisy = f.format in NOISY_FORMATS
    with f:
        while True:
            try:
                with _decoder_notes(path, capture=noisy):
                    frames = f.read(block_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as err:
                raise AudioError(f"{path}: cannot decode audio ({err})") from err
            last = frames.shape[0] == 0
            if not np.all(np.isfinite(frames)):
                raise AudioError(f"{path}: contains NaN or infinite samples")
            decoded += frames.shape[0]
            if last and decoded == 0:
                raise AudioError(f"{path}: contains no audio samples")
            mono = to_mono(frames)
            block = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if block.size:
                produced += block.size
                yield block
            if last:
                break
    if produced == 0:
        raise AudioError(
            f"{path}: too short: {decoded} sample(s) at {native_sr} Hz make no sample at {sr} Hz"
        )
