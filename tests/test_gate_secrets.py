"""No part of the bearer token leaks when an endpoint echoes it in an error cut to length.

An endpoint's error text is cut to about 200 characters; a token echoed across that cut must be
taken out before the cut (and what is left of it at a cut, from 6 characters on), so that no
event, log line or audit entry holds even its beginning.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from agent.egress import wire
from tests.test_gate import Events, FaultServer, make_gate, send_once

PREFIX_CHARS = 6
"""No run of this many characters of the token's beginning may show anywhere."""


def leaks(text: str, token: str) -> bool:
    """Whether ``text`` holds the token's first `PREFIX_CHARS` characters."""
    return token[:PREFIX_CHARS] in text


@pytest.mark.parametrize("json_error", [False, True])
@pytest.mark.parametrize("filler", [180, 185, 188, 191])  # 6 to 17 of its characters fit
def test_a_token_straddling_the_cut_of_an_error_leaks_nowhere(
    tmp_path: Path, monkeypatch, caplog, filler: int, json_error: bool
) -> None:
    token = "Tk" + secrets.token_hex(20)  # 42 characters, none of them "x"
    monkeypatch.setenv("EARSHOT_TEST_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    echoed = b"x" * filler + token.encode()
    body = json.dumps({"error": echoed.decode()}).encode() if json_error else echoed
    server = FaultServer(status=500, body=body)
    events = Events()
    try:
        gate = make_gate(server.url, tmp_path, events, token_env="EARSHOT_TEST_TOKEN", retries=0)
        send_once(gate)
        [failed] = events.wait("upload")
    finally:
        server.close()
    assert failed["result"] == "failed" and failed["status"] == 500
    assert failed["error"].startswith("HTTP 500: xxx")  # the echo, cut and without the token
    texts = [record.getMessage() for record in caplog.records]
    texts += [json.dumps(fields) for _, fields in events.items]
    texts.append(gate.audit.path.read_text())
    assert not [text for text in texts if leaks(text, token)]


def test_an_error_is_scrubbed_before_it_is_cut() -> None:
    token = "Tk" + secrets.token_hex(20)
    for filler in range(wire.ERROR_TEXT_CHARS - 60, wire.ERROR_TEXT_CHARS + 5):
        body = b"x" * filler + token.encode() + b" and more"
        error = wire.parse_response(500, "text/plain", body, secret=token).error
        assert error is not None and not leaks(error, token), filler
        assert len(error) <= 220


def test_a_beginning_of_the_secret_left_at_a_cut_is_redacted() -> None:
    redact_secret, redacted = wire.redact_secret, wire.REDACTED
    assert wire.SECRET_PREFIX_CHARS == PREFIX_CHARS
    token = "Tk" + secrets.token_hex(20)
    assert redact_secret("bad " + token[:6], token) == "bad " + redacted
    assert redact_secret("bad " + token[:20], token) == "bad " + redacted
    assert redact_secret(f"a {token} b {token}", token) == f"a {redacted} b {redacted}"
    assert redact_secret("bad " + token[:5], token) == "bad " + token[:5]  # too short to tell
    assert redact_secret("no secret here", None) == "no secret here"
    cut = wire.clean_text("y" * 190 + token[:30], secret=token)  # an echo cut off upstream
    assert not leaks(cut, token) and cut.endswith(redacted)
