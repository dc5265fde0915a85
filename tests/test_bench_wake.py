"""``earshot bench wake`` on a tiny configuration: the document's shape and sane values."""

import json
import shutil

from agent.bench import wake as bench_wake
from tests.conftest import require


def test_tiny_run_reports_every_figure(capsys):
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    argv = ["--small", "--seconds", "20", "--repetitions", "1", "--placements", "6", "--json"]
    assert bench_wake.main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["benchmark"] == "wake"
    assert document["model"]["source"] == "trained"

    wake_words = document["wake_words"]
    assert wake_words["wake_words"] == [1, 10]
    assert all(v > 0 for v in wake_words["cpu_s_per_hour"].values())
    assert all(v > 0 for v in wake_words["real_time_factor"].values())
    assert wake_words["ratio"] > 0

    latency = document["latency"]
    assert latency["placements"] == 6
    assert 0 < latency["detected"] == len(latency["latency_ms"]) <= 6
    assert 0 < latency["hit_rate"] <= 1
    assert latency["latency_median_ms"] is not None
    assert latency["compute_ms_per_hop"] > 0

    training = document["training"]
    assert training["phrase"].startswith("hey ")
    assert training["seconds"] > 0
    assert isinstance(training["caches_warm"], bool)
    assert training["renditions_synthesized"] >= 0
