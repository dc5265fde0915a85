"""The event bus: JSON lines, subscribers and real ``/bin/sh`` hooks."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from agent.control.events import MAX_RUNNING_HOOKS, EventBus, to_json_safe, withheld_variables
from agent.settings import EndpointSettings, EventSettings, HookSettings

POLL_TIMEOUT_S = 5.0


def group_gone(pgid: int) -> bool:
    """No live process is left in process group ``pgid`` (zombies awaiting init count as gone)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return False
    return True


def wait_for(predicate, timeout_s: float = POLL_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def hooks(**commands: str) -> EventSettings:
    return EventSettings(stdout=False, hooks=HookSettings(**commands))


def test_emit_writes_one_json_line_per_event_with_converted_fields():
    out = io.StringIO()
    bus = EventBus(EventSettings(), out=out)
    event = bus.emit(
        "wake",
        wake_word="computer",
        score=np.float32(0.75),
        hops=np.int64(3),
        accepted=np.bool_(True),
        model=Path("/models/computer.npz"),
        gap=float("nan"),
        levels=np.array([1.5, 2.0]),
    )
    bus.emit("state", state="listening")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == event
    assert first["event"] == "wake"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["score"] == 0.75 and isinstance(first["score"], float)
    assert first["hops"] == 3 and isinstance(first["hops"], int)
    assert first["accepted"] is True
    assert first["model"] == "/models/computer.npz"
    assert first["gap"] is None
    assert first["levels"] == [1.5, 2.0]
    assert json.loads(lines[1])["state"] == "listening"


def test_stdout_off_prints_nothing_and_reserved_fields_are_refused():
    out = io.StringIO()
    bus = EventBus(EventSettings(stdout=False), out=out)
    bus.emit("state", state="idle")
    assert out.getvalue() == ""
    with pytest.raises(ValueError, match="reserved"):
        bus.emit("state", time="now")


def test_new_settings_take_effect_at_once(tmp_path):
    out = io.StringIO()
    target = tmp_path / "ran"
    bus = EventBus(EventSettings(stdout=False), out=out)
    bus.emit("wake", wake_word="one")
    bus.settings = EventSettings(hooks=HookSettings(wake=f"echo $EARSHOT_WAKE_WORD > {target}"))
    bus.emit("wake", wake_word="two")
    wait_for(lambda: target.exists() and target.read_text() == "two\n")
    bus.close()
    assert [json.loads(line)["wake_word"] for line in out.getvalue().splitlines()] == ["two"]
    assert bus.settings.stdout is True


def test_to_json_safe_nests():
    assert to_json_safe({"a": (np.float64(1.0), {Path("p"): np.uint8(2)})}) == {
        "a": [1.0, {"p": 2}]
    }


def test_a_broken_stdout_pipe_is_logged_once_and_never_raises(caplog):
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = os.fdopen(write_end, "w")
    bus = EventBus(EventSettings(), out=out)
    with caplog.at_level(logging.WARNING, logger="agent.control.events"):
        bus.emit("state", state="listening")
        bus.emit("state", state="idle")
    assert len([r for r in caplog.records if "no more events" in r.getMessage()]) == 1
    with contextlib.suppress(BrokenPipeError):
        out.close()


def test_a_hook_runs_with_the_event_in_its_environment(tmp_path):
    target = tmp_path / "env.txt"
    part = f"{target}.part"
    bus = EventBus(hooks(wake=f"env | grep ^EARSHOT_ | sort > {part}; mv {part} {target}"))
    try:
        event = bus.emit("wake", wake_word="computer", score=0.9, extra=None, tags=["a", "b"])
        wait_for(target.exists)
    finally:
        bus.close()
    env = dict(line.split("=", 1) for line in target.read_text().splitlines())
    assert env["EARSHOT_EVENT"] == "wake"
    assert env["EARSHOT_WAKE_WORD"] == "computer"
    assert env["EARSHOT_SCORE"] == "0.9"
    assert env["EARSHOT_EXTRA"] == ""
    assert json.loads(env["EARSHOT_TAGS"]) == ["a", "b"]
    assert env["EARSHOT_TIME"] == event["time"]
    assert json.loads(env["EARSHOT_JSON"]) == event


def test_only_the_configured_kind_runs_a_hook(tmp_path):
    target = tmp_path / "ran"
    bus = EventBus(hooks(upload=f"touch {target}"))
    bus.emit("wake", wake_word="computer")
    assert bus.running_hooks == 0
    bus.emit("upload", status="ok")
    wait_for(target.exists)
    bus.close()


def test_a_failing_hook_is_logged_with_its_exit_code(caplog):
    bus = EventBus(hooks(error="exit 7"))
    with caplog.at_level(logging.WARNING, logger="agent.control.events"):
        bus.emit("error", message="boom")
        wait_for(lambda: bus.running_hooks == 0)
    assert any("error hook exited with code 7" in r.getMessage() for r in caplog.records)
    bus.close()


def test_at_most_four_hooks_run_at_once_and_close_kills_them_fast(tmp_path, caplog):
    started = tmp_path / "started"
    bus = EventBus(hooks(wake=f"echo $$ >> {started}; sleep 2"))
    with caplog.at_level(logging.WARNING, logger="agent.control.events"):
        for _ in range(MAX_RUNNING_HOOKS + 2):
            bus.emit("wake", wake_word="computer")
    assert bus.running_hooks == MAX_RUNNING_HOOKS
    assert sum("skipping the wake hook" in r.getMessage() for r in caplog.records) == 2
    wait_for(lambda: started.exists() and len(started.read_text().split()) == MAX_RUNNING_HOOKS)
    pgids = [int(pgid) for pgid in started.read_text().split()]
    assert not any(group_gone(pgid) for pgid in pgids)
    began = time.monotonic()
    bus.close(timeout_s=1.0)
    assert time.monotonic() - began < 1.5
    wait_for(lambda: all(group_gone(pgid) for pgid in pgids), timeout_s=0.5)


def test_close_kills_a_hook_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    part = f"{ready}.part"
    stubborn = f"trap '' TERM; echo $$ > {part}; mv {part} {ready}; while :; do sleep 0.1; done"
    bus = EventBus(hooks(state=stubborn))
    bus.emit("state", state="listening")
    wait_for(ready.exists)
    pgid = int(ready.read_text())
    time.sleep(0.1)  # let the shell's first `sleep` start
    assert not group_gone(pgid)
    began = time.monotonic()
    bus.close(timeout_s=0.3)
    assert time.monotonic() - began < 2.0
    wait_for(lambda: group_gone(pgid), timeout_s=2.0)


def test_subscribers_get_lines_and_a_slow_one_loses_its_oldest():
    async def scenario() -> tuple[list[str], list[str]]:
        bus = EventBus(EventSettings(stdout=False))
        fast = bus.subscribe()
        slow = bus.subscribe(maxsize=2)
        for index in range(5):
            bus.emit("state", index=index)
        bus.unsubscribe(fast)
        bus.emit("state", index=5)
        return (
            [fast.get_nowait() for _ in range(fast.qsize())],
            [slow.get_nowait() for _ in range(slow.qsize())],
        )

    fast, slow = asyncio.run(scenario())
    assert [json.loads(line)["index"] for line in fast] == [0, 1, 2, 3, 4]
    assert [json.loads(line)["index"] for line in slow] == [4, 5]


def test_withheld_variables_are_the_token_variable_and_any_naming_the_token_file(tmp_path):
    token_file = tmp_path / "token"
    environ = {
        "ES_TOKEN": "secret", "ES_TOKEN_FILE": str(token_file), "HOME": str(tmp_path),
        "OTHER_FILE": str(tmp_path / "other"),
    }  # fmt: skip
    assert withheld_variables(EndpointSettings(token_env="ES_TOKEN"), environ) == {"ES_TOKEN"}
    by_file = EndpointSettings(token_file=str(token_file))
    assert withheld_variables(by_file, environ) == {"ES_TOKEN_FILE"}
    assert withheld_variables(EndpointSettings(), environ) == frozenset()


def test_a_withheld_variable_never_reaches_a_hook(tmp_path, monkeypatch):
    monkeypatch.setenv("ES_TOKEN", "tok-planted-in-the-environment")
    monkeypatch.setenv("ES_OTHER", "kept")
    target = tmp_path / "env.txt"
    part = f"{target}.part"
    bus = EventBus(hooks(wake=f"env > {part}; mv {part} {target}"))
    bus.withhold({"ES_TOKEN"})
    bus.withhold({"ES_OLD_TOKEN"})  # a reload adds names, never drops one
    try:
        bus.emit("wake", wake_word="computer")
        wait_for(target.exists)
    finally:
        bus.close()
    env = target.read_text()
    assert bus.withheld_env == {"ES_TOKEN", "ES_OLD_TOKEN"}
    assert "ES_TOKEN=" not in env and "tok-planted-in-the-environment" not in env
    assert "ES_OTHER=kept" in env.splitlines() and "EARSHOT_EVENT=wake" in env.splitlines()
