"""The ``wyoming`` endpoint kind against a real Wyoming speech-to-text server on this machine.

The server is made of the ``wyoming`` package's own classes (`AsyncTcpServer` or
`AsyncUnixServer` and an `AsyncEventHandler`), runs on a thread with its own event loop, records
every event it receives, and answers ``audio-stop`` as told: with a ``transcript``, with the
streaming ``transcript-start``/``transcript-chunk``/``transcript-stop`` events first, with an
``error``, by closing the connection, or not at all. The real agent plays the demo recording
(``earshot run --demo --fast``), in which "computer" is said twice, each time followed by a
command; the privacy gate is also driven directly for what the demo cannot show (streaming while
the user speaks, cancelling, the size limit, TLS).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.server import AsyncEventHandler, AsyncServer, AsyncTcpServer, AsyncUnixServer

from agent.egress.audit import FIELDS, AuditLog
from agent.egress.receiver import Receiver
from agent.egress.wire import first_kept_index
from agent.paths import DEMO_AUDIO
from agent.settings import parse_settings
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ConfigError
from tests.conftest import REPO, agent_home, run_earshot
from tests.daemon_harness import write_config
from tests.test_gate import Events, make_gate, noise, request, write_stream

SR = SAMPLE_RATE_HZ
TEXT = "turn on the lights"
ERROR_TEXT = "model unavailable: " + "the server is still loading its model " * 8
PROTOCOL = ["transcribe", "audio-start", "audio-stop"]
"""The events of one upload, audio chunks left out."""
PRE_ROLL_S = 0.25
TRAILING_SILENCE_S = 0.7
"""The default ``command.trailing_silence_s``: the upload goes on this long after the command."""
WAIT_S = 10.0


@dataclass
class Session:
    """What one connection to the server received."""

    types: list[str] = field(default_factory=list)
    transcribe: dict = field(default_factory=dict)
    start: tuple[int, int, int] | None = None
    chunk_formats: set[tuple[int, int, int]] = field(default_factory=set)
    chunks: int = 0
    pcm: bytearray = field(default_factory=bytearray)

    @property
    def protocol(self) -> list[str]:
        """The event types, audio chunks left out."""
        return [kind for kind in self.types if kind != "audio-chunk"]

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.pcm), dtype="<i2")


class WyomingSTT:
    """A Wyoming STT server on loopback TCP (or a Unix socket at ``unix_path``), on a thread.

    Parameters
    ----------
    answer
        ``transcript``, ``streaming`` (transcript-start and -chunks first), ``error`` (an error
        event), ``close`` (hang up) or ``silent`` (never answer).
    """

    def __init__(self, answer: str = "transcript", unix_path: Path | None = None) -> None:
        self.answer = answer
        self.unix_path = unix_path
        self.sessions: list[Session] = []
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: AsyncServer
        self.url = ""

    def __enter__(self) -> WyomingSTT:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(WAIT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()

    async def _start(self) -> None:
        if self.unix_path is not None:
            self.server = AsyncUnixServer(self.unix_path)
            await self.server.start(self.handler)
            self.url = f"unix://{self.unix_path}"
        else:
            server = AsyncTcpServer("127.0.0.1", 0)
            await server.start(self.handler)
            assert server._server is not None
            self.url = f"tcp://127.0.0.1:{server._server.sockets[0].getsockname()[1]}"
            self.server = server

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Recorder:
        session = Session()
        with self.cond:
            self.sessions.append(session)
            self.cond.notify_all()
        return Recorder(reader, writer, self, session)

    def record(self, session: Session, event: Event) -> None:
        with self.cond:
            session.types.append(event.type)
            if Transcribe.is_type(event.type):
                session.transcribe = dict(event.data)
            elif AudioStart.is_type(event.type):
                start = AudioStart.from_event(event)
                session.start = (start.rate, start.width, start.channels)
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                session.chunk_formats.add((chunk.rate, chunk.width, chunk.channels))
                session.chunks += 1
                session.pcm += chunk.audio
            self.cond.notify_all()

    def wait(self, condition, timeout_s: float = WAIT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: condition(self.sessions), timeout_s), self.sessions

    def uploads(self) -> list[list[Session]]:
        """The sessions grouped by the audio they got, in order of their first connection.

        A retry resends an upload's audio from its start, so each group is one upload's attempts
        (those of two uploads may interleave).
        """
        groups: dict[bytes, list[Session]] = {}
        for session in self.sessions:
            groups.setdefault(bytes(session.pcm), []).append(session)
        return list(groups.values())


class Recorder(AsyncEventHandler):
    """Records each event on its server, and answers ``audio-stop`` as the server says."""

    def __init__(self, reader, writer, server: WyomingSTT, session: Session) -> None:
        super().__init__(reader, writer)
        self.stt = server
        self.session = session

    async def handle_event(self, event: Event) -> bool:
        self.stt.record(self.session, event)
        if not AudioStop.is_type(event.type):
            return True
        answer = self.stt.answer
        if answer == "close":
            return False
        if answer == "silent":
            return True
        if answer == "error":
            await self.write_event(Error(text=ERROR_TEXT, code="busy").event())
            return True
        if answer == "streaming":
            await self.write_event(TranscriptStart(language="en").event())
            await self.write_event(TranscriptChunk(text="turn on").event())
            await self.write_event(TranscriptChunk(text=" the lights").event())
            await self.write_event(TranscriptStop().event())
        await self.write_event(Transcript(text=TEXT).event())
        return True


# --- the agent, end to end -----------------------------------------------------------------------


@dataclass
class Run:
    """One ``earshot run --demo --fast`` and what it left."""

    code: int
    events: list[dict]
    stderr: str
    audit: Path

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]

    def lines(self) -> list[dict]:
        return AuditLog.lines(self.audit)


def run_demo(tmp_path: Path, endpoint: dict, **sections: object) -> Run:
    tmp_path.mkdir(parents=True, exist_ok=True)
    audit = tmp_path / "audit.jsonl"
    config = write_config(
        tmp_path / "earshot.yaml", endpoint=endpoint, privacy={"audit_log": str(audit)},
        **sections,
    )  # fmt: skip
    result = run_earshot(
        "run", "--demo", "--fast", "--config", str(config), env=agent_home(tmp_path / "home"),
        timeout=60,
    )  # fmt: skip
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return Run(result.returncode, events, result.stderr, audit)


@pytest.fixture(scope="module")
def demo_pcm() -> np.ndarray:
    pcm, rate = soundfile.read(DEMO_AUDIO, dtype="int16")
    assert rate == SR and pcm.ndim == 1
    return pcm


def test_each_command_of_the_demo_reaches_the_wyoming_server_exactly(
    tmp_path: Path, demo_pcm: np.ndarray
) -> None:
    with WyomingSTT() as server:
        run = run_demo(
            tmp_path, {"kind": "wyoming", "url": server.url, "language": "en"},
            command={"pre_roll_s": PRE_ROLL_S},
        )  # fmt: skip
        sessions = list(server.sessions)
    assert run.code == 0, run.stderr
    wakes, commands = run.of("wake"), run.of("command")
    assert [w["wake_word"] for w in wakes] == ["computer", "computer"]

    # One connection per wake word, each the whole protocol in order, audio in one format.
    assert len(sessions) == 2
    for session in sessions:
        assert session.protocol == PROTOCOL
        assert session.types[0] == "transcribe" and session.types[-1] == "audio-stop"
        assert set(session.types[2:-1]) == {"audio-chunk"} and session.chunks >= 1
        assert session.transcribe == {"language": "en"}
        assert session.start == (16000, 2, 1) and session.chunk_formats == {(16000, 2, 1)}

    # The audio is the recording, sample for sample, from the wake word's end less the pre-roll
    # up to the command's end (and the trailing silence that ends it); nothing from before.
    for session, wake, command in zip(sessions, wakes, commands, strict=True):
        received = session.samples
        first = first_kept_index(0.0, wake["end_s"] - PRE_ROLL_S, demo_pcm.size)
        np.testing.assert_array_equal(received, demo_pcm[first : first + received.size])
        end_s = (first + received.size) / SR
        command_end_s = wake["end_s"] + command["seconds"]
        assert command_end_s <= end_s <= command_end_s + TRAILING_SILENCE_S + 0.25

    transcripts = run.of("transcript")
    assert [t["text"] for t in transcripts] == [TEXT, TEXT]
    uploads = run.of("upload")
    assert [u["result"] for u in uploads] == ["ok", "ok"]
    assert all(u["endpoint"] == server.url and u["status"] is None for u in uploads)
    assert all(u["first_byte_s"] is not None for u in uploads)

    lines = run.lines()
    assert [line["result"] for line in lines] == ["sending", "ok", "sending", "ok"]
    for attempt, result, session in zip(lines[::2], lines[1::2], sessions, strict=True):
        assert attempt["upload"] == result["upload"]
        assert attempt["transcript"] is None and attempt["bytes"] == 0
        assert result["kind"] == "wyoming" and result["endpoint"] == server.url
        assert result["bytes"] == len(session.pcm) and result["transcript"] == TEXT
        assert result["status"] is None and result["attempts"] == 1 and result["error"] is None
        assert result["seconds"] == pytest.approx(len(session.pcm) / 2 / SR, abs=1e-3)
        assert list(result) == list(FIELDS)


def test_the_wyoming_kind_sends_the_same_audio_as_the_http_kind(tmp_path: Path) -> None:
    with WyomingSTT() as server:
        run = run_demo(tmp_path / "wyoming", {"kind": "wyoming", "url": server.url})
        wyoming = [session.samples for session in server.sessions]
    with Receiver(tmp_path / "received") as receiver:
        http = run_demo(tmp_path / "http", {"kind": "http", "url": f"{receiver.url}/audio"})
        received = [np.rint(upload.audio * 32768).astype("<i2") for upload in receiver.uploads]
    assert run.code == 0 and http.code == 0, (run.stderr, http.stderr)
    assert len(wyoming) == len(received) == 2
    for mine, theirs in zip(wyoming, received, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_streaming_transcript_events_are_skipped_for_the_final_transcript(tmp_path: Path) -> None:
    with WyomingSTT("streaming") as server:
        run = run_demo(tmp_path, {"kind": "wyoming", "url": server.url})
    assert run.code == 0, run.stderr
    assert [t["text"] for t in run.of("transcript")] == [TEXT, TEXT]
    results = [line for line in run.lines() if line["result"] != "sending"]
    assert [(r["result"], r["transcript"]) for r in results] == [("ok", TEXT), ("ok", TEXT)]


def test_an_error_event_fails_the_upload_after_the_configured_retries(tmp_path: Path) -> None:
    with WyomingSTT("error") as server:
        run = run_demo(tmp_path, {"kind": "wyoming", "url": server.url, "retries": 1})
        groups = server.uploads()
    assert run.code == 0, run.stderr
    # Each upload tried twice (a retry), resending the same audio from its first sample.
    assert [len(group) for group in groups] == [2, 2]
    assert all(s.protocol == PROTOCOL for group in groups for s in group)
    uploads = run.of("upload")
    assert [u["result"] for u in uploads] == ["failed", "failed"]
    assert not run.of("transcript")
    results = [line for line in run.lines() if line["result"] != "sending"]
    assert sorted(r["bytes"] for r in results) == sorted(len(g[-1].pcm) for g in groups)
    for result in results:
        assert result["kind"] == "wyoming" and result["attempts"] == 2
        assert result["result"] == "failed" and result["transcript"] is None
        error = result["error"]
        assert error.startswith("server error (busy): model unavailable: the server is still")
        assert len(error) <= 200 and error.endswith("...")  # cut as every error text is
    assert "Traceback" not in run.stderr


def test_a_server_that_hangs_up_gives_a_failed_upload_and_no_crash(tmp_path: Path) -> None:
    with WyomingSTT("close") as server:
        run = run_demo(tmp_path, {"kind": "wyoming", "url": server.url, "retries": 0})
        assert len(server.sessions) == 2
    assert run.code == 0, run.stderr
    assert [u["result"] for u in run.of("upload")] == ["failed", "failed"]
    results = [line for line in run.lines() if line["result"] != "sending"]
    assert all("closed the connection without a transcript" in r["error"] for r in results)
    assert all(r["attempts"] == 1 and r["transcript"] is None for r in results)
    assert "Traceback" not in run.stderr


def test_a_unix_socket_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "stt.sock"
    with WyomingSTT(unix_path=path) as server:
        run = run_demo(tmp_path, {"kind": "wyoming", "url": f"unix://{path}"})
        sessions = list(server.sessions)
    assert run.code == 0, run.stderr
    assert [s.protocol for s in sessions] == [PROTOCOL, PROTOCOL]
    assert [t["text"] for t in run.of("transcript")] == [TEXT, TEXT]
    results = [line for line in run.lines() if line["result"] != "sending"]
    assert [r["endpoint"] for r in results] == [f"unix://{path}"] * 2
    assert [r["bytes"] for r in results] == [len(s.pcm) for s in sessions]


def test_plain_tcp_to_another_machine_stops_the_agent_before_it_starts(tmp_path: Path) -> None:
    url = "tcp://192.168.1.5:10300"
    run = run_demo(tmp_path, {"kind": "wyoming", "url": url})
    assert run.code == 2, run.stderr
    [message] = run.stderr.strip().splitlines()[-1:]
    assert "endpoint.url" in message and url in message and "tls://" in message
    assert "Traceback" not in run.stderr and not run.of("upload")


# --- the gate, driven directly -------------------------------------------------------------------


def test_audio_is_streamed_while_the_command_is_still_spoken(tmp_path: Path) -> None:
    events = Events()
    with WyomingSTT() as server:
        gate = make_gate(server.url, tmp_path, events, kind="wyoming")
        first, second = noise(0.5, seed=1), noise(0.5, seed=2)
        upload = gate.open(request(wake_end_s=1.0))
        write_stream(upload, first, start_s=1.0)
        # Before the command ends, the server already has the first half.
        server.wait(lambda s: len(s) == 1 and len(s[0].pcm) == 2 * first.size)
        assert server.sessions[0].protocol == ["transcribe", "audio-start"]
        write_stream(upload, second, start_s=1.5)
        upload.finish()
        [event] = events.wait("upload")
        [session] = server.sessions
    assert event["result"] == "ok" and session.protocol == PROTOCOL
    expected = np.clip(np.rint(np.concatenate([first, second]) * 32768), -32768, 32767)
    np.testing.assert_array_equal(session.samples, expected.astype("<i2"))
    assert session.transcribe == {}  # no language set: the server decides
    assert events.wait("transcript")[0] == {"wake_word": "computer", "text": TEXT}


def test_audio_beyond_the_length_limit_is_not_sent(tmp_path: Path) -> None:
    events = Events()
    with WyomingSTT() as server:
        gate = make_gate(server.url, tmp_path, events, kind="wyoming", max_audio_s=0.5)
        upload = gate.open(request(wake_end_s=1.0))
        write_stream(upload, noise(0.4, seed=3), start_s=0.6)  # before the wake word's end
        write_stream(upload, noise(1.5, seed=4), start_s=1.0)
        upload.finish()
        [event] = events.wait("upload")
        [session] = server.sessions
    assert event["result"] == "ok"
    assert len(session.pcm) == 2 * round(0.5 * SR) == event["bytes"]


def test_closing_the_gate_cancels_an_upload_waiting_for_a_transcript(tmp_path: Path) -> None:
    events = Events()
    with WyomingSTT("silent") as server:
        gate = make_gate(server.url, tmp_path, events, kind="wyoming", timeout_s=30.0)
        upload = gate.open(request(wake_end_s=0.0))
        write_stream(upload, noise(0.3), start_s=0.0)
        upload.finish()
        server.wait(lambda s: len(s) == 1 and "audio-stop" in s[0].types)
        started = time.monotonic()
        gate.close(timeout_s=1.5)
        took = time.monotonic() - started
        [event] = events.wait("upload")
    assert took < 1.5
    assert event["result"] == "dropped" and event["error"] == "cancelled"
    [entry] = AuditLog.read(gate.audit.path)
    assert entry["result"] == "dropped" and entry["bytes"] == 2 * round(0.3 * SR)
    assert entry["attempts"] == 1 and entry["transcript"] is None


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    events = Events()
    with WyomingSTT("silent") as server:
        gate = make_gate(server.url, tmp_path, events, kind="wyoming", timeout_s=0.5, retries=0)
        upload = gate.open(request(wake_end_s=0.0))
        write_stream(upload, noise(0.2), start_s=0.0)
        upload.finish()
        [event] = events.wait("upload")
    assert event["result"] == "failed" and "timed out" in event["error"]


def test_nothing_listening_fails_after_the_retries(tmp_path: Path) -> None:
    events = Events()
    gate = make_gate(f"unix://{tmp_path / 'nobody.sock'}", tmp_path, events, kind="wyoming",
                     retries=1)  # fmt: skip
    upload = gate.open(request(wake_end_s=0.0))
    write_stream(upload, noise(0.2), start_s=0.0)
    upload.finish()
    [event] = events.wait("upload")
    assert event["result"] == "failed" and event["attempts"] == 2 and event["bytes"] == 0
    assert "FileNotFoundError" in event["error"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory):
    import trustme  # the dev extra; never skipped, as everything here is local

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    folder = tmp_path_factory.mktemp("wyoming-tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return context, folder


class TlsWyomingSTT(WyomingSTT):
    """`WyomingSTT` behind TLS, as behind a TLS terminator."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    async def _start(self) -> None:
        server = AsyncTcpServer("127.0.0.1", 0)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server._handler_callback(self.handler, reader, writer)

        server._server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=self.context)
        self.server = server
        self.url = f"tls://127.0.0.1:{server._server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("ca", ["ca.pem", "other-ca.pem"])
