"""A device takes a head from the fleet only after checking it on what it keeps of its user.

`adopt_heads` is given the heads a fleet run ended with (at the end of a run, over Flower, or
fetched from a coordinator's directory by `earshot fleet fetch`). For each configured wake word
it compares the fleet's head with the detector in use, as `earshot train --feedback` compares a
learned one (`models.enroll.feedback_check`): each head calibrated on the same synthetic stream
and set to its threshold for the configured false-alarm rate, the fleet's must hear at least as
many of the user's kept phrases (enrollment takes, reported misses) and fire on no more marked
false alarms. A device that keeps nothing for a word cannot check, and refuses. An accepted head
is written where learned detectors live (`agent.learning.feedback.learned_models_dir`), so the
agent uses it as it would one learned from feedback; the running agent is asked to reload (as on
SIGHUP). Every decision, accepted or refused and why, goes to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.control.server import NotRunningError, request
from agent.daemon.detectors import (
    base_detector_model,
    load_base,
    load_detector_model,
    threshold_of,
)
from agent.egress.audit import AuditLog, utc_now_iso
from agent.learning.feedback import FeedbackStore, learned_models_dir
from agent.learning.improve import kept_material
from agent.paths import PRIVATE_FILE
from agent.private_files import private_dir
from agent.settings import Settings
from kernels.errors import EarshotError, ModelError
from models.base.geometry import Embedder
from models.enroll.feedback_check import FeedbackScore, feedback_score, padded
from models.enroll.finetune import with_head
from models.wake.model import WakeHead, WakeWordModel, model_path

AUDIT_KIND = "fleet-head"


@dataclass(frozen=True)
class FleetRound:
    """Where a set of heads comes from: the coordinator, its round, the base they belong to."""

    source: str
    round: int
    base_sha256: str
    contributors: int


@dataclass(frozen=True)
class Adoption:
    """What the device decided about one fleet head."""

    name: str
    accepted: bool
    reason: str
    before: FeedbackScore | None = None
    after: FeedbackScore | None = None
    path: Path | None = None

    def __str__(self) -> str:
        verdict = "accepted" if self.accepted else "refused"
        scores = f" (in use: {self.before}; fleet: {self.after})" if self.after else ""
        return f"{self.name}: {verdict}, {self.reason}{scores}"


def adopt_heads(
    settings: Settings,
    heads: dict[str, WakeHead],
    origin: FleetRound,
    *,
    say: Callable[[str], None] | None = None,
) -> list[Adoption]:
    """Check each head of ``heads`` and use the ones no worse than the detector in use.

    Every decision is appended to the audit log; when any head was accepted, the running agent
    (if any) reloads its detectors. ``say`` is told what is being done.
    """
    base = load_base(settings)
    audit = AuditLog(settings.privacy.resolved_audit_log())
    configured = {w.name for w in settings.wake_words}
    decisions = []
    for name, head in heads.items():
        if say is not None:
            say(f"checking the fleet's {name} on this device's kept clips")
        if name not in configured:
            decision = Adoption(name, False, "not a wake word configured on this device")
        elif not settings.learning.enabled:
            decision = Adoption(name, False, "learning.enabled is false on this device")
        elif origin.base_sha256 != base.sha256:
            decision = Adoption(
                name, False, f"trained on base {origin.base_sha256[:12]}, this device uses "
                f"{base.sha256[:12]} ({base.name})",
            )  # fmt: skip
        else:
            decision = _check(settings, name, head, base, origin)
        audit.append(audit_entry(decision, origin))
        decisions.append(decision)
    if any(d.accepted for d in decisions):
        reloaded = _reload_agent(settings)
        if say is not None:
            say(reloaded)
    return decisions


def _check(
    settings: Settings, name: str, head: WakeHead, base: Embedder, origin: FleetRound
) -> Adoption:
    """Compare ``head`` with the detector in use on the kept clips; write it when no worse."""
    wake = settings.wake_word(name)
    learned_dir = learned_models_dir(settings.learning)
    models_dir = settings.models.resolved_directory()
    start = base_detector_model(wake, base.sha256, models_dir)
    current = load_detector_model(wake, base.sha256, models_dir, learned_dir)
    kept = kept_material(name, base, start, FeedbackStore(settings.learning).clips(name))
    phrases = [padded(t) for t in kept.enrolled_takes] + kept.misses
    if not phrases and not kept.false_alarms:
        return Adoption(name, False, "nothing kept on this device to check it against")
    extra = {
        "text_model_sha256": start.manifest.sha256 if start.manifest is not None else None,
        "fleet": {"source": origin.source, "round": origin.round,
                  "contributors": origin.contributors},
    }  # fmt: skip
    try:
        candidate, curve = with_head(
            current, head, base, extra=extra, smoothing_hops=wake.smoothing_hops,
            refractory_s=wake.refractory_s,
        )  # fmt: skip
    except ModelError as err:
        return Adoption(name, False, str(err))
    before, after = (
        feedback_score(
            base,
            model.head,
            threshold_of(wake, model)[0],
            phrases=phrases,
            false_alarms=kept.false_alarms,
            smoothing_hops=wake.smoothing_hops,
        )  # fmt: skip
        for model in (current, candidate)
    )
    if after.heard < before.heard:
        return Adoption(name, False, "it hears fewer kept phrases", before, after)
    if after.fired > before.fired:
        return Adoption(name, False, "it fires on more marked false alarms", before, after)
    path = _write(candidate, learned_dir, curve, before, after)
    return Adoption(name, True, f"written to {path}", before, after, path)


def _write(
    model: WakeWordModel,
    folder: Path,
    curve: dict[str, Any],
    before: FeedbackScore,
    after: FeedbackScore,
) -> Path:
    """Save an accepted fleet detector owner-only where learned detectors are kept."""
    path = model_path(private_dir(folder), model.name)
    recipe = model.manifest.recipe if model.manifest is not None else {}
    metrics = {"feedback_before": before.as_dict(), "feedback_after": after.as_dict()}
    model.save(path, recipe=recipe, metrics=metrics, curve=curve)
    for written in folder.glob(f"{model.name}.*"):
        written.chmod(PRIVATE_FILE)
    return path


def audit_entry(decision: Adoption, origin: FleetRound) -> dict[str, Any]:
    """The audit log's line for one fleet head the device accepted or refused."""
    entry: dict[str, Any] = {
        "time": utc_now_iso(),
        "kind": AUDIT_KIND,
        "endpoint": origin.source,
        "round": origin.round,
        "wake_word": decision.name,
        "result": "accepted" if decision.accepted else "refused",
        "reason": decision.reason,
    }
    if decision.before is not None and decision.after is not None:
        entry |= {"in_use": decision.before.as_dict(), "fleet": decision.after.as_dict()}
    return entry


def _reload_agent(settings: Settings) -> str:
    """Ask the running agent, if any, to reload its detectors (as SIGHUP does); what happened."""
    try:
        reply = request(settings.events.resolved_socket(), "reload", timeout_s=30.0)
    except NotRunningError:
        return "the agent is not running; it uses the accepted heads when it starts"
    except EarshotError as err:
        return f"the running agent could not be asked to reload ({err}); send it SIGHUP"
    if reply.get("ok") is not True:
        return f"the running agent did not reload: {reply.get('error', reply)}"
    return "the running agent reloaded its detectors"
