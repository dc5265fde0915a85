"""Native libraries' probing chatter stays off the console; other native output still shows."""

import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = r"""
import ctypes, logging, os, sys
logging.basicConfig(level=logging.DEBUG if "--debug" in sys.argv else logging.WARNING,
                    format="log: %(message)s")
from kernels.native_stderr import quiet_native_stderr
libc = ctypes.CDLL(None)
with quiet_native_stderr("probe"):
    # what C libraries print straight to descriptor 2, past Python's sys.stderr
    libc.dprintf(2, b"error: XDG_RUNTIME_DIR is invalid or not set in the environment.\n")
    libc.dprintf(2, b"ALSA lib pcm.c:2664:(snd_pcm_open_noupdate) Unknown PCM default\n")
    libc.dprintf(2, b"something really broke\n")
os.write(2, b"after\n")
"""


def run_probe(*args):
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO,
        check=True,
    )  # fmt: skip


def test_probe_noise_is_hidden_and_real_errors_are_shown():
    err = run_probe().stderr
    assert "XDG_RUNTIME_DIR" not in err and "ALSA lib" not in err
    assert err.splitlines() == ["something really broke", "after"]


def test_debug_logging_keeps_the_hidden_lines():
    err = run_probe("--debug").stderr
    assert "log: probe: error: XDG_RUNTIME_DIR is invalid" in err
    assert "log: probe: ALSA lib pcm.c" in err
    assert "something really broke" in err


def test_listing_gpu_adapters_without_a_runtime_dir_is_quiet():
    """EGL probes for a Wayland display while wgpu lists its OpenGL adapters."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    code = "from kernels.device import list_adapters; print(len(list_adapters()))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
        check=True,
    )  # fmt: skip
    assert int(done.stdout) >= 1
    assert "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
