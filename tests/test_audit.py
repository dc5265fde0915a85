"""The upload audit log: owner-only, append-only, tolerant of damage, and `earshot audit`."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from agent.egress.audit import FIELDS, AuditLog, make_entry
from tests.conftest import run_earshot

SENDING = "sending"
"""The result of an attempt line, written before an upload sends anything."""


def entry(wake_word: str = "computer", result: str = "ok", **overrides) -> dict:
    fields = dict(
        wake_word=wake_word, score=0.912345, seconds=1.5, bytes_sent=48044,
        endpoint="https://asr.example/upload", kind="http", result=result, status=200,
        attempts=1, error=None,
    )  # fmt: skip
    fields.update(overrides)
    return make_entry(**fields)


def test_the_log_is_owner_only_and_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "data" / "earshot" / "audit.jsonl"
    log = AuditLog(path)
    old_umask = os.umask(0o022)
    try:
        log.append(entry())
        log.append(entry("jarvis", "failed", status=None, error="timed out"))
    finally:
        os.umask(old_umask)
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert (path.stat().st_mode & 0o777) == 0o600
    first, second = AuditLog.read(path)
    assert list(first) == list(FIELDS)
    assert first["score"] == 0.9123 and first["result"] == "ok" and first["time"].endswith("+00:00")
    assert second == log.entries()[1] and second["error"] == "timed out"


def test_a_group_readable_file_is_made_owner_only_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o644)
    AuditLog(path).append(entry())
    assert (path.stat().st_mode & 0o777) == 0o600


def test_malformed_lines_are_skipped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "audit.jsonl"
    good = json.dumps(entry())
    path.write_bytes(f'{good}\nnot json\n[1, 2]\n\xff\xfe\n\n{{"trunc'.encode("latin-1") + b"\n")
    with path.open("a") as f:
        f.write(good + "\n")
    assert len(AuditLog.read(path)) == 2
    assert "skipped 4 malformed" in caplog.text
    assert AuditLog.read(tmp_path / "missing.jsonl") == []


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    def append_many(name: str) -> None:
        for _ in range(50):
            log.append(entry(name, error="x" * 2000))

    threads = [threading.Thread(target=append_many, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = log.entries()
    assert len(entries) == 200 and len(log.path.read_text().splitlines()) == 200


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no user config: the shipped defaults
    return env


def test_audit_command_without_a_log(tmp_path: Path) -> None:
    result = run_earshot("audit", env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "data" / "earshot" / "audit.jsonl"
    assert result.stdout.strip() == f"no uploads recorded ({expected})"


def test_audit_command_prints_a_table_and_json_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "data" / "earshot" / "audit.jsonl")
    log.append(entry("computer"))
    log.append(entry("jarvis", "failed", status=503, error="HTTP 503: busy", attempts=3))
    env = cli_env(tmp_path)
    table = run_earshot("audit", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["time", "wake", "word"] and "endpoint" in header
    assert len(rows) == 2 and "computer" in rows[0] and "0.91" in rows[0] and "1.50" in rows[0]
    assert "jarvis" in rows[1] and "failed" in rows[1] and "https://asr.example/upload" in rows[1]
    last = run_earshot("audit", "--json", "--last", "1", env=env)
    assert last.returncode == 0, last.stderr
    [line] = last.stdout.splitlines()
    assert json.loads(line)["wake_word"] == "jarvis"
    bad = run_earshot("audit", "--last", "0", env=env)
    assert bad.returncode == 2 and "--last" in bad.stderr


def test_attempt_and_result_lines_read_as_one_entry_per_upload(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "data" / "earshot" / "audit.jsonl")

    def line(wake_word: str, result: str, upload: str, **overrides) -> dict:
        if result == SENDING:
            overrides.update(status=None, attempts=0, bytes_sent=0)
        return {**entry(wake_word, result, **overrides), "upload": upload}

    log.append(entry("legacy"))  # a line of an older log, without an upload id
    log.append(line("computer", SENDING, "a1"))
    log.append(line("jarvis", SENDING, "b2"))
    log.append(line("computer", "ok", "a1"))
    log.append(line("mirror", SENDING, "c3"))
    log.append(line("jarvis", "failed", "b2", status=503, attempts=3))
    assert len(log.path.read_text().splitlines()) == 6
    entries = log.entries()  # in the order the uploads ended; "mirror" never recorded a result
    assert [(e["wake_word"], e["result"]) for e in entries] == [
        ("legacy", "ok"), ("computer", "ok"), ("mirror", SENDING), ("jarvis", "failed"),
    ]  # fmt: skip
    env = cli_env(tmp_path)
    table = run_earshot("audit", env=env)
    assert table.returncode == 0, table.stderr
    rows = [row for row in table.stdout.splitlines()[1:] if "asr.example" in row]
    assert len(rows) == 4 and rows[1].split()[2] == "computer" and SENDING in rows[2]
    assert "no result recorded" in table.stdout  # what a "sending" row means
    lines = run_earshot("audit", "--json", env=env).stdout.splitlines()
    assert [json.loads(line).get("upload") for line in lines] == [None, "a1", "c3", "b2"]


def test_transcripts_are_shown_and_older_lines_without_them_still_read(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "data" / "earshot" / "audit.jsonl")
    legacy = entry("legacy")
    del legacy["transcript"]  # a line of a log written before transcripts were kept
    log.append(legacy)
    log.append(entry(endpoint="tcp://127.0.0.1:10300", kind="wyoming", status=None,
                     transcript="turn on the lights"))  # fmt: skip
    old, new = log.entries()
    assert "transcript" not in old and new["transcript"] == "turn on the lights"
    env = cli_env(tmp_path)
    table = run_earshot("audit", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert "transcript" in header.split() and len(rows) == 2
    assert '"turn on the lights"' in rows[1] and "tcp://127.0.0.1:10300" in rows[1]
    assert "legacy" in rows[0] and "https://asr.example/upload" in rows[0]
    listed = run_earshot("audit", "--json", env=env).stdout.splitlines()
    assert [json.loads(line).get("transcript") for line in listed] == [None, "turn on the lights"]
