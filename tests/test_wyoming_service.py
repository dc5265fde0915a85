"""`earshot wyoming` over real sockets, with the wyoming package's own client.

A server runs in-process on a free loopback port (its own event loop in a thread) with the shipped
config's models (the default wake word "computer"); one test runs the real command in a
subprocess and stops it with SIGTERM. The demo recording says "computer" at about 9.6-10.2 s and
22.7-23.3 s; its first 9 s are other speech.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient, AsyncTcpClient, AsyncUnixClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncServer, AsyncTcpServer, AsyncUnixServer
from wyoming.wake import Detect, Detection, NotDetected

from agent.daemon.detectors import load_models
from agent.paths import DEMO_AUDIO
from agent.settings import load_settings
from agent.wyoming_service.address import server_for_uri
from agent.wyoming_service.service import WakeService
from kernels.errors import ConfigError
from models.wake.detector import Detector
from tests.conftest import EARSHOT, REPO, agent_home, run_earshot

CONFIG = REPO / "config" / "earshot.yaml"
WAKE_ENDS_S = (10.2, 23.3)
"""Where the demo's two "computer"s end."""
TOLERANCE_S = 0.7
CLEAN_S = 9.0
"""The demo's first seconds: speech without the wake word."""
CHUNK = 1024
READ_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    audio, rate = soundfile.read(DEMO_AUDIO, dtype="int16")
    assert rate == 16000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="module")
def service() -> Iterator[WakeService]:
    settings = load_settings(CONFIG)
    models = load_models(settings)
    service = WakeService(
        models.detector.base, models.detector.wake_words, backend=settings.detection.backend
    )
    yield service
    service.close()


@dataclass
class Running:
    """A server started on its own event loop in a thread."""

    server: AsyncServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def start_in_thread(service: WakeService, server: AsyncServer) -> Running:
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start(service.handler))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="wyoming-test-server", daemon=True)
    thread.start()
    assert started.wait(timeout=10)
    return Running(server, loop, thread)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def tcp_server(service: WakeService) -> Iterator[tuple[str, int]]:
    port = free_port()
    running = start_in_thread(service, AsyncTcpServer("127.0.0.1", port))
    yield "127.0.0.1", port
    running.stop()


def client(address: tuple[str, int]) -> AsyncTcpClient:
    return AsyncTcpClient(*address, connect_timeout=10, read_timeout=READ_TIMEOUT_S)


async def stream(
    conn: AsyncClient,
    pcm: bytes,
    *,
    rate: int = 16000,
    width: int = 2,
    channels: int = 1,
    samples_per_chunk: int = CHUNK,
    names: list[str] | None = None,
    detect: bool = True,
) -> list[Event]:
    """Send a detect, the audio as fast as possible, and audio-stop; every event read back.

    The events are read concurrently with the sending (as a client listening for detections
    does), until the answer to audio-stop has come (a not-detected, or a ping's pong after it).
    """
    received: list[Event] = []

    async def read() -> None:
        while True:
            event = await conn.read_event()
            assert event is not None, f"the server closed the connection after {received}"
            if Pong.is_type(event.type):
                return
            received.append(event)

    reader = asyncio.create_task(read())
    if detect:
        await conn.write_event(Detect(names=names).event())
    await conn.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = samples_per_chunk * width * channels
    for offset in range(0, len(pcm), step):
        audio = pcm[offset : offset + step]
        chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=audio)
        await conn.write_event(chunk.event())
    await conn.write_event(AudioStop().event())
    await conn.write_event(Ping(text="done").event())  # answered after audio-stop's answer
    await asyncio.wait_for(reader, READ_TIMEOUT_S)
    return received


def detections(events: list[Event]) -> list[Detection]:
    return [Detection.from_event(e) for e in events if Detection.is_type(e.type)]


def not_detected(events: list[Event]) -> int:
    return sum(NotDetected.is_type(e.type) for e in events)


def assert_demo_detected(events: list[Event]) -> None:
    found = detections(events)
    assert [d.name for d in found] == ["computer", "computer"], events
    for detection, end_s in zip(found, WAKE_ENDS_S, strict=True):
        assert detection.timestamp is not None
        assert abs(detection.timestamp / 1000 - end_s) <= TOLERANCE_S, found
    assert not_detected(events) == 0


async def describe(conn: AsyncClient) -> Info:
    await conn.write_event(Describe().event())
    event = await conn.read_event()
    assert event is not None and Info.is_type(event.type), event
    return Info.from_event(event)


# ---- describe ------------------------------------------------------------------------------------


