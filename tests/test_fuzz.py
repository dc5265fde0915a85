"""Fuzzing the parsers of untrusted input: regression tests of what it found."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.schema import show
from agent.settings import load_settings, parse_settings
from dsp.audio import load_audio
from kernels.errors import AudioError, ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "literal",
    ["9" * 5000, "[" * 500 + "]" * 500, "{a: " * 500 + "1" + "}" * 500],
    ids=["5000-digit-int", "deep-list", "deep-mapping"],
)
def test_yaml_the_parser_cannot_build_is_a_config_error(tmp_path, literal):
    path = tmp_path / "earshot.yaml"
    path.write_text(f"audio:\n  block_ms: {literal}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: ")


def test_integers_too_long_to_print_are_shown_by_size():
    huge = 10**5000
    assert show(huge) == "int <about 5001 digits>"
    expected = r"audio\.block_ms: got <about 5001 digits>, expected an integer in \[10, 1000\]"
    with pytest.raises(ConfigError, match=expected):
        parse_settings({"audio": {"block_ms": huge}})
    with pytest.raises(ConfigError, match=r"logging\.level: got int <about 5001 digits>"):
        parse_settings({"logging": {"level": -huge}})


AUDIO_MEMORY_HEADROOM = 768 << 20
"""Address space a child process may add beyond what it holds after its imports."""


def _virtual_memory_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _flac_declaring_frames(path: Path, frames: int) -> Path:
    soundfile.write(path, np.random.default_rng(3).uniform(-0.5, 0.5, 4000), 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | frames
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_flac_declaring_more_frames_than_it_holds_is_read_without_trusting_the_count(tmp_path):
    # 2**36 - 1 frames is 256 GiB of float32: reading must not allocate by the declared count.
    path = _flac_declaring_frames(tmp_path / "liar.flac", (1 << 36) - 1)
    try:
        samples = load_audio(path)
    except AudioError as err:
        assert str(path) in str(err)
    else:
        assert 0 < samples.size <= 4000


def test_flac_declaring_a_gigabyte_is_read_under_a_memory_cap(tmp_path):
    # 2**28 frames is 1 GiB of float32: under a cap the child fails if that is allocated.
    path = _flac_declaring_frames(tmp_path / "liar.flac", 1 << 28)
    code = (
        "import resource, sys\n"
        "from dsp.audio import load_audio\n"
        "from tests.test_fuzz import AUDIO_MEMORY_HEADROOM, _virtual_memory_bytes\n"
        "cap = _virtual_memory_bytes() + AUDIO_MEMORY_HEADROOM\n"
        "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
        "from kernels.errors import AudioError\n"
        "try:\n"
        "    print(load_audio(sys.argv[1]).size)\n"
        "except AudioError as err:\n"
        "    print('AudioError', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


def test_gsm610_wav_which_libsndfile_cannot_seek_is_read(tmp_path):
    # libsndfile opens GSM 6.10 WAV as not seekable, and soundfile refuses to read a file that
    # cannot seek without a frame count (a ValueError); a block size is such a count.
    path = tmp_path / "gsm.wav"
    soundfile.write(path, np.zeros(1000), 8000, format="WAV", subtype="GSM610")
    with soundfile.SoundFile(path) as f:
        assert not f.seekable()
    assert load_audio(path).size >= 1000 * 2
    empty = tmp_path / "empty-gsm.wav"
    soundfile.write(empty, np.zeros(0), 8000, format="WAV", subtype="GSM610")
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(empty)


@pytest.mark.parametrize("rate", [1, 2, 999])
def test_sample_rates_below_1khz_are_refused_not_expanded(tmp_path, rate):
    # 20000 samples at 1 Hz would resample to 320 million at 16 kHz (1.3 GB from a 40 kB file).
    path = tmp_path / "slow.wav"
    soundfile.write(path, np.zeros(20000, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"fmt ") + 12, rate)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=rf"{re.escape(str(path))}: sample rate {rate} Hz"):
        load_audio(path)


@pytest.mark.parametrize(("frames", "rate"), [(1, 44100), (10, 0x7FFFFFFF)])
def test_too_short_to_give_one_sample_at_16khz_is_refused(tmp_path, frames, rate):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.full(frames, 0.25, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"fmt ") + 12, rate)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)
