"""The control socket, with a real server on a real Unix socket and real clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from agent.control.claim import LOCK_SUFFIX, SocketInUseError, SocketLock
from agent.control.events import EventBus
from agent.control.server import MAX_LINE_BYTES, ControlServer, NotRunningError, request, subscribe
from agent.settings import EventSettings, default_socket_path, runtime_dir
from kernels.errors import ConfigError, EarshotError

STEP_TIMEOUT_S = 5.0
NOBODY_UID = 65534


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (pytest's tmp_path can exceed AF_UNIX's 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="earshot-test-") as name:
        yield Path(name)


def status() -> dict[str, object]:
    return {"state": "listening", "uptime_s": 12.5}


def serve(
    path: Path,
    scenario: Callable[[ControlServer, EventBus], Awaitable[object]],
    **kwargs: object,
) -> object:
    """Run ``scenario`` against a started server; the server is closed afterwards."""

    async def main() -> object:
        bus = EventBus(EventSettings(stdout=False))
        options = {"status": status, **kwargs}
        server = ControlServer(path, bus, **options)  # type: ignore[arg-type]
        await server.start()
        try:
            return await asyncio.wait_for(scenario(server, bus), STEP_TIMEOUT_S)
        finally:
            await server.close()

    return asyncio.run(main())


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> dict:
    writer.write(data)
    await writer.drain()
    return json.loads(await reader.readline())


def test_socket_is_owner_only_and_removed_on_close(socket_dir):
    path = socket_dir / "run" / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[int, int, bool]:
        return (
            stat.S_IMODE(path.parent.stat().st_mode),
            stat.S_IMODE(path.stat().st_mode),
            stat.S_ISSOCK(path.stat().st_mode),
        )

    assert serve(path, scenario) == (0o700, 0o600, True)
    assert not path.exists()


async def folder_mode_and_status(server: ControlServer, bus: EventBus) -> tuple[int, object]:
    """The socket folder's mode while the server runs, and what ``status`` answers."""
    answer = await asyncio.to_thread(request, server.path, "status")
    return stat.S_IMODE(server.path.parent.stat().st_mode), answer["state"]


def test_an_existing_folder_of_yours_is_used_as_it_is(socket_dir):
    # events.socket: ~/control.sock must not make the home folder 0700.
    directory = socket_dir / "home"
    directory.mkdir()
    directory.chmod(0o755)

    assert serve(directory / "control.sock", folder_mode_and_status) == (0o755, "listening")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o770, 0o703], ids=lambda mode: f"{mode:o}")
def test_a_shared_folder_is_refused_and_left_as_it_is(socket_dir, mode):
    directory = socket_dir / "shared"
    directory.mkdir()
    directory.chmod(mode)

    with pytest.raises(ConfigError) as caught:
        serve(directory / "control.sock", folder_mode_and_status)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert message.startswith("events.socket: ") and "\n" not in message
    assert str(directory) in message and f"writable by others (mode {mode:o})" in message
    assert stat.S_IMODE(directory.stat().st_mode) == mode
    assert os.listdir(directory) == []  # no socket, no lock file


def test_a_folder_of_another_user_is_refused(socket_dir):
    if os.getuid() == 0:
        directory = socket_dir / "theirs"
        directory.mkdir(mode=0o755)
        os.chown(directory, NOBODY_UID, NOBODY_UID)
    else:
        directory = Path("/")
    owner = directory.stat().st_uid
    assert owner != os.getuid()

    with pytest.raises(ConfigError) as caught:
        serve(directory / "control.sock", folder_mode_and_status)
    assert caught.value.exit_code == 2
    assert f"{directory} belongs to uid {owner}" in str(caught.value)
    assert directory.stat().st_uid == owner and not (directory / "control.sock").exists()


