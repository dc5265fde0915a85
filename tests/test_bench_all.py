"""`earshot bench`: the summary never hides a suite that failed; a suite gets its own options."""

from agent.bench import summary as bench_all


def test_a_failed_suite_is_reported_not_hidden():
    rows = bench_all.summary({"daemon": {"error": "agent.bench.daemon exited with 1"}})
    assert rows == [("daemon", "failed", "agent.bench.daemon exited with 1")]


def test_a_suite_gets_its_own_options_through_earshot_bench() -> None:
    from tests.conftest import run_earshot

    result = run_earshot("bench", "daemon", "--help")
    assert result.returncode == 0, result.stderr
    assert "--realtime-seconds" in result.stdout and "earshot bench daemon" in result.stdout
    refused = run_earshot("bench", "embedding", "--seconds", "1")
    assert refused.returncode == 2 and "--seconds" in refused.stderr
