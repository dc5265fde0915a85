"""``earshot eval fleet``: its arguments are checked before any work starts.

The protocol itself (FSDD leave one speaker out over real Flower processes) takes most of an hour
on two cores; its figures come from running it (README, "Fleet learning"). Its parts are tested
where they live: the federation in `tests.test_fleet`, the device's check in
`tests.test_fleet_adopt`, the DP accounting in `tests.test_fleet_accounting`.
"""

import pytest

from tests.conftest import FSDD_DIR, fsdd_files, run_earshot


def test_help_says_what_it_measures():
    done = run_earshot("eval", "fleet", "--help")
    assert done.returncode == 0
    for words in ("Leave one speaker out", "--epsilons", "--speakers", "--work", "--json"):
        assert words in done.stdout


def test_a_missing_fsdd_folder_is_a_clear_error():
    done = run_earshot("eval", "fleet", "--fsdd", "/nonexistent/fsdd")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--fsdd: /nonexistent/fsdd is not a folder of FSDD recordings" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--digits", "eleven"], "--digits: got ['eleven'], expected digit words"),
        (["--speakers", "bob"], "--speakers: got ['bob'], expected FSDD speakers ["),
        (["--rounds", "0"], "--rounds: got 0, expected at least 1"),
        (["--epsilons", "0"], "--epsilons: got [0.0], expected numbers above 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(args, message):
    fsdd_files()
    done = run_earshot("eval", "fleet", "--fsdd", str(FSDD_DIR), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr
