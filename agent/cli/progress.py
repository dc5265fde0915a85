"""Progress bars for long jobs (data building, training), one bar per stage, on stderr."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class StageProgress:
    """A ``progress(stage, done, total)`` callback that draws one tqdm bar per stage.

    Use as a context manager so the bars are closed even when the job fails.
    """

    def __init__(self, *, unit: str = "clip", disable: bool | None = None):
        self.unit = unit
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Move ``stage``'s bar to ``done`` of ``total``."""
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(
                total=total, desc=f"{stage:>12}", unit=self.unit, disable=self.disable, leave=True
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for bar in self._bars.values():
            bar.close()