def test_describe_lists_the_configured_wake_word(tcp_server) -> None:
    async def main() -> Info:
        async with client(tcp_server) as conn:
            return await describe(conn)

    info = asyncio.run(main())
    assert len(info.wake) == 1
    program = info.wake[0]
    assert program.name == "earshot" and program.attribution.name == "earshot"
    assert program.installed
    models = {m.name: m for m in program.models}
    assert list(models) == ["computer"]
    computer = models["computer"]
    assert computer.phrase == "computer"
    assert computer.languages == ["en"]
    assert computer.installed and computer.version and computer.description
    assert computer.attribution.name == "earshot"


def test_ping_is_answered_with_pong(tcp_server) -> None:
    async def main() -> Event | None:
        async with client(tcp_server) as conn:
            await conn.write_event(Ping(text="hello").event())
            return await conn.read_event()

    event = asyncio.run(main())
    assert event is not None and Pong.is_type(event.type)
    assert Pong.from_event(event).text == "hello"


# ---- detection -----------------------------------------------------------------------------------


def test_the_demo_is_detected_twice_near_the_wake_words(tcp_server, demo) -> None:
    async def main() -> list[Event]:
        async with client(tcp_server) as conn:
            return await stream(conn, demo.tobytes())

    assert_demo_detected(asyncio.run(main()))


def test_speech_without_the_wake_word_gives_one_not_detected(tcp_server, demo) -> None:
    async def main() -> list[Event]:
        async with client(tcp_server) as conn:
            return await stream(conn, demo[: int(CLEAN_S * 16000)].tobytes(), detect=False)

    events = asyncio.run(main())
    assert detections(events) == []
    assert not_detected(events) == 1
    assert [e.type for e in events] == ["not-detected"]


def test_48_khz_stereo_is_converted_and_detected(tcp_server, demo) -> None:
    high = soxr.resample(demo.astype(np.float32) / 32768, 16000, 48000)
    high = np.clip(np.round(high * 32767), -32768, 32767).astype("<i2")
    stereo = np.repeat(high[:, None], 2, axis=1)  # both channels equal

    async def main() -> list[Event]:
        async with client(tcp_server) as conn:
            return await stream(conn, stereo.tobytes(), rate=48000, channels=2)

    assert_demo_detected(asyncio.run(main()))


def test_a_new_audio_start_resets_the_connections_detector(tcp_server, demo) -> None:
    # The same connection: the clean part, then the whole demo again from the start. Timestamps
    # count from each audio-start, and the first stream's audio leaves nothing behind.
    async def main() -> tuple[list[Event], list[Event]]:
        async with client(tcp_server) as conn:
            first = await stream(conn, demo[: int(CLEAN_S * 16000)].tobytes())
            return first, await stream(conn, demo.tobytes())

    first, second = asyncio.run(main())
    assert not_detected(first) == 1 and detections(first) == []
    assert_demo_detected(second)


def test_two_clients_at_once_each_get_only_their_own_answer(tcp_server, demo) -> None:
    async def one(pcm: bytes) -> list[Event]:
        async with client(tcp_server) as conn:
            return await stream(conn, pcm, samples_per_chunk=512)

    async def main() -> list[list[Event]]:
        return await asyncio.gather(
            one(demo.tobytes()), one(demo[: int(CLEAN_S * 16000)].tobytes())
        )

    with_wake, without = asyncio.run(main())
    assert_demo_detected(with_wake)
    assert [e.type for e in without] == ["not-detected"]


class SlowService(WakeService):
    """Detectors that take `SLOW_PUSH_S` per chunk, as a busy machine would."""

    def detector(self) -> Detector:
        detector = super().detector()
        push = detector.push

        def slow_push(chunk: np.ndarray) -> list:
            time.sleep(SLOW_PUSH_S)
            return push(chunk)

        detector.push = slow_push  # type: ignore[method-assign]
        return detector


SLOW_PUSH_S = 2.0


def test_a_busy_detector_does_not_hold_up_other_clients(service, demo) -> None:
    slow = SlowService(service.base, service.wake_words, backend=service.backend, workers=2)
    port = free_port()
    running = start_in_thread(slow, AsyncTcpServer("127.0.0.1", port))

    async def busy() -> None:
        async with client(("127.0.0.1", port)) as conn:
            await conn.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=demo[:CHUNK].tobytes())
            await conn.write_event(chunk.event())
            await conn.write_event(chunk.event())
            await asyncio.sleep(2 * SLOW_PUSH_S + 0.5)

    async def quick() -> float:
        await asyncio.sleep(0.5)  # the busy client's first chunk is being processed
        async with client(("127.0.0.1", port)) as conn:
            began = time.monotonic()
            await conn.write_event(Ping(text="there?").event())
            event = await conn.read_event()
            assert event is not None and Pong.is_type(event.type)
            return time.monotonic() - began

    async def main() -> float:
        _, waited = await asyncio.gather(busy(), quick())
        return waited

    try:
        waited = asyncio.run(main())
    finally:
        running.stop()
        slow.close()
    assert waited < SLOW_PUSH_S / 2, f"a ping waited {waited:.2f} s for another client's audio"


