"""Events: one JSON line per thing that happened, to stdout, control-socket subscribers and hooks.

An event is a flat JSON object ``{"event": KIND, "time": "2024-05-01T12:00:00.123Z", ...}`` with
the kind's fields at the top level (the kinds are `agent.settings.EVENT_KINDS`). `EventBus.emit`

- writes the line to standard output (``events.stdout``), flushed; a closed pipe is logged once
  and the bus stops writing there, it never stops the agent;
- hands it to every subscriber queue (the control socket's ``subscribe`` clients); a slow
  subscriber loses its oldest lines, emit never waits for it;
- starts the kind's hook (``events.hooks.KIND``), a ``/bin/sh -c`` command with the event in
  ``EARSHOT_*`` environment variables. Hooks are never waited on: finished ones are reaped by
  later emits, at most `MAX_RUNNING_HOOKS` run at once, and `EventBus.close` stops the rest.

Every child the agent starts (hooks, and local commands' shell actions) gets its environment from
`hook_environment`, which leaves out the variables `EventBus.withhold` was given: the endpoint's
secrets (`withheld_variables`), which only the privacy gate reads.

Only the standard library is used, so the lean daemon stays lean.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Mapping
from pathlib import PurePath
from typing import TextIO

from agent.settings import EVENT_KINDS, EndpointSettings, EventSettings

_LOGGER = logging.getLogger(__name__)

MAX_RUNNING_HOOKS = 4
"""Hooks running at once; an event whose hook would exceed this skips it, with a warning."""
RESERVED_FIELDS = ("event", "time")
"""Keys every event has; `EventBus.emit` refuses fields with these names."""
_ENV_PREFIX = "EARSHOT_"
_NOT_ENV_CHAR = re.compile(r"[^A-Z0-9_]")
_REAP_POLL_S = 0.02


def to_json_safe(value: object) -> object:
    """``value`` as plain JSON types.

    numpy scalars become ``int``/``float``/``bool`` and arrays lists (through their ``item`` and
    ``tolist`` methods, so numpy is not imported), paths and unknown objects strings, enums their
    value, datetimes ISO-8601 text, and non-finite floats ``None`` (JSON has no NaN).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json_safe(value.value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_safe(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return to_json_safe(tolist())
    return str(value)


def utc_timestamp() -> str:
    """The current UTC time as ISO-8601 with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    now = dt.datetime.now(dt.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def withheld_variables(
    endpoint: EndpointSettings, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The environment variables no child of the agent may see: the endpoint's secrets.

    They are ``endpoint.token_env`` (it holds the bearer token) and every variable of
    ``environ`` (default ``os.environ``) whose value is the path of ``endpoint.token_file``.
    """
    names = set() if endpoint.token_env is None else {endpoint.token_env}
    if endpoint.token_file is not None:
        token_file = _absolute(endpoint.token_file)
        environ = os.environ if environ is None else environ
        names.update(name for name, value in environ.items() if _absolute(value) == token_file)
    return frozenset(names)


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def hook_environment(
    event: dict[str, object], line: str, withheld: Collection[str] = ()
) -> dict[str, str]:
    """The environment of a hook: this process's, plus the event in ``EARSHOT_*`` variables.

    ``EARSHOT_EVENT`` is the kind, ``EARSHOT_<FIELD>`` each top-level field (upper-cased, other
    characters than ``A-Z 0-9 _`` replaced by ``_``): text and numbers as ``str`` gives them,
    ``None`` as an empty string, lists and objects as JSON. ``EARSHOT_JSON`` is the whole line.
    The variables named in ``withheld`` (`withheld_variables`) are left out.
    """
    env = {name: value for name, value in os.environ.items() if name not in withheld}
    for key, value in event.items():
        name = _ENV_PREFIX + _NOT_ENV_CHAR.sub("_", key.upper())
        if value is None:
            env[name] = ""
        elif isinstance(value, dict | list):
            env[name] = json.dumps(value, separators=(",", ":"))
        else:
            env[name] = str(value)
    env[_ENV_PREFIX + "JSON"] = line
    return env


class EventBus:
    """Publishes events as JSON lines; see the module docstring.

    `emit` is meant to be called on the asyncio loop's thread (subscriber queues are asyncio
    queues); from another thread it hands lines to subscribers with ``call_soon_threadsafe``.
    Without a running loop there are simply no subscribers, and stdout and hooks work as usual.

    Parameters
    ----------
    settings
        The ``events`` section: whether to print, and the hooks.
    out
        Where lines are printed when ``settings.stdout`` is true; None for ``sys.stdout``. With
        ``settings.stdout`` false nothing is printed.
    quiet
        Print nothing whatever the settings say (a live view shows the events instead).
    """

    def __init__(
        self, settings: EventSettings, *, out: TextIO | None = None, quiet: bool = False
    ) -> None:
        self._lock = threading.Lock()
        self._stream: TextIO | None = None if quiet else out if out is not None else sys.stdout
        self._out: TextIO | None = None
        self._hooks: dict[str, str] = {}
        self._settings = settings
        self.settings = settings
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._subscribers: dict[asyncio.Queue[str], asyncio.AbstractEventLoop | None] = {}
        self._withheld: frozenset[str] = frozenset()

    @property
    def withheld_env(self) -> frozenset[str]:
        """Environment variables kept from every hook (see `withhold`)."""
        return self._withheld

    def withhold(self, names: Collection[str]) -> None:
        """Keep the variables ``names`` out of every later hook's environment, from now on.

        Names add up: after a reload the old token's variable stays withheld too.
        """
        with self._lock:
            self._withheld = self._withheld | frozenset(names)

    @property
    def settings(self) -> EventSettings:
        """The ``events`` settings in force; assigning new ones (a reload) takes effect at once.

        Hooks already running are left to finish. Printing stays off after a broken pipe.
        """
        return self._settings

    @settings.setter
    def settings(self, settings: EventSettings) -> None:
        hooks = {kind: getattr(settings.hooks, kind) for kind in EVENT_KINDS}
        with self._lock:
            self._settings = settings
            self._out = self._stream if settings.stdout else None
            self._hooks = {kind: command for kind, command in hooks.items() if command is not None}

    @property
    def running_hooks(self) -> int:
        """Hooks started and not yet reaped (finished ones are reaped here first)."""
        with self._lock:
            self._reap()
            return len(self._running)

    def emit(self, kind: str, **fields: object) -> dict[str, object]:
        """Publish one event and return it as sent (JSON-safe).

        Parameters
        ----------
        kind
            One of `agent.settings.EVENT_KINDS` (others are published too, with a debug log).
        **fields
            The event's details; converted by `to_json_safe`.

        Raises
        ------
        ValueError
            A field is called ``event`` or ``time``.
        """
        clash = [name for name in RESERVED_FIELDS if name in fields]
        if clash:
            raise ValueError(f"event field names {clash} are reserved")
        if kind not in EVENT_KINDS:
            _LOGGER.debug("emitting an event of unlisted kind %r", kind)
        event: dict[str, object] = {"event": kind, "time": utc_timestamp()}
        event.update({key: to_json_safe(value) for key, value in fields.items()})
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._write(line)
            self._reap()
            if kind in self._hooks:
                self._start_hook(kind, self._hooks[kind], event, line)
        self._publish(line)
        return event

    def subscribe(self, maxsize: int = 256) -> asyncio.Queue[str]:
        """A queue that receives every later event line (no trailing newline).

        When it holds ``maxsize`` lines, the oldest is dropped for the newest. Call from the
        loop that reads the queue; `unsubscribe` when done.
        """
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._subscribers[queue] = loop
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        """Stop delivering to ``queue``; unknown queues are ignored."""
        with self._lock:
            self._subscribers.pop(queue, None)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop hooks still running: SIGTERM, then SIGKILL after ``timeout_s``; reap them all."""
        with self._lock:
            self._reap()
            running, self._running = self._running, []
        for kind, process in running:
            _LOGGER.info("stopping the %s hook (pid %d)", kind, process.pid)
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _kind, process in running:
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(_REAP_POLL_S)
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def _write(self, line: str) -> None:
        if self._out is None:
            return
        try:
            self._out.write(line + "\n")
            self._out.flush()
        except (BrokenPipeError, ValueError) as err:
            # ValueError: the stream was closed under us.
            _LOGGER.warning("event output closed (%s); no more events are printed", err)
            out, self._out, self._stream = self._out, None, None
            _silence_stdout(out)

    def _publish(self, line: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers.items())
        if not subscribers:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for queue, loop in subscribers:
            if loop is None or loop is current:
                _offer(queue, line)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_offer, queue, line)

    def _reap(self) -> None:
        still: list[tuple[str, subprocess.Popen[bytes]]] = []
        for kind, process in self._running:
            code = process.poll()
            if code is None:
                still.append((kind, process))
            elif code != 0:
                _LOGGER.warning("the %s hook exited with code %d", kind, code)
        self._running = still

    def _start_hook(self, kind: str, command: str, event: dict[str, object], line: str) -> None:
        if len(self._running) >= MAX_RUNNING_HOOKS:
            _LOGGER.warning(
                "skipping the %s hook: %d hooks are still running", kind, len(self._running)
            )
            return
        try:
            # Hook output goes to our stderr (the journal), never into the JSON lines on stdout;
            # its own session lets close() stop the shell and whatever it started.
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                env=hook_environment(event, line, self._withheld),
                stdin=subprocess.DEVNULL,
                stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
                start_new_session=True,
            )
        except (OSError, ValueError) as err:
            _LOGGER.warning("cannot start the %s hook %r: %s", kind, command, err)
            return
        self._running.append((kind, process))


def _offer(queue: asyncio.Queue[str], line: str) -> None:
    """Put ``line`` into ``queue``, dropping its oldest line when full."""
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(line)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Send ``signum`` to the hook's process group (its shell and the shell's children)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _silence_stdout(out: TextIO) -> None:
    """After a broken pipe on stdout, point it at /dev/null so exit-time flushes stay quiet."""
    if out is not sys.stdout:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
