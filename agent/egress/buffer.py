"""The command audio of one upload, held in memory: trimmed on the way in, replayed per attempt.

An `AudioBuffer` is where the privacy gate's limits on audio take effect: `AudioBuffer.write`
drops every sample from before the cut-off (the wake word's end less the pre-roll) and beyond the
length limit, and keeps the rest as 16-bit PCM in memory only, never on disk. The capture side
writes without ever blocking on the network; the sending side waits for more audio, reading from
the start again for each retry, until the command ends, the upload is cancelled, or the command
stalls past its deadline (then it counts as ended).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from agent.egress.exchange import Cancelled
from agent.egress.wire import SAMPLE_RATE_HZ, encode_pcm16, first_kept_index

_LOGGER = logging.getLogger(__name__)


class AudioBuffer:
    """Thread-safe 16-bit PCM of one command, written by capture and read by the sender.

    Parameters
    ----------
    cutoff_s
        Stream time, in seconds, before which no sample is kept.
    max_samples
        Samples kept at most; later ones are dropped.
    stall_deadline
        `time.monotonic` after which a command that never finished is treated as finished.
    cancelled
        Set when the upload is abandoned: writes are ignored and waits raise `Cancelled`.
    label
        What the audio belongs to (the wake word), for log lines.
    """

    def __init__(
        self,
        *,
        cutoff_s: float,
        max_samples: int,
        stall_deadline: float,
        cancelled: threading.Event,
        label: str,
    ) -> None:
        self.cutoff_s = cutoff_s
        self.max_samples = max_samples
        self.stall_deadline = stall_deadline
        self.label = label
        self._cancelled = cancelled
        self._cond = threading.Condition()
        self._chunks: list[bytes] = []
        self._samples = 0
        self._finished = False

    def __repr__(self) -> str:
        return f"AudioBuffer({self.label!r}, samples={self._samples})"

    @property
    def samples(self) -> int:
        """Samples kept so far."""
        return self._samples

    @property
    def seconds(self) -> float:
        """Seconds of audio kept (everything that is, or will be, sent)."""
        return self._samples / SAMPLE_RATE_HZ

    def write(self, chunk: np.ndarray, start_s: float) -> None:
        """Keep float32 mono 16 kHz audio whose first sample lies at stream time ``start_s``.

        Samples before `cutoff_s` and beyond `max_samples` are dropped; after `finish` or a
        cancel nothing is kept. Never blocks on the network.
        """
        if self._finished or self._cancelled.is_set():
            return
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        samples = samples[first_kept_index(start_s, self.cutoff_s, samples.size) :]
        with self._cond:
            samples = samples[: max(0, self.max_samples - self._samples)]
            if samples.size == 0:
                return
            self._chunks.append(encode_pcm16(samples))
            self._samples += samples.size
            self._cond.notify_all()

    def finish(self) -> None:
        """The command has ended: what is kept now is all there will be."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake a reader waiting for audio (after the upload was cancelled)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, index: int) -> bool:
        """Wait until chunk ``index`` exists (True) or the command is over (False).

        Raises
        ------
        Cancelled
            The upload was cancelled.
        """
        with self._cond:
            while index >= len(self._chunks) and not self._finished:
                if self._cancelled.is_set():
                    raise Cancelled
                remaining = self.stall_deadline - time.monotonic()
                if remaining <= 0:
                    _LOGGER.warning("upload for %s never finished; sending what it has",
                                    self.label)  # fmt: skip
                    self._finished = True
                    break
                self._cond.wait(remaining)
            if self._cancelled.is_set():
                raise Cancelled
            return index < len(self._chunks)

    def wait_for_end(self) -> None:
        """Wait until the command is over.

        Raises
        ------
        Cancelled
            The upload was cancelled.
        """
        while self.wait_for(len(self._chunks)):
            pass

    def read_from(self, index: int) -> tuple[bytes, int]:
        """The PCM of chunks ``index`` onwards, and the index of the chunk that comes next."""
        with self._cond:
            return b"".join(self._chunks[index:]), len(self._chunks)

    def read_all(self) -> bytes:
        """All PCM kept so far."""
        with self._cond:
            return b"".join(self._chunks)
