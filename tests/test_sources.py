"""File and stdin sources (no sound server needed)."""

import io
import time

import numpy as np
import pytest
import soundfile

from agent.capture.sources import FileSource, StdinSource, block_samples
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