def test_tls_to_a_server_with_a_trusted_or_untrusted_certificate(
    tmp_path: Path, tls_files, ca: str
) -> None:
    context, folder = tls_files
    events = Events()
    with TlsWyomingSTT(context) as server:
        gate = make_gate(server.url, tmp_path, events, kind="wyoming",
                         ca_file=str(folder / ca), retries=0)  # fmt: skip
        upload = gate.open(request(wake_end_s=0.0))
        audio = noise(0.3)
        write_stream(upload, audio, start_s=0.0)
        upload.finish()
        [event] = events.wait("upload")
        sessions = list(server.sessions)
    if ca == "ca.pem":
        assert event["result"] == "ok" and event["bytes"] == 2 * audio.size
        assert [s.protocol for s in sessions] == [PROTOCOL]
        assert events.wait("transcript")[0]["text"] == TEXT
    else:
        assert event["result"] == "failed" and "certificate" in event["error"].lower()
        assert all(not s.types for s in sessions)  # nothing went through the failed handshake


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            {"url": "tcp://192.168.1.5:10300"},
            "endpoint.url: got str 'tcp://192.168.1.5:10300'; "
            "plain tcp:// is allowed only to localhost",
        ),
        ({"url": "tcp://example.com:10300"}, "use tls://HOST:PORT"),
        ({"url": "http://127.0.0.1:10300/"}, "endpoint.url: .*kind wyoming expects tcp://"),
        ({"url": "https://asr.example/"}, "http URLs are for the kinds http and openai"),
        ({"url": "tcp://127.0.0.1"}, "expected tcp://HOST:PORT"),
        ({"url": "tls://asr.example:10300/path"}, "no path"),
        ({"url": "unix://relative.sock"}, "expected unix:///absolute/path"),
        (
            {"url": "tcp://127.0.0.1:10300", "token_env": "STT_TOKEN"},
            "endpoint.token_env: got str 'STT_TOKEN'; kind wyoming sends no token",
        ),
        ({"url": "tcp://127.0.0.1:10300", "token_file": "/tmp/t"}, "endpoint.token_file"),
        ({"url": "tcp://127.0.0.1:10300", "language": "en us"}, "endpoint.language: got"),
    ],
)
def test_wyoming_settings_that_are_refused(endpoint: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_settings({"endpoint": {"kind": "wyoming", **endpoint}})


@pytest.mark.parametrize(
    "url", ["tcp://127.0.0.1:10300", "tcp://localhost:10300", "tcp://[::1]:10300",
            "tls://asr.example:10300", "unix:///run/wyoming/stt.sock"],
)  # fmt: skip
def test_wyoming_urls_that_are_accepted(url: str) -> None:
    endpoint = parse_settings({"endpoint": {"kind": "wyoming", "url": url}}).endpoint
    assert endpoint.kind == "wyoming" and endpoint.url == url and endpoint.language is None


@pytest.mark.parametrize("kind", ["http", "openai-transcription"])
@pytest.mark.parametrize("url", ["tcp://127.0.0.1:10300", "unix:///tmp/stt.sock", "tls://a:1"])
def test_the_http_kinds_refuse_wyoming_urls(kind: str, url: str) -> None:
    with pytest.raises(ConfigError, match=r"endpoint\.url: .*https://.*for kind wyoming"):
        parse_settings({"endpoint": {"kind": kind, "url": url}})


def test_language_is_only_for_the_wyoming_kind() -> None:
    with pytest.raises(ConfigError, match="endpoint.language: .*only to kind wyoming"):
        parse_settings({"endpoint": {"url": "https://asr.example/a", "language": "en"}})


def test_the_package_is_loaded_only_for_a_wyoming_upload() -> None:
    code = (
        "import sys, agent.egress.gate, agent.egress.payload, agent.egress.target\n"
        "print('wyoming' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env=dict(os.environ),
    )  # fmt: skip
    assert out.stdout.strip() == "False"
