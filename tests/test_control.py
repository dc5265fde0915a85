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

from agent.control.events import EventBus
from agent.control.server import MAX_LINE_BYTES, ControlServer, NotRunningError, request, subscribe
from agent.settings import EventSettings
from kernels.errors import EarshotError

STEP_TIMEOUT_S = 5.0


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


def test_an_existing_open_directory_is_made_owner_only(socket_dir):
    directory = socket_dir / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)

    async def scenario(server: ControlServer, bus: EventBus) -> int:
        return stat.S_IMODE(directory.stat().st_mode)

    assert serve(directory / "control.sock", scenario) == 0o700


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

    async def scenario(server: ControlServer, bus: EventBus) -> str:
        second = ControlServer(path, bus, status)
        with pytest.raises(EarshotError, match="another earshot is running") as caught:
            await second.start()
        return str(caught.value)

    message = serve(path, scenario)
    assert str(path) in message  # type: ignore[operator]


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