def test_detect_names_restricts_the_wake_words_until_the_stream_ends(tcp_server, demo) -> None:
    async def main() -> tuple[list[Event], list[Event]]:
        async with client(tcp_server) as conn:
            restricted = await stream(conn, demo.tobytes(), names=["nothing"])
            return restricted, await stream(conn, demo.tobytes(), detect=False)

    restricted, after = asyncio.run(main())
    assert detections(restricted) == []
    assert [e.type for e in restricted] == ["not-detected"]
    assert_demo_detected(after)  # the restriction ended with the stream


def test_detect_names_naming_the_wake_word_detects_it(tcp_server, demo) -> None:
    async def main() -> list[Event]:
        async with client(tcp_server) as conn:
            return await stream(conn, demo.tobytes(), names=["computer"])

    assert_demo_detected(asyncio.run(main()))


# ---- malformed input ----------------------------------------------------------------------------


def test_audio_chunk_before_audio_start_is_an_error_and_the_connection_goes_on(
    tcp_server,
) -> None:
    async def main() -> tuple[Event | None, Info]:
        async with client(tcp_server) as conn:
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=bytes(2048))
            await conn.write_event(chunk.event())
            answer = await conn.read_event()
            return answer, await describe(conn)

    answer, info = asyncio.run(main())
    assert answer is not None and Error.is_type(answer.type)
    assert "audio-start" in Error.from_event(answer).text
    assert info.wake[0].models[0].name == "computer"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"rate": 16000, "width": 5, "channels": 1}, ["width", "5"]),
        ({"rate": "fast", "width": 2, "channels": 1}, ["rate", "fast"]),
        ({"rate": 16000, "width": 2, "channels": 0}, ["channels", "0"]),
        ({"width": 2, "channels": 1}, ["rate", "None"]),
    ],
)
def test_a_malformed_audio_start_is_an_error_and_the_connection_goes_on(
    tcp_server, data, words
) -> None:
    async def main() -> tuple[Event | None, Info]:
        async with client(tcp_server) as conn:
            await conn.write_event(Event(type="audio-start", data=data))
            answer = await conn.read_event()
            return answer, await describe(conn)

    answer, info = asyncio.run(main())
    assert answer is not None and Error.is_type(answer.type), answer
    text = Error.from_event(answer).text
    assert all(w in text for w in words), text
    assert info.wake


def test_a_payload_of_part_samples_is_an_error_and_the_stream_goes_on(tcp_server, demo) -> None:
    async def main() -> list[Event]:
        async with client(tcp_server) as conn:
            await conn.write_event(AudioStart(rate=16000, width=2, channels=2).event())
            odd = AudioChunk(rate=16000, width=2, channels=2, audio=bytes(6))
            await conn.write_event(odd.event())
            answer = await conn.read_event()
            assert answer is not None and Error.is_type(answer.type), answer
            assert "whole number of samples" in Error.from_event(answer).text
            return await stream(conn, demo.tobytes(), detect=False)

    assert_demo_detected(asyncio.run(main()))


def test_unknown_event_types_are_ignored(tcp_server) -> None:
    async def main() -> Info:
        async with client(tcp_server) as conn:
            await conn.write_event(Event(type="transcribe", data={"text": "x"}))
            await conn.write_event(Event(type="no-such-event", payload=b"\x00\x01"))
            return await describe(conn)  # the next answer is the info: nothing was said before

    assert asyncio.run(main()).wake


