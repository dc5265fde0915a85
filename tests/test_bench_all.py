"""`earshot bench`: the summary never hides a suite that failed."""

from agent.bench import summary as bench_all


def test_a_failed_suite_is_reported_not_hidden():
    rows = bench_all.summary({"daemon": {"error": "agent.bench.daemon exited with 1"}})
    assert rows == [("daemon", "failed", "agent.bench.daemon exited with 1")]
