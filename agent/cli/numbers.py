"""How the command line shows numbers whose rounding could mislead."""

from __future__ import annotations

THRESHOLD_DIGITS = 4
"""Decimals a score threshold is shown with, unless more are needed (see `threshold_text`)."""
MAX_THRESHOLD_DIGITS = 9
"""Most decimals `threshold_text` uses."""


def threshold_text(value: float) -> str:
    """A score threshold, with as many decimals as it takes not to read as 0 or 1.

    `THRESHOLD_DIGITS` decimals as a rule, up to `MAX_THRESHOLD_DIGITS` for a value in (0, 1)
    that would round to 0 or 1 with fewer: the highest calibrated threshold, 0.9999546, shows
    as ``0.99995``, not ``1.0000`` (a threshold of 1 would never fire); 0.5 shows as ``0.5000``.
    """
    digits = THRESHOLD_DIGITS
    text = f"{value:.{digits}f}"
    while 0 < value < 1 and float(text) in (0.0, 1.0) and digits < MAX_THRESHOLD_DIGITS:
        digits += 1
        text = f"{value:.{digits}f}"
    return text
