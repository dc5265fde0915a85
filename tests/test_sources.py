"""File and stdin sources (no sound server needed)."""

import io
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile

from agent.capture.sources import FileSource, StdinSource, block_samples
from dsp.audio import load_audio
from kernels.errors import AudioError
from tests.conftest import tone

SR = 16_000


@pytest.fixture
def one_second_wav(tmp_path):
    path = tmp_path / "one_second.wav"
    soundfile.write(path, tone(440, 1.0, SR), SR, subtype="FLOAT")
    return path


def test_file_source_yields_the_whole_file_in_blocks(one_second_wav):
    with FileSource(one_second_wav, block_ms=80) as source:
        chunks = list(source.chunks())
    assert [c.size for c in chunks[:-1]] == [block_samples(80)] * (len(chunks) - 1)
    np.testing.assert_array_equal(np.concatenate(chunks), tone(440, 1.0, SR))


def test_file_source_real_time_pacing(one_second_wav):
    start = time.monotonic()
    with FileSource(one_second_wav, realtime=True, block_ms=100) as source:
        n = sum(c.size for c in source.chunks())
    elapsed = time.monotonic() - start
    assert n == SR
    assert 0.85 <= elapsed < 2.0, f"1 s of audio paced in {elapsed:.2f} s"
    start = time.monotonic()
    with FileSource(one_second_wav, realtime=False) as source:
        list(source.chunks())
    assert time.monotonic() - start < 0.5


def test_file_source_stops_when_closed(one_second_wav):
    source = FileSource(one_second_wav, block_ms=100)
    got = []
    for chunk in source.chunks():
        got.append(chunk)
        source.close()
    assert len(got) == 1


def test_stdin_source_decodes_16bit_pcm_across_odd_reads():
    pcm = (tone(300, 0.3, SR) * 32767).astype("<i2")
    raw = pcm.tobytes()

    class Trickle(io.RawIOBase):
        """Returns odd-sized reads, as a pipe may."""

        def __init__(self):
            self.pos = 0

        def read(self, n=-1):
            piece = raw[self.pos : self.pos + min(n, 333)]
            self.pos += len(piece)
            return piece

    decoded = np.concatenate(list(StdinSource(Trickle()).chunks()))
    np.testing.assert_allclose(decoded, pcm / 32768.0, atol=1e-7)


def test_stdin_source_drops_a_dangling_odd_byte():
    decoded = list(StdinSource(io.BytesIO(b"\x00\x40\x01")).chunks())
    assert len(decoded) == 1
    np.testing.assert_array_equal(decoded[0], [0.5])


def test_file_source_streams_a_resampled_stereo_file_as_the_whole_file_decodes(tmp_path):
    """44.1 kHz stereo, decoded block by block: the same samples as decoding the whole file."""
    rate_hz, frames = 44_100, 44_100 * 7 + 1234  # no block size divides the length
    noise = np.random.default_rng(5).standard_normal((frames, 2)) * 0.2
    path = tmp_path / "stereo44k.wav"
    soundfile.write(path, noise.astype(np.float32), rate_hz, subtype="FLOAT")
    whole = load_audio(path)
    for block_ms in (80, 30, 1000):
        with FileSource(path, block_ms=block_ms) as source:
            chunks = list(source.chunks())
        assert {c.size for c in chunks[:-1]} == {block_samples(block_ms)}
        streamed = np.concatenate(chunks)
        assert streamed.shape == whole.shape
        assert streamed.dtype == np.float32
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


def test_file_source_memory_stays_flat_for_a_long_file(tmp_path):
    """30 minutes of 22.05 kHz stereo: decoded whole it would hold 318 MB of float32 frames."""
    rate_hz, minutes = 22_050, 30
    path = tmp_path / "long.flac"
    with soundfile.SoundFile(path, "w", rate_hz, 2, subtype="PCM_16") as f:
        minute = np.full((rate_hz * 60, 2), 3, np.int16)
        for _ in range(minutes):
            f.write(minute)
    whole_file_bytes = rate_hz * 60 * minutes * 2 * np.dtype(np.float32).itemsize
    tracemalloc.start()
    try:
        with FileSource(path) as source:
            samples = sum(chunk.size for chunk in source.chunks())
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert samples == SR * 60 * minutes
    assert peak_bytes < whole_file_bytes / 50, f"peak {peak_bytes / 1e6:.1f} MB"


def test_file_source_reports_bad_audio_further_into_the_file_when_read(tmp_path):
    audio = tone(440, 10.0, SR)
    audio[8 * SR] = np.nan
    path = tmp_path / "nan_late.wav"
    soundfile.write(path, audio, SR, subtype="FLOAT")
    with FileSource(path) as source, pytest.raises(AudioError, match="NaN or infinite") as caught:
        list(source.chunks())
    assert str(path) in str(caught.value)


def test_stdin_source_stops_when_closed_while_its_pipe_stays_open_and_silent():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb")
    source = StdinSource(stream, block_ms=80)
    first_block = threading.Event()
    blocks: list[np.ndarray] = []

    def read() -> None:
        for block in source.chunks():
            blocks.append(block)
            first_block.set()

    reader = threading.Thread(target=read, daemon=True)
    try:
        os.write(write_fd, (tone(300, 0.08, SR) * 32767).astype("<i2").tobytes())
        reader.start()
        assert first_block.wait(timeout=10)
        source.close()  # the writer stays open and says nothing more
        reader.join(timeout=2.0)
        assert not reader.is_alive(), "the reader is still blocked on the silent pipe"
        assert [b.size for b in blocks] == [block_samples(80)]
    finally:
        os.close(write_fd)  # releases a reader blocked in read() (the defect), then the pipe
        reader.join(timeout=5)
        stream.close()
