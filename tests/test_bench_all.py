"""`earshot bench`: the summary never hides a suite that failed."""

from agent import bench_all


def test_a_failed_suite_is_reported_not_hidden():
    rows = bench_all.summary({"daemon": {"error": "agent.bench_daemon exited with 1"}})
    assert rows == [("daemon", "failed", "agent.bench_daemon exited with 1")]
