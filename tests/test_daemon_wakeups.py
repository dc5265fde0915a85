"""How often the listening daemon's event loop wakes up, counted by its selector.

The real daemon runs in this process on an event loop whose selector counts the waits that end
with a wake-up (a ``select`` with a timeout other than zero): a block of audio must not cost the
loop a wake-up of its own while the daemon only listens. Audio comes from a recording read on the
capture's thread and from a stand-in microphone that pushes blocks from a thread of its own, as
PortAudio does; both are paced, four times faster than real time, so that the loop is idle
between blocks.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.daemon.analysis import BATCH_S
from agent.daemon.detectors import load_models
from agent.daemon.loop import Daemon
from agent.settings import load_settings
from dsp.constants import SAMPLE_RATE_HZ
from tests.conftest import agent_home

BLOCK = 1280  # 80 ms, the shipped config's block
BLOCKS = 60
PACE_S = 0.02
AUDIO_S = BLOCKS * BLOCK / SAMPLE_RATE_HZ
SETTLED_WAKEUPS = 12
"""Wake-ups a run costs besides its audio: start-up, the end of the input and the shutdown."""


class CountingSelector(selectors.DefaultSelector):
    """The default selector, counting the waits that end with a wake-up."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def select(self, timeout: float | None = None) -> list:
        if timeout is None or timeout > 0:
            self.wakeups += 1
        return super().select(timeout)


def blocks(count: int = BLOCKS) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(rng.standard_normal(BLOCK) * 0.01).astype(np.float32) for _ in range(count)]


class PacedRecording:
    """A recording whose blocks arrive every `PACE_S`, as from a file read in real time."""

    name = "paced test recording"

    def chunks(self) -> Iterator[np.ndarray]:
        for block in blocks():
            time.sleep(PACE_S)
            yield block

    def close(self) -> None:
        """Nothing to release."""


class PacedMicrophone:
    """A live source that pushes blocks from its own thread, every `PACE_S`, a few past the end."""

    name = "paced test microphone"

    def __init__(self, on_block: Callable[[np.ndarray], None]):
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._push, args=(on_block,), daemon=True)
        self._thread.start()

    def _push(self, on_block: Callable[[np.ndarray], None]) -> None:
        for block in blocks(BLOCKS + 5):
            if self._closed.wait(PACE_S):
                return
            on_block(block)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in agent_home(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "earshot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "events": {"stdout": False, "socket": str(tmp_path / "home" / "run" / "c.sock")},
                "privacy": {"audit_log": str(tmp_path / "audit.jsonl")},
            }
        )
    )
    return load_models(load_settings(config))


def run_counted(daemon: Daemon) -> int:
    """Run the daemon to the end of its audio; the wake-ups of its loop."""
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        assert loop.run_until_complete(asyncio.wait_for(daemon.run(), 60)) == 0
    finally:
        loop.close()
    assert daemon.stream_s == pytest.approx(AUDIO_S)
    return selector.wakeups


def test_a_recording_in_real_time_wakes_the_loop_only_per_batch_of_analyses(models):
    wakeups = run_counted(Daemon(models, recording=PacedRecording()))
    assert wakeups <= AUDIO_S / BATCH_S + SETTLED_WAKEUPS, f"{wakeups} wake-ups, {BLOCKS} blocks"


def test_a_microphone_wakes_the_loop_only_per_batch_of_analyses(models):
    half_a_block_s = BLOCK / SAMPLE_RATE_HZ / 2
    daemon = Daemon(models, open_live=PacedMicrophone, max_audio_s=AUDIO_S - half_a_block_s)
    wakeups = run_counted(daemon)
    assert wakeups <= AUDIO_S / BATCH_S + SETTLED_WAKEUPS, f"{wakeups} wake-ups, {BLOCKS} blocks"
    assert not daemon.capture.lost and daemon.audio.dropped == 0
