"""The forward stage: the queue from the decide stage to the privacy gate, and its one reader.

The decide stage queues, in order, what should happen to a command's audio: ``open`` an upload,
send it ``audio`` (a block and its stream time), ``finish`` it, and, when a recording has been
processed, ``end``. `Outbox.forward`, the daemon's *forward* task, is the only code that calls
the privacy gate (`agent.egress.gate`); it asks for the daemon's gate as each upload opens, so a
reload that replaces the gate applies from the next command on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from agent.egress.gate import PrivacyGate, Upload, UploadRequest

OUTBOX_SIZE = 64
"""Messages the decide stage may queue ahead of the forward stage before it waits."""
Action = Literal["open", "audio", "finish", "end"]


class Outbox:
    """Messages for the privacy gate, queued by the decide stage and sent on by `forward`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Action, Any]] = asyncio.Queue(OUTBOX_SIZE)
        self.upload: Upload | None = None
        """The upload now open, if any."""
        self.ended = asyncio.Event()
        """Set once the forward stage has taken the ``end`` of a recording."""

    async def open(self, request: UploadRequest, blocks: list[tuple[float, np.ndarray]]) -> None:
        """Queue a new upload for ``request`` and the (start_s, block) audio it begins with."""
        await self._queue.put(("open", request))
        for start_s, block in blocks:
            await self.audio(block, start_s)

    async def audio(self, block: np.ndarray, start_s: float) -> None:
        """Queue a block of audio, which starts at stream time ``start_s``, for the open upload."""
        await self._queue.put(("audio", (block, start_s)))

    async def finish(self) -> None:
        """Queue the end of the open upload's command."""
        await self._queue.put(("finish", None))

    async def end(self) -> None:
        """Queue the end of the recording: nothing more will be queued."""
        await self._queue.put(("end", None))

    async def forward(self, gate: Callable[[], PrivacyGate]) -> None:
        """The forward stage: carry out every queued message, in order, on ``gate()``."""
        while True:
            action, payload = await self._queue.get()
            try:
                if action == "open":
                    self.upload = gate().open(payload)
                elif action == "audio" and self.upload is not None:
                    self.upload.write(*payload)
                elif action == "finish" and self.upload is not None:
                    self.upload.finish()
                    self.upload = None
                elif action == "end":
                    self.ended.set()
            finally:
                self._queue.task_done()
