"""The reference receiver: what it saves, what it refuses, and its command line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from agent.egress.receiver import Receiver
from agent.egress.wire import encode_pcm16, multipart_body, wav_header
from tests.conftest import EARSHOT, REPO

SR = 16000


def post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def wav_bytes(samples: np.ndarray) -> bytes:
    return wav_header(samples.size) + encode_pcm16(samples)


@pytest.fixture
def receiver(tmp_path: Path):
    with Receiver(tmp_path / "out", transcript="hello") as server:
        yield server


def test_a_wav_upload_is_saved_owner_only_with_metadata(receiver: Receiver) -> None:
    samples = np.linspace(-0.5, 0.5, SR // 2, dtype=np.float32)
    headers = {"Content-Type": "audio/wav", "X-Earshot-Wake-Word": "jarvis",
               "Authorization": "Bearer not-kept"}  # fmt: skip
    status, reply = post(receiver.url, "/anything", wav_bytes(samples), headers)
    assert status == 200 and reply == {"ok": True, "seconds": 0.5, "text": "hello"}
    [upload] = receiver.uploads
    assert upload.path == receiver.out_dir / "0001.wav"
    assert (receiver.out_dir.stat().st_mode & 0o777) == 0o700
    for path in (upload.path, upload.path.with_suffix(".json")):
        assert (path.stat().st_mode & 0o777) == 0o600
    with wave.open(str(upload.path)) as saved:
        assert (saved.getnchannels(), saved.getsampwidth(), saved.getframerate()) == (1, 2, SR)
        assert saved.getnframes() == samples.size
    np.testing.assert_allclose(upload.audio, samples, atol=1 / 32768)
    metadata = json.loads(upload.path.with_suffix(".json").read_text())
    assert metadata["headers"] == {"X-Earshot-Wake-Word": "jarvis"}
    assert metadata["kind"] == "http" and metadata["bytes"] == 44 + 2 * samples.size
    assert "not-kept" not in upload.path.with_suffix(".json").read_text()


def test_pcm_and_multipart_uploads(receiver: Receiver) -> None:
    samples = np.full(1600, 0.25, dtype=np.float32)
    pcm_type = "audio/L16; rate=16000; channels=1"
    assert post(receiver.url, "/x", encode_pcm16(samples), {"Content-Type": pcm_type})[0] == 200
    body, content_type = multipart_body(
        [("file", "a.wav", "audio/wav", wav_bytes(samples)), ("model", None, None, b"m1")]
    )
    status, reply = post(
        receiver.url, "/v1/audio/transcriptions", body, {"Content-Type": content_type}
    )
    assert status == 200 and reply == {"text": "hello"}
    pcm, form = receiver.uploads
    assert pcm.audio.size == form.audio.size == 1600
    assert form.metadata["kind"] == "openai-transcription" and form.metadata["form"] == {
        "model": "m1"
    }


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/x", b"not a wav file", "audio/wav", 400),
        ("/x", b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "audio/wav", 400),
        ("/x", b"\x00\x00", "audio/L16; rate=8000; channels=1", 400),
        ("/x", b"\x00\x00", "text/plain", 400),
        ("/v1/audio/transcriptions", b"garbage", "multipart/form-data; boundary=zz", 400),
        ("/v1/audio/transcriptions", b"garbage", "application/json", 400),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_lives_on(
    receiver: Receiver, path: str, body: bytes, content_type: str, status: int
) -> None:
    got, reply = post(receiver.url, path, body, {"Content-Type": content_type})
    assert got == status and isinstance(reply.get("error"), str)
    assert receiver.uploads == []
    ok = post(
        receiver.url, "/x", wav_bytes(np.zeros(160, np.float32)), {"Content-Type": "audio/wav"}
    )
    assert ok[0] == 200


def test_malformed_chunking_and_oversized_bodies_are_refused(receiver: Receiver) -> None:
    parts = urlsplit(receiver.url)
    for raw, status in (
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"Content-Length: 999999999999\r\n\r\n", 413),
        (b"Content-Length: ten\r\n\r\n", 400),
    ):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        conn.connect()
        conn.sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n" + raw)
        response = http.client.HTTPResponse(conn.sock)
        response.begin()
        assert response.status == status and "error" in json.loads(response.read())
        conn.close()


def test_a_token_is_required_when_set(tmp_path: Path) -> None:
    body = wav_bytes(np.zeros(160, np.float32))
    with Receiver(tmp_path / "out", token="s3cret") as server:
        for auth in (None, "Bearer wrong", "s3cret"):
            headers = {"Content-Type": "audio/wav"} | ({"Authorization": auth} if auth else {})
            assert post(server.url, "/x", body, headers)[0] == 401
        good = {"Content-Type": "audio/wav", "Authorization": "Bearer s3cret"}
        assert post(server.url, "/x", body, good)[0] == 200
        assert len(server.uploads) == 1


def test_a_restarted_receiver_does_not_overwrite_earlier_uploads(tmp_path: Path) -> None:
    body = wav_bytes(np.zeros(160, np.float32))
    for _ in range(2):
        with Receiver(tmp_path / "out") as server:
            post(server.url, "/x", body, {"Content-Type": "audio/wav"})
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["0001.wav", "0002.wav"]


def test_receiver_command_serves_until_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "received"
    env = dict(os.environ, RECEIVER_TOKEN="tok")
    args = ["receiver", "--port", "0", "--out", str(out), "--token-env", "RECEIVER_TOKEN"]
    process = subprocess.Popen(
        [*EARSHOT, *args, "--transcript", "hi there"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline()
        assert first.startswith("receiving on http://127.0.0.1:"), first
        url = first.split()[2]
        body, content_type = multipart_body(
            [("file", "a.wav", "audio/wav", wav_bytes(np.zeros(800, np.float32)))]
        )
        headers = {"Content-Type": content_type, "Authorization": "Bearer tok"}
        status, reply = post(url, "/v1/audio/transcriptions", body, headers)
        assert status == 200 and reply == {"text": "hi there"}
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "1 upload(s) received" in stdout
    assert (out / "0001.wav").is_file() and (out / "0001.json").is_file()


def test_receiver_command_needs_its_token_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_RECEIVER_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "receiver", "--port", "0", "--out", str(tmp_path),
         "--token-env", "NO_SUCH_RECEIVER_TOKEN"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "NO_SUCH_RECEIVER_TOKEN" in result.stderr


def test_receiver_command_serves_https_with_a_certificate(tmp_path: Path) -> None:
    import ssl

    trustme = pytest.importorskip("trustme", reason="pip install trustme (the dev extra)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    process = subprocess.Popen(
        [*EARSHOT, "receiver", "--port", "0", "--out", str(tmp_path / "out"),
         "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline()
        assert first.startswith("receiving on https://127.0.0.1:"), first
        parts = urlsplit(first.split()[2])
        context = ssl.create_default_context()
        ca.configure_trust(context)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=5)
        body = wav_bytes(np.zeros(160, np.float32))
        conn.request("POST", "/x", body=body, headers={"Content-Type": "audio/wav"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
