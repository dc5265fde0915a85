"""``earshot bench daemon`` on half a minute of speech: the document's shape and sane values."""

import contextlib
import functools
import json
import shutil
from pathlib import Path

import pytest

from agent.bench import daemon as bench_daemon
from agent.bench import daemon_measurement
from tests.conftest import agent_home, require

MB = 1.0
GB = 1024.0 * MB


def test_short_run_reports_every_figure(tmp_path: Path, monkeypatch, capsys):
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    require(shutil.which("flite") is not None, "flite is not installed")
    # The benchmark's own process (speech synthesis) keeps out of the user's folders too.
    for key, value in agent_home(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    # Record the benchmark's workspace where the benchmark makes it, with the maker's own
    # signature; tempfile stays as it is (speech synthesis makes temporary folders too).
    workspaces: list[Path] = []
    real_workspace = bench_daemon.temporary_workspace

    @functools.wraps(real_workspace)
    @contextlib.contextmanager
    def recorded_workspace(*args, **kwargs):
        with real_workspace(*args, **kwargs) as workspace:
            workspaces.append(workspace.root)
            yield workspace

    monkeypatch.setattr(bench_daemon, "temporary_workspace", recorded_workspace)
    argv = ["--minutes", "0.5", "--wake-words", "1", "--repeats", "1", "--skip-realtime", "--json"]
    assert bench_daemon.main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["benchmark"] == "daemon"
    assert document["listening_audio_s"] == pytest.approx(30.0, abs=0.1)

    listening = document["listening"]
    assert list(listening) == ["1"]
    figures = listening["1"]
    assert figures["wake_words"] == 1 and figures["mode"] == "fast"
    assert 0 < figures["cpu_percent"] < 400
    assert figures["cpu_percent"] <= figures["cpu_percent_with_startup"]
    assert figures["speed_x_realtime"] > 1
    for key in ("peak_rss_mb", "rss_median_mb", "rss_max_mb", "rss_end_mb"):
        assert 20 * MB < figures[key] < 4 * GB, key
    assert figures["rss_samples"] > 0
    assert figures["wake_events"] >= 0

    startup = document["startup"]
    assert startup["runs"] == 1
    assert 0 < startup["to_listening_median_s"] < 120
    assert startup["to_status_median_s"] is not None and startup["to_status_median_s"] > 0
    assert 0 < startup["sigterm_to_exit_median_s"] < 10

    assert document["listening_realtime"] is None and document["latency"] is None
    assert len(workspaces) == 1 and not workspaces[0].exists(), "the workspace was not removed"


def test_wake_word_counts_are_checked():
    with pytest.raises(SystemExit):
        bench_daemon.main(["--wake-words", "0"])
    with pytest.raises(SystemExit):
        bench_daemon.main(["--wake-words", "one"])


def test_speech_end_ignores_the_silence_after_it():
    import numpy as np

    audio = np.zeros(16000, np.float32)
    audio[4000:8000] = 0.5
    assert daemon_measurement.speech_end_s(audio, 0.0, 1.0) == pytest.approx(0.5, abs=0.01)
