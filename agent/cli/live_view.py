"""The live terminal view of ``earshot run``: what the agent hears and does, redrawn in place.

When standard output is a terminal (and ``--json`` is not given), `LiveView` draws with `rich`
instead of printing JSON lines: the source, the state, the input level as a meter, each wake word
with its highest score of the last moment next to its threshold, counts, and the latest events
(wakes, commands, uploads, transcripts, errors) as readable lines. Log lines print above the view.
It reads the daemon as the control socket does (`Daemon.status`, the event bus) plus each wake
word's recent peak score (`models.wake.detector.Detector.take_peaks`); it changes nothing.

`rich` is imported only here, and this module only when the view is shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from agent.daemon.loop import Daemon

REFRESH_S = 0.25
"""How often the view is redrawn (and the wake words' peak scores taken)."""
RECENT_EVENTS = 8
"""Event lines kept on screen."""
LEVEL_RANGE_DBFS = (-80.0, 0.0)
"""The input meter's scale."""
METER_CELLS = 30
STATE_STYLES = {
    "listening": "green", "woken": "bold yellow", "capturing": "bold yellow",
    "handling": "cyan", "forwarding": "bold magenta",
}  # fmt: skip


def meter(fraction: float, cells: int = METER_CELLS, style: str = "green") -> Text:
    """A horizontal bar filled to ``fraction`` (clipped to 0-1)."""
    filled = round(float(np.clip(fraction, 0.0, 1.0)) * cells)
    return Text("█" * filled, style=style) + Text("·" * (cells - filled), style="dim")


def describe_event(event: dict[str, Any]) -> Text | None:
    """One readable line for an event; None for kinds the view shows otherwise (state)."""
    kind = event.get("event")
    clock = str(event.get("time", ""))[11:19]
    line = Text(f"{clock}  ", style="dim")
    if kind == "wake":
        line.append(f"heard {event['wake_word']}", style="bold yellow")
        line.append(f"  score {event['score']:.3f} at {event['end_s']:.1f} s")
    elif kind == "command":
        line.append("command ", style="cyan")
        name = f"{event['command']} " if event.get("command") else ""
        line.append(f"{name}{event['outcome']}, {event['seconds']:.1f} s")
        if event.get("action"):
            line.append(f" -> {event['action']}")
    elif kind == "upload":
        ok = event.get("result") == "ok"
        line.append(f"upload {event['result']}", style="bold green" if ok else "bold red")
        line.append(f"  {event['seconds']:.1f} s, {event['bytes']} bytes to {event['endpoint']}")
        if event.get("error"):
            line.append(f": {event['error']}", style="red")
    elif kind == "transcript":
        line.append("transcript ", style="magenta")
        line.append(repr(event.get("text", "")))
    elif kind == "error":
        line.append(f"error: {event.get('error')}", style="bold red")
    elif kind in ("device_lost", "device_back"):
        line.append(kind.replace("_", " "), style="red" if kind == "device_lost" else "green")
    else:
        return None
    return line


class LiveView:
    """Draws a running `Daemon` on the terminal until it stops.

    Parameters
    ----------
    daemon : Daemon
        The agent to show; its event bus should not also print JSON lines.
    console : rich.console.Console, optional
        Where to draw (standard output by default).
    """

    def __init__(self, daemon: Daemon, console: Console | None = None) -> None:
        self.daemon = daemon
        self.console = console or Console()
        self.events: deque[Text] = deque(maxlen=RECENT_EVENTS)
        self.peaks: dict[str, float] = {}

    async def run(self, agent: Coroutine[Any, Any, int]) -> int:
        """Run ``agent`` (the daemon's `run`) with the view drawn, and return its exit code."""
        lines = self.daemon.bus.subscribe()
        root = logging.getLogger()
        handlers = root.handlers[:]
        with Live(self.render(), console=self.console, auto_refresh=False) as live:
            root.handlers = [RichHandler(console=self.console, show_path=False)]
            refresh = asyncio.create_task(self._refresh(live, lines), name="live view")
            try:
                return await agent
            finally:
                refresh.cancel()
                await asyncio.gather(refresh, return_exceptions=True)
                self._take(lines)
                live.update(self.render(), refresh=True)
                root.handlers = handlers
                self.daemon.bus.unsubscribe(lines)

    async def _refresh(self, live: Live, lines: asyncio.Queue[str]) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            self._take(lines)
            live.update(self.render(), refresh=True)

    def _take(self, lines: asyncio.Queue[str]) -> None:
        """Read the events that arrived and the wake words' peaks since the last redraw."""
        while not lines.empty():
            described = describe_event(json.loads(lines.get_nowait()))
            if described is not None:
                self.events.append(described)
        detector = self.daemon.models.detector
        peaks = detector.take_peaks()
        self.peaks = {w.name: float(p) for w, p in zip(detector.wake_words, peaks, strict=True)}

    def render(self) -> Group:
        """The whole view as it stands."""
        status = self.daemon.status()
        state = str(status["state"])
        low, high = LEVEL_RANGE_DBFS
        level = float(status["level_dbfs"])  # type: ignore[arg-type]
        head = Table.grid(padding=(0, 2))
        head.add_row(
            Text(state.upper(), style=STATE_STYLES.get(state, "bold")),
            Text(f"{status['source']}", style="dim"),
            Text(f"{status['audio_s']:.0f} s heard, CPU {status['cpu_percent']:.1f} %"),
        )
        head.add_row(
            Text("input"), meter((level - low) / (high - low)), Text(f"{level:6.1f} dBFS")
        )
        words = Table(box=None, padding=(0, 2), show_edge=False)
        for column in ("wake word", "score (last moment)", "", "threshold", "heard"):
            words.add_column(column, style="bold" if column == "wake word" else None)
        counts: dict[str, int] = status["counts"]  # type: ignore[assignment]
        for wake in self.daemon.models.detector.wake_words:
            peak = self.peaks.get(wake.name, 0.0)
            near = peak >= wake.threshold - 0.5 * (1 - wake.threshold)
            words.add_row(
                wake.name, meter(peak, 20, "yellow" if near else "blue"), f"{peak:.3f}",
                f"{wake.threshold:.3f}", str(counts.get(f"wake:{wake.name}", 0)),
            )  # fmt: skip
        endpoint = status["endpoint"] or "none: commands are not sent anywhere"
        footer = Text(f"endpoint {endpoint}", style="dim")
        recent = list(self.events) or [Text("no events yet", style="dim")]
        return Group(head, Text(""), words, Text(""), *recent, footer)
