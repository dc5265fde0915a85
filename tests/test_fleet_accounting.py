"""The fleet's DP accounting against the exact privacy curve of the Gaussian mechanism.

R rounds of a Gaussian mechanism of sensitivity C and noise z * C are exactly one Gaussian
mechanism with mu = sqrt(R) / z (Dong, Roth & Su, Gaussian differential privacy), whose
delta(epsilon) is Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Balle & Wang 2018). The zCDP
bound `agent.fleet.accounting` states must be valid (exact delta at its epsilon no larger than the
delta it claims) and not wildly loose.
"""

import math

import pytest

from agent.fleet.accounting import DELTA, epsilon, noise_multiplier


def exact_delta(eps: float, z: float, rounds: int) -> float:
    mu = math.sqrt(rounds) / z
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)


def exact_epsilon(z: float, rounds: int, delta: float = DELTA) -> float:
    low, high = 0.0, 1000.0
    for _ in range(200):  # delta(eps) falls as eps grows
        mid = (low + high) / 2
        low, high = (mid, high) if exact_delta(mid, z, rounds) > delta else (low, mid)
    return high


@pytest.mark.parametrize("target", [1.0, 10.0])
@pytest.mark.parametrize("rounds", [1, 2, 5])
def test_noise_for_an_epsilon_is_enough_and_not_wasteful(target, rounds):
    z = noise_multiplier(target, rounds)
    assert epsilon(z, rounds) == pytest.approx(target, rel=1e-9)  # the inverse
    exact = exact_epsilon(z, rounds)
    assert exact <= target  # the bound holds: the real privacy loss is no larger
    assert exact > 0.5 * target  # ... and it is not a gross overestimate
    assert exact_delta(target, z, rounds) <= DELTA


def test_more_rounds_need_more_noise_and_no_noise_is_no_privacy():
    assert noise_multiplier(1.0, 4) == pytest.approx(2 * noise_multiplier(1.0, 1))
    assert epsilon(0.0, 3) == math.inf
    with pytest.raises(ValueError, match="epsilon: got 0"):
        noise_multiplier(0.0, 1)
