"""The systemd units that run a device's part in fleet learning on a schedule."""

import configparser

from tests.conftest import REPO, run_earshot
from tests.test_wyoming_service import HARDENING


def read(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    assert unit.read(REPO / "config" / name)
    return unit


def test_the_timer_starts_a_oneshot_join_at_idle_priority_with_the_agents_hardening():
    service, timer, agent = (
        read("earshot-fleet.service"), read("earshot-fleet.timer"), read("earshot.service")
    )  # fmt: skip
    assert service["Service"]["Type"] == "oneshot"
    exec_start = service["Service"]["ExecStart"]
    assert exec_start.endswith("/earshot fleet join --server ${EARSHOT_FLEET_SERVER}")
    assert service["Service"]["EnvironmentFile"] == "%h/.config/earshot/fleet.env"
    assert service["Service"]["CPUSchedulingPolicy"] == "idle"
    for key in HARDENING:
        assert service["Service"][key] == agent["Service"][key], key
    assert timer["Timer"]["Persistent"] == "true" and "RandomizedDelaySec" in timer["Timer"]
    assert timer["Install"]["WantedBy"] == "timers.target"
    # the command the unit runs exists with that option
    done = run_earshot("fleet", "join", "--help")
    assert done.returncode == 0 and "--server HOST:PORT" in done.stdout
