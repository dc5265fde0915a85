"""What a fleet run's differential privacy bounds: the noise multiplier and epsilon, both ways.

With server-side DP (``fleet.dp_noise_multiplier`` z, ``fleet.dp_clipping_norm`` C) the
coordinator clips each device's update to norm C and adds Gaussian noise of standard deviation
z * C to their sum (z * C / n to the average of n). A device's whole contribution to a round, every
take and false alarm it learned from, moves the sum by at most C, so a round is a Gaussian
mechanism with sensitivity C: rho-zCDP with rho = 1 / (2 z^2) (Bun & Steinke 2016, Prop. 1.6).
Rounds compose by adding rho, and rho-zCDP gives (epsilon, delta)-DP with
epsilon = rho + 2 sqrt(rho ln(1/delta)) (ibid., Prop. 1.3). Every device takes part in every
round; no amplification by sampling is claimed.
"""

from __future__ import annotations

import math

DELTA = 1e-5
"""The delta figures are stated at: far below one over any fleet's number of devices."""


def epsilon(noise_multiplier: float, rounds: int, delta: float = DELTA) -> float:
    """Device-level epsilon of ``rounds`` rounds at ``noise_multiplier``."""
    if noise_multiplier <= 0:
        return math.inf
    rho = rounds / (2 * noise_multiplier**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def noise_multiplier(target_epsilon: float, rounds: int, delta: float = DELTA) -> float:
    """The noise multiplier whose ``rounds`` rounds spend ``target_epsilon`` (the inverse)."""
    if target_epsilon <= 0:
        raise ValueError(f"epsilon: got {target_epsilon}, expected > 0")
    log_term = math.log(1 / delta)
    root_rho = math.sqrt(log_term + target_epsilon) - math.sqrt(log_term)
    return math.sqrt(rounds / (2 * root_rho**2))