def test_a_new_folder_is_made_owner_only_even_inside_a_shared_one(socket_dir):
    shared = socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)

    assert serve(shared / "mine" / "control.sock", folder_mode_and_status) == (0o700, "listening")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_the_runtime_folder_is_earshots_own_and_kept_owner_only(socket_dir, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(socket_dir))
    assert serve(default_socket_path(), folder_mode_and_status) == (0o700, "listening")
    runtime_dir().chmod(0o755)  # loosened by hand: earshot's own folder is made private again

    assert serve(default_socket_path(), folder_mode_and_status) == (0o700, "listening")


def test_a_link_in_place_of_the_runtime_folder_leads_to_a_folder_left_as_it_is(
    socket_dir, monkeypatch
):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(socket_dir))
    home = socket_dir / "home"
    home.mkdir()
    home.chmod(0o755)
    runtime_dir().symlink_to(home)

    assert serve(default_socket_path(), folder_mode_and_status) == (0o755, "listening")
    assert stat.S_IMODE(home.stat().st_mode) == 0o755


def test_status_and_reload_round_trip_through_the_blocking_client(socket_dir):
    path = socket_dir / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[dict, dict]:
        return (
            await asyncio.to_thread(request, path, "status"),
            await asyncio.to_thread(request, path, "reload"),
        )

    async def reload() -> dict[str, object]:  # the daemon reloads on its loop
        await asyncio.sleep(0)
        return {"reloaded": True}

    answer, reload = serve(path, scenario, reload=reload)  # type: ignore[misc]
    assert answer == {"ok": True, "state": "listening", "uptime_s": 12.5}
    assert reload == {"ok": True, "reloaded": True}


def test_reload_without_a_handler_and_a_failing_status_are_answered(socket_dir):
    path = socket_dir / "control.sock"

    def broken() -> dict[str, object]:
        raise RuntimeError("meter not ready")

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[dict, dict]:
        return (
            await asyncio.to_thread(request, path, "reload"),
            await asyncio.to_thread(request, path, "status"),
        )

    reload, failed = serve(path, scenario, status=broken)  # type: ignore[misc]
    assert reload["ok"] is False and "not supported" in reload["error"]
    assert failed == {"ok": False, "error": "status failed: meter not ready"}


def test_bad_requests_get_errors_and_the_connection_stays_usable(socket_dir):
    path = socket_dir / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> list[dict]:
        reader, writer = await asyncio.open_unix_connection(str(path))
        replies = [
            await ask(reader, writer, b"this is not json\n"),
            await ask(reader, writer, b'{"command": "selfdestruct"}\n'),
            await ask(reader, writer, b'{"command": ["status"]}\n'),
            await ask(reader, writer, b"[1, 2]\n"),
            await ask(reader, writer, b'\n{"command": "status"}\n'),
        ]
        writer.close()
        return replies

    *errors, last = serve(path, scenario)  # type: ignore[misc]
    assert all(reply["ok"] is False for reply in errors)
    assert "invalid JSON" in errors[0]["error"]
    assert '"selfdestruct"' in errors[1]["error"] and "status" in errors[1]["error"]
    assert last["state"] == "listening"


def test_an_over_long_line_closes_only_that_connection(socket_dir):
    path = socket_dir / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[bytes, dict]:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"x" * (MAX_LINE_BYTES + 10))
        await writer.drain()
        closed = await reader.read()
        writer.close()
        return closed, await asyncio.to_thread(request, path, "status")

    closed, answer = serve(path, scenario)  # type: ignore[misc]
    assert closed == b""
    assert answer["state"] == "listening"


