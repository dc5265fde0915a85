"""A device's side of a fleet round: train the heads it was sent on what it keeps, say what left.

`local_update` receives the round's heads (arrays named ``WAKE_WORD/0.weight`` ...), fine-tunes
each configured wake word's head on what `earshot train --feedback` learns from
(`agent.learning.improve.kept_material`: reported misses and enrollment takes as positives, every
hop of marked false alarms as negatives, with the word's cached synthetic material), and returns
the new arrays, how many of its own examples they learned from (FedAvg's weight) and a few
metrics. A device that has not opted in
(``learning.enabled: false``) or keeps nothing for the round's words refuses: nothing is sent.
Each exchange is appended to the device's audit log (`audit_entry`): the coordinator, the round,
and every array sent (name, shape, bytes). Only these arrays and the count leave the device.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.daemon.detectors import base_detector_model, load_base
from agent.egress.audit import AuditLog, utc_now_iso
from agent.learning.feedback import FeedbackStore
from agent.learning.improve import kept_material
from agent.settings import load_settings
from kernels.errors import ConfigError
from models.enroll.finetune import EnrollRecipe, enroll_wake_word
from models.wake.model import WakeHead

SEPARATOR = "/"
"""Between a wake word's name and a head array's name: ``computer/0.weight``."""
FLEET_RECIPE = EnrollRecipe(hold_out=False, epochs=5)
"""A round's local training: a few epochs from the fleet's head, as in enrollment."""


def head_arrays(heads: dict[str, WakeHead]) -> dict[str, np.ndarray]:
    """Heads by wake word, as one flat set of named arrays."""
    return {
        f"{name}{SEPARATOR}{key}": np.asarray(value, np.float32)
        for name, head in heads.items()
        for key, value in head.state().items()
    }


def split_heads(arrays: dict[str, np.ndarray]) -> dict[str, WakeHead]:
    """The inverse of `head_arrays`."""
    states: dict[str, dict[str, np.ndarray]] = {}
    for full, value in arrays.items():
        name, _, key = full.rpartition(SEPARATOR)
        states.setdefault(name, {})[key] = value
    return {name: WakeHead.from_state(state) for name, state in states.items()}


def local_update(
    config: Path, arrays: dict[str, np.ndarray], *, coordinator: str, round_number: int
) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
    """Train the round's heads on this device; (new arrays, examples, metrics).

    Raises
    ------
    ConfigError
        Learning is off, a wake word of the round is not configured here, or nothing is kept
        for the round's words.
    """
    settings = load_settings(config)
    if not settings.learning.enabled:
        raise ConfigError("learning.enabled: false on this device; it takes no part in a fleet")
    base = load_base(settings)
    store = FeedbackStore(settings.learning)
    trained: dict[str, WakeHead] = {}
    examples = 0
    for name, head in split_heads(arrays).items():
        wake = settings.wake_word(name)
        start = base_detector_model(wake, base.sha256, settings.models.resolved_directory())
        kept = kept_material(name, base, start, store.clips(name))
        if not kept.takes and not kept.false_alarms:
            trained[name] = head  # nothing of its own: the head goes back as it came
            continue
        result = enroll_wake_word(
            replace(start, head=head), base, kept.takes, room=kept.room,
            false_alarms=kept.false_alarms, min_takes=0, recipe=FLEET_RECIPE,
            smoothing_hops=wake.smoothing_hops, refractory_s=wake.refractory_s,
        )  # fmt: skip
        trained[name] = result.model.head
        examples += len(kept.takes) + len(kept.false_alarms)
    if examples == 0:
        raise ConfigError(
            f"nothing kept for {sorted(trained)} on this device (`earshot feedback`); it sends "
            "nothing this round"
        )
    sent = head_arrays(trained)
    AuditLog(settings.privacy.resolved_audit_log()).append(
        audit_entry(coordinator, round_number, sent, examples)
    )
    return sent, examples, {"examples": float(examples)}


def audit_entry(
    coordinator: str, round_number: int, sent: dict[str, np.ndarray], examples: int
) -> dict[str, Any]:
    """The audit log's line for one fleet exchange: where, which round, every array sent."""
    return {
        "time": utc_now_iso(),
        "kind": "fleet",
        "endpoint": coordinator,
        "round": round_number,
        "examples": examples,
        "sent": [
            {"name": name, "shape": list(value.shape), "bytes": int(value.nbytes)}
            for name, value in sent.items()
        ],
        "bytes": int(sum(value.nbytes for value in sent.values())),
        "result": "ok",
    }
