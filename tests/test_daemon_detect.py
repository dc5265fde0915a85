"""The capture's queue and the detect stage: what reaches the decide stage, when, and how often.

The detect stage runs on a real worker thread and a real event loop here; its detector is a
stand-in that fires on chosen blocks, so that when analyses are handed on can be checked exactly.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agent.capture.stage import AudioQueue
from agent.daemon.analysis import ANALYSES_AHEAD, BATCH_S, Analysis, DetectStage
from dsp.constants import SAMPLE_RATE_HZ
from models.wake.detector import Detection

BLOCK = 1280  # 80 ms
WAIT_S = 5.0


class FiringDetector:
    """Fires on the blocks whose numbers it is given (counting from 0)."""

    def __init__(self, fire_on: set[int] = frozenset(), fail_on: int | None = None):
        self.fire_on, self.fail_on = fire_on, fail_on
        self.pushed = 0

    def push(self, block: np.ndarray) -> list[Detection]:
        index, self.pushed = self.pushed, self.pushed + 1
        if index == self.fail_on:
            raise RuntimeError("the detector broke")
        if index not in self.fire_on:
            return []
        end_s = (index + 1) * BLOCK / SAMPLE_RATE_HZ
        return [Detection("computer", 0.99, end_s - 0.5, end_s, end_s)]


def noise(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(BLOCK) * 0.01).astype(np.float32)


class Stage:
    """A `DetectStage` on a real worker, counting how often it wakes the loop."""

    def __init__(self, detector: FiringDetector, *, max_audio_s: float | None = None):
        self.audio = AudioQueue(25)
        self.worker = ThreadPoolExecutor(1)
        self.stage = DetectStage(self.audio, self.worker, detector, max_audio_s=max_audio_s)
        self.wakes = 0
        deliver = self.stage._deliver

        def counted(analyses: list[Analysis | None]) -> None:
            self.wakes += 1
            deliver(analyses)

        self.stage._deliver = counted

    async def start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.stage.run())
        await asyncio.sleep(0)
        return task

    async def take(self, count: int, *, busy: bool = False) -> list[Analysis | None]:
        return [await asyncio.wait_for(self.stage.get(busy=busy), WAIT_S) for _ in range(count)]

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)


def run(coroutine_function) -> None:
    asyncio.run(asyncio.wait_for(coroutine_function(), 4 * WAIT_S))


def test_audio_queue_drops_the_oldest_offered_block_and_tells_its_consumer():
    queue = AudioQueue(2)
    told = []
    queue.on_block = lambda: told.append(len(queue))
    for value in range(3):
        queue.offer(np.full(4, value, np.float32))
    assert told == [1, 2, 2] and queue.dropped == 1
    assert [queue.take()[0], queue.take()[0]] == [1, 2]
    with pytest.raises(IndexError):
        queue.take()


def test_audio_queue_put_waits_for_room_and_close_ends_the_wait():
    queue = AudioQueue(1)
    assert queue.put(np.zeros(4, np.float32))
    outcome: list[bool] = []
    writer = threading.Thread(target=lambda: outcome.append(queue.put(None)))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()  # no room: it waits
    queue.take()
    writer.join(WAIT_S)
    assert outcome == [True] and queue.take() is None
    assert queue.put(np.zeros(4, np.float32))
    writer = threading.Thread(target=lambda: outcome.append(queue.put(None)))
    writer.start()
    queue.close()
    writer.join(WAIT_S)
    assert outcome == [True, False] and len(queue) == 1
    queue.offer(np.zeros(4, np.float32))  # refused once closed
    assert len(queue) == 1


def test_while_listening_analyses_are_handed_on_together():
    per_batch = round(BATCH_S * SAMPLE_RATE_HZ / BLOCK)

    async def main() -> None:
        s = Stage(FiringDetector())
        await s.start()
        for i in range(2 * per_batch):
            s.audio.offer(noise(i))
        analyses = await s.take(2 * per_batch)
        assert [a.start_s for a in analyses if a] == pytest.approx(
            [i * BLOCK / SAMPLE_RATE_HZ for i in range(2 * per_batch)]
        )
        assert s.wakes == 2
        assert s.stage.stream_s == pytest.approx(2 * per_batch * BLOCK / SAMPLE_RATE_HZ)
        s.close()

    run(main)


def test_a_detection_hands_on_everything_at_once():
    async def main() -> None:
        s = Stage(FiringDetector(fire_on={2}))
        await s.start()
        for i in range(3):  # fewer than a batch: held, until the detection in the third
            s.audio.offer(noise(i))
        analyses = await s.take(3)
        assert [len(a.detections) for a in analyses if a] == [0, 0, 1]
        assert s.wakes == 1
        s.close()

    run(main)


async def until(condition, timeout_s: float = WAIT_S) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_after_a_detection_and_while_busy_every_analysis_is_handed_on_alone():
    async def main() -> None:
        s = Stage(FiringDetector(fire_on={0}))
        await s.start()
        s.audio.offer(noise(0))
        (woke,) = await s.take(1)
        assert woke is not None and woke.detections
        # The decide stage has not said what the detection did (it may have opened a command).
        s.audio.offer(noise(1))
        await until(lambda: s.wakes == 2)
        await s.take(1, busy=True)
        for i in range(2, 5):  # a command is under way
            s.audio.offer(noise(i))
            await s.take(1, busy=True)
        assert s.wakes == 5
        rest = asyncio.create_task(s.take(2, busy=False))  # listening again
        await asyncio.sleep(0.05)
        s.audio.offer(noise(5))
        await asyncio.sleep(0.3)
        assert s.wakes == 5  # held
        s.audio.offer(None)
        analyses = await rest
        assert analyses[0] is not None and analyses[1] is None and s.wakes == 6
        s.close()

    run(main)


def test_the_end_of_the_input_and_the_audio_limit_end_the_stage():
    async def main() -> None:
        s = Stage(FiringDetector(), max_audio_s=2.5 * BLOCK / SAMPLE_RATE_HZ)
        task = await s.start()
        for i in range(5):
            s.audio.offer(noise(i))
        analyses = await s.take(4)
        assert [a is None for a in analyses] == [False, False, False, True]
        await asyncio.wait_for(task, WAIT_S)
        s.close()

    run(main)


def test_a_failing_analysis_fails_the_detect_task():
    async def main() -> None:
        s = Stage(FiringDetector(fail_on=1))
        task = await s.start()
        s.audio.offer(noise(0))
        s.audio.offer(noise(1))
        with pytest.raises(RuntimeError, match="the detector broke"):
            await asyncio.wait_for(task, WAIT_S)
        s.close()

    run(main)


def test_the_worker_never_waits_for_a_decide_stage_that_falls_behind():
    # The decide stage takes nothing: the stage stops taking blocks once ANALYSES_AHEAD are
    # waiting, so the capture's queue holds the rest, and the worker stays free for other work
    # (a local command's match, which the decide stage may be waiting for).
    async def main() -> None:
        s = Stage(FiringDetector())
        await s.start()
        for i in range(20):
            s.audio.offer(noise(i))
        other = asyncio.wrap_future(s.worker.submit(lambda: "matched"))
        assert await asyncio.wait_for(other, WAIT_S) == "matched"
        await until(lambda: len(s.audio) == 20 - ANALYSES_AHEAD)
        await asyncio.sleep(0.1)
        assert len(s.audio) == 20 - ANALYSES_AHEAD
        analyses = await s.take(20)
        assert len(s.audio) == 0 and all(a is not None for a in analyses)
        s.close()

    run(main)
