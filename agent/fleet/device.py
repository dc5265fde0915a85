"""A device's side of a fleet round: train the heads it was sent on what it keeps, say what left.

`local_update` receives the round's heads (arrays named ``WAKE_WORD/0.weight`` ...), fine-tunes
each configured wake word's head on what `earshot train --feedback` learns from
(`agent.learning.improve.kept_material`: reported misses and enrollment takes as positives, every
hop of marked false alarms as negatives, with the word's cached synthetic material), and returns
the new arrays, how many of its own examples they learned from (FedAvg's weight) and a few
metrics. A device that has not opted in
(``learning.enabled: false``) or keeps nothing for the round's words refuses: nothing is sent.
With ``fleet.local_dp_clipping_norm`` (and ``local_dp_noise_multiplier``) the device applies its
own differential privacy before anything leaves (`privatize`): its update is clipped to the norm
and Gaussian noise is added. Each exchange is appended to the device's audit log
(`audit_entry`): the coordinator, the round, every array sent (name, shape, bytes) and the
clipping and noise applied. Only these arrays and the count leave the device.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.daemon.detectors import base_detector_model, load_base
from agent.egress.audit import AuditLog, utc_now_iso
from agent.learning.feedback import FeedbackStore, examples_cache_dir
from agent.learning.improve import kept_material
from agent.private_files import private_dir
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
    config: Path,
    arrays: dict[str, np.ndarray],
    *,
    coordinator: str,
    round_number: int,
    secure_aggregation: bool = False,
) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
    """Train the round's heads on this device; (new arrays, examples, metrics).

    ``secure_aggregation`` says, for the audit log, that the new arrays leave as their difference
    from ``arrays``, quantized and masked (SecAgg+, `agent.fleet.secure`).

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
            take_cache=private_dir(examples_cache_dir(settings.learning)),
        )  # fmt: skip
        trained[name] = result.model.head
        examples += len(kept.takes) + len(kept.false_alarms)
    if examples == 0:
        raise ConfigError(
            f"nothing kept for {sorted(trained)} on this device (`earshot feedback`); it sends "
            "nothing this round"
        )
    fleet = settings.fleet
    sent, privacy = privatize(
        head_arrays(trained), arrays, fleet.local_dp_clipping_norm, fleet.local_dp_noise_multiplier
    )
    AuditLog(settings.privacy.resolved_audit_log()).append(
        audit_entry(coordinator, round_number, sent, examples, privacy, secure_aggregation)
    )
    return sent, examples, {"examples": float(examples)}


def update_norm(new: dict[str, np.ndarray], received: dict[str, np.ndarray]) -> float:
    """The L2 norm of ``new`` minus ``received``, over all their arrays together."""
    return float(
        np.sqrt(sum(np.sum((new[k].astype(np.float64) - received[k]) ** 2) for k in received))
    )


def privatize(
    trained: dict[str, np.ndarray],
    received: dict[str, np.ndarray],
    clipping_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float] | None]:
    """The device's own differential privacy: what it sends instead of ``trained``.

    The update (``trained`` minus ``received``) is scaled down to at most ``clipping_norm``
    (L2, over all arrays), then Gaussian noise of standard deviation ``noise_multiplier *
    clipping_norm`` is added to every value, those of heads the device did not change included.

    Parameters
    ----------
    trained, received
        The round's arrays as trained here and as the coordinator sent them (same names).
    clipping_norm
        0 leaves ``trained`` as it is (and then ``noise_multiplier`` must be 0).
    noise_multiplier
        0 adds no noise.
    rng
        The noise's source; None for fresh entropy from the operating system.

    Returns
    -------
    tuple
        The arrays to send (float32), and what was applied for the audit log (None when off):
        the clipping norm, the noise multiplier, the noise's standard deviation, and the
        update's norm before clipping.
    """
    if clipping_norm <= 0:
        if noise_multiplier > 0:
            raise ConfigError(
                f"fleet.local_dp_noise_multiplier: got {noise_multiplier}, which needs "
                "fleet.local_dp_clipping_norm above 0"
            )
        return trained, None
    if trained.keys() != received.keys():
        raise ValueError(f"trained {sorted(trained)} and received {sorted(received)} differ")
    norm = update_norm(trained, received)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    std = noise_multiplier * clipping_norm
    rng = np.random.default_rng() if rng is None else rng
    sent = {}
    for name, start in received.items():
        update = (trained[name].astype(np.float64) - start) * scale
        noise = rng.normal(0.0, std, start.shape) if std > 0 else 0.0
        sent[name] = np.asarray(start + update + noise, np.float32)
    applied = {"clipping_norm": clipping_norm, "noise_multiplier": noise_multiplier,
               "noise_std": std, "update_norm": norm}  # fmt: skip
    return sent, applied


def audit_entry(
    coordinator: str,
    round_number: int,
    sent: dict[str, np.ndarray],
    examples: int,
    privacy: dict[str, float] | None = None,
    secure_aggregation: bool = False,
) -> dict[str, Any]:
    """The audit log's line for one fleet exchange: where, which round, every array sent.

    ``local_dp`` is what `privatize` applied (the clipping norm, the noise's standard deviation
    ...), or null when the device's own differential privacy is off; ``secure_aggregation``
    whether the arrays left masked, as their difference from those received.
    """
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
        "local_dp": privacy,
        "secure_aggregation": secure_aggregation,
        "result": "ok",
    }