def test_subscribers_receive_emitted_events_until_they_leave(socket_dir):
    path = socket_dir / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[dict, list[dict], dict]:
        reader, writer = await asyncio.open_unix_connection(str(path))
        confirmed = await ask(reader, writer, b'{"command": "subscribe"}\n')
        bus.emit("wake", wake_word="computer", score=0.9)
        bus.emit("state", state="capturing")
        lines = [json.loads(await reader.readline()) for _ in range(2)]
        writer.close()
        # The server notices the hang-up and drops the subscription; others are unaffected.
        while bus._subscribers:
            await asyncio.sleep(0.01)
        bus.emit("state", state="listening")
        return confirmed, lines, await asyncio.to_thread(request, path, "status")

    confirmed, lines, answer = serve(path, scenario)  # type: ignore[misc]
    assert confirmed == {"ok": True, "subscribed": True}
    assert [(line["event"], line.get("wake_word"), line.get("state")) for line in lines] == [
        ("wake", "computer", None),
        ("state", None, "capturing"),
    ]
    assert answer["ok"] is True


def test_the_blocking_subscriber_ends_when_the_server_closes(socket_dir):
    path = socket_dir / "control.sock"

    def collect() -> list[str]:
        return list(subscribe(path))

    async def scenario(server: ControlServer, bus: EventBus) -> list[str]:
        reader = asyncio.ensure_future(asyncio.to_thread(collect))
        while not bus._subscribers:
            await asyncio.sleep(0.01)
        bus.emit("upload", status="ok")
        await server.close()
        return await reader

    lines = serve(path, scenario)
    assert [json.loads(line)["status"] for line in lines] == ["ok"]  # type: ignore[union-attr]


def test_a_second_server_on_a_live_socket_is_refused(socket_dir):
    path = socket_dir / "control.sock"

    async def scenario(server: ControlServer, bus: EventBus) -> tuple[SocketInUseError, dict]:
        second = ControlServer(path, bus, status)
        with pytest.raises(SocketInUseError, match="another earshot is running") as caught:
            await second.start()
        return caught.value, await asyncio.to_thread(request, path, "status")

    refused, answer = serve(path, scenario)  # type: ignore[misc]
    assert refused.exit_code == 2
    assert f"{path} (pid {os.getpid()})" in str(refused)  # the lock names its holder
    assert answer["state"] == "listening"  # the first still answers


def test_the_lock_is_taken_before_the_socket_is_looked_at_and_removed_on_close(socket_dir):
    path = socket_dir / "control.sock"
    lock = SocketLock(path)
    lock.acquire()  # an agent between its check for a stale socket and its bind
    try:
        with pytest.raises(SocketInUseError, match=f"pid {os.getpid()}"):
            serve(path, folder_mode_and_status)
        assert sorted(os.listdir(socket_dir)) == ["control.sock" + LOCK_SUFFIX]
    finally:
        lock.release()

    async def scenario(server: ControlServer, bus: EventBus) -> int:
        return stat.S_IMODE(lock.path.stat().st_mode)

    assert serve(path, scenario) == 0o600
    assert os.listdir(socket_dir) == []
    # A lock file left by an agent that died is no obstacle: only a held lock is.
    lock.path.write_text("999999\n")
    assert serve(path, folder_mode_and_status) == (0o700, "listening")


def test_a_stale_socket_file_is_replaced(socket_dir):
    path = socket_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nothing listens: a crashed agent's socket
    assert stat.S_ISSOCK(path.stat().st_mode)

    async def scenario(server: ControlServer, bus: EventBus) -> dict:
        return await asyncio.to_thread(request, path, "status")

    assert serve(path, scenario)["state"] == "listening"  # type: ignore[index]


def test_a_regular_file_at_the_socket_path_is_left_alone(socket_dir):
    path = socket_dir / "control.sock"
    path.write_text("mine")

    async def scenario(server: ControlServer, bus: EventBus) -> None:
        return None

    with pytest.raises(EarshotError, match="not a socket"):
        serve(path, scenario)
    assert path.read_text() == "mine"


def test_the_client_reports_a_missing_agent(socket_dir):
    with pytest.raises(NotRunningError, match="earshot is not running"):
        request(socket_dir / "control.sock", "status")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_dir / "stale.sock"))
    stale.close()
    with pytest.raises(NotRunningError):
        request(socket_dir / "stale.sock", "status")
    assert os.listdir(socket_dir) == ["stale.sock"]