async def raw_exchange(address: tuple[str, int], data: bytes) -> list[bytes]:
    """Send raw bytes; the lines read back until the server closes (or 10 s pass)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    lines = []
    try:
        while line := await asyncio.wait_for(reader.readline(), 10):
            lines.append(line)
    finally:
        writer.close()
    return lines


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xffthis is not json\n",
        b"[1, 2, 3]\n",
        b'{"data": {}}\n',
        b'{"type": "audio-chunk", "payload_length": "many"}\n',
        b'{"type": "audio-chunk", "payload_length": 99999999999}\n',
        b'{"type": "describe", "data_length": 5}\nnot{}',
        b"x" * 100_000 + b"\n",
    ],
    ids=["binary", "json-list", "no-type", "length-string", "length-huge", "bad-data", "long"],
)
def test_an_unreadable_stream_gets_an_error_and_is_closed(tcp_server, garbage) -> None:
    lines = asyncio.run(raw_exchange(tcp_server, garbage))
    assert lines, "expected an error event before the close"
    assert b'"type": "error"' in lines[0]

    async def after() -> Info:  # the server still serves a new client
        async with client(tcp_server) as conn:
            return await describe(conn)

    assert asyncio.run(after()).wake


def test_a_client_leaving_mid_payload_does_not_hurt_the_server(tcp_server) -> None:
    async def leave() -> None:
        reader, writer = await asyncio.open_connection(*tcp_server)
        writer.write(b'{"type": "audio-chunk", "payload_length": 1000}\n' + bytes(10))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def after() -> Info:
        async with client(tcp_server) as conn:
            return await describe(conn)

    asyncio.run(leave())
    assert asyncio.run(after()).wake


# ---- unix socket and --uri ----------------------------------------------------------------------


def test_a_unix_socket_serves_too(service, demo, tmp_path: Path) -> None:
    path = tmp_path / "wyoming.sock"
    server = server_for_uri(f"unix://{path}")
    assert isinstance(server, AsyncUnixServer)
    running = start_in_thread(service, server)
    try:

        async def main() -> tuple[Info, list[Event]]:
            conn = AsyncUnixClient(str(path), connect_timeout=10, read_timeout=READ_TIMEOUT_S)
            async with conn:
                return await describe(conn), await stream(conn, demo.tobytes())

        info, events = asyncio.run(main())
    finally:
        running.stop()
    assert info.wake[0].models[0].phrase == "computer"
    assert_demo_detected(events)
    assert not path.exists()  # the server removes its socket when it stops


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:10400", "tcp://127.0.0.1", "tcp://127.0.0.1:notaport", "stdio://",
     "tcp://127.0.0.1:0", "unix://"],
)  # fmt: skip
def test_a_bad_uri_is_a_config_error_naming_the_option(uri) -> None:
    with pytest.raises(ConfigError, match="--uri"):
        server_for_uri(uri)


def test_a_unix_uri_refuses_to_replace_a_file(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="not a socket"):
        server_for_uri(f"unix://{path}")
    assert path.read_text() == "keep me"


def test_the_command_refuses_a_bad_uri_with_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_earshot("wyoming", "--uri", "ftp://nowhere", env=agent_home(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "--uri" in result.stderr and "ftp://nowhere" in result.stderr
    assert "tcp://HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_help_says_what_it_is_for() -> None:
    result = run_earshot("wyoming", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Home Assistant" in text and "wake_words" in text and "never leaves" in text


# ---- the command, as a process -------------------------------------------------------------------


def wait_for_port(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"earshot wyoming ended with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"earshot wyoming did not listen on port {port}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_the_command_serves_until_a_signal(tmp_path: Path, demo, signum, code) -> None:
    port = free_port()
    command = [*EARSHOT, "wyoming", "--uri", f"tcp://127.0.0.1:{port}", "--config", str(CONFIG)]
    env = agent_home(tmp_path)
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(process, port)

        async def main() -> tuple[Info, list[Event]]:
            async with client(("127.0.0.1", port)) as conn:
                return await describe(conn), await stream(conn, demo.tobytes())

        info, events = asyncio.run(main())
        # Client mistakes: a warning line each in the log, no traceback, and the server goes on.
        garbage = asyncio.run(raw_exchange(("127.0.0.1", port), b"not json\n"))
        assert garbage and b'"type": "error"' in garbage[0]

        async def stray_chunk() -> Event | None:
            async with client(("127.0.0.1", port)) as conn:
                await conn.write_event(Event(type="audio-chunk", payload=bytes(64)))
                return await conn.read_event()

        stray = asyncio.run(stray_chunk())
        assert stray is not None and Error.is_type(stray.type)
        os.kill(process.pid, signum)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, err
    assert [m.name for m in info.wake[0].models] == ["computer"]
    assert_demo_detected(events)
    assert f"listening on tcp://127.0.0.1:{port}" in err and "computer" in err
    assert "WARNING" in err and "unreadable event" in err and "before audio-start" in err
    assert "Traceback" not in err and "exception" not in err.lower()


# ---- the systemd unit ----------------------------------------------------------------------------

HARDENING = (
    "NoNewPrivileges",
    "PrivateTmp",
    "ProtectSystem",
    "LockPersonality",
    "RestrictRealtime",
    "UMask",
)


def test_the_systemd_unit_serves_on_loopback_with_the_agents_hardening() -> None:
    import configparser

    def read(name: str) -> configparser.ConfigParser:
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        assert unit.read(REPO / "config" / name)
        return unit

    wyoming, agent = read("earshot-wyoming.service"), read("earshot.service")
    exec_start = wyoming["Service"]["ExecStart"]
    assert exec_start.endswith("/earshot wyoming --uri tcp://127.0.0.1:10400")
    server_for_uri(exec_start.split("--uri ")[1])  # a URI the command accepts
    for key in HARDENING:
        assert wyoming["Service"][key] == agent["Service"][key], key
    assert wyoming["Install"]["WantedBy"] == "default.target"
    text = (REPO / "config" / "earshot-wyoming.service").read_text()
    assert "0.0.0.0:10400" in text  # the comment on listening on the LAN
