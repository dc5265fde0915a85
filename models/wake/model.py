"""A trained wake-word detector: its head on the base embedding, and its calibration.

A wake-word model file (kind ``"wake"``, see `models.nn.checkpoint`) holds a small two-layer head
that scores a hop's context (`models.base.geometry`) and the head's raw scores over a calibration
stream with no wake word in it. From those scores the threshold for any target of false alarms
per hour, smoothing and refractory period is found at load time, so changing the target in the
config needs no retraining. The curve at the settings it was trained with is kept in the
manifest too, for people reading the file.

Only numpy and the checkpoint format: the agent loads models with this module, never with the
training code (`models.wake.training`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from models.base.geometry import Geometry
from models.nn.checkpoint import SHA256, Manifest, load_model, save_model, split_rows
from models.nn.manifest import (
    ANY,
    Exactly,
    ListOf,
    Number,
    Record,
    Text,
    validate_manifest,
)
from models.paths import SHIPPED_DETECTORS
from models.wake.metrics import FalseAlarmCurve, false_alarm_curve, threshold_for_rate
from models.wake.speaker import SpeakerProfile

WAKE_KIND = "wake"
HEAD_ARCHITECTURE = "context-mlp"
WAKE_FORMAT_VERSION = 2
"""Bump when wake-word training data or the head change, so `earshot train` rebuilds models."""
OTHER_LABEL = "_other_"
MAX_CALIBRATION_EPISODES = 1_000_000
"""Most calibration episodes a wake-word model file may list."""

WAKE_SCHEMA = Record(
    {
        "architecture": Record(
            {
                "name": Exactly(HEAD_ARCHITECTURE),
                "args": Record(
                    {
                        "inputs": Number(1, 4096, integer=True),
                        "hidden": Number(1, 4096, integer=True),
                    }
                ),
                "context": Record(
                    {
                        "window_frames": Number(1, 10_000, integer=True),
                        "hop_frames": Number(1, 10_000, integer=True),
                        "windows": Number(1, 256, integer=True),
                        "stride_hops": Number(1, 10_000, integer=True),
                        "bands": Number(1, 1024, integer=True),
                        "hop_s": Number(0, 10, low_open=True),
                    }
                ),
            }
        ),
        "labels": ListOf(Text(), 2, min_items=2),
        "extra": Record(
            {
                "name": Text(),
                "phrase": Text(max_chars=1000),
                "base_sha256": SHA256,
                "base": Text(),
                "phrase_duration_s": Number(0, 60, low_open=True),
                "calibration_hours": Number(0, 100_000, low_open=True),
                "calibration_episodes": ListOf(
                    Number(0, 10**12, integer=True), MAX_CALIBRATION_EPISODES
                ),
                "calibration_curve": ANY,
                "recordings_sha256": SHA256,
            },
            optional=frozenset({"calibration_curve", "recordings_sha256"}),
            open=True,
        ),
    },
    open=True,
)
"""The fields of a wake-word model's manifest that `WakeWordModel.load` and the detector use,
with their bounds; its ``extra`` may hold more (training notes, enrollment), unchecked."""


def refractory_hops(refractory_s: float, hop_s: float) -> int:
    """A refractory period in whole hops of ``hop_s`` seconds: at least the period, and one."""
    return max(1, math.ceil(refractory_s / hop_s - 1e-9))


def context_record(geometry: Geometry) -> dict[str, Any]:
    """What a wake-word file records of the base's geometry (`WAKE_SCHEMA`'s ``context``)."""
    return {**geometry.as_dict(), "hop_s": geometry.hop_s}


def wake_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of the wake class from [n, 2] logits (other, wake) -> [n] float32."""
    margin = np.clip(logits[:, 0] - logits[:, 1], -80.0, 80.0)  # exp stays finite
    return (1.0 / (1.0 + np.exp(margin))).astype(np.float32)


@dataclass(frozen=True)
class WakeHead:
    """A two-layer head: context [n, k*dim] -> ReLU hidden layer -> two logits.

    The score is the wake class's softmax probability.
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> WakeHead:
        """From a trained ``Sequential([Dense, ReLU, Dense])``'s state dict."""
        try:
            arrays = [state[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")]
        except KeyError as err:
            raise ModelError(f"wake head: missing weights {err}") from err
        return cls(*(np.asarray(a, dtype=np.float32) for a in arrays))

    def state(self) -> dict[str, np.ndarray]:
        """The weights under the trained network's names."""
        return {"0.weight": self.w1, "0.bias": self.b1, "2.weight": self.w2, "2.bias": self.b2}

    @property
    def inputs(self) -> int:
        """Length of the context vector."""
        return int(self.w1.shape[0])

    def scores(self, contexts: np.ndarray) -> np.ndarray:
        """Wake-class probability of each context row [n, inputs] -> [n] float32."""
        hidden = np.maximum(np.asarray(contexts, dtype=np.float32) @ self.w1 + self.b1, 0.0)
        return wake_probability(hidden @ self.w2 + self.b2)


@dataclass
class WakeWordModel:
    """A wake word's head and calibration.

    Attributes
    ----------
    name, phrase : str
        The wake word as configured.
    head : WakeHead
        Scores a hop's context.
    calibration : list of np.ndarray
        Raw per-hop scores over the calibration stream's independent episodes.
    calibration_hours : float
        Length of that stream.
    phrase_duration_s : float
        Median length of the synthesized phrase: how far back a detection's start lies.
    base_sha256 : str
        Checksum of the base model whose embedding the head reads.
    base : str
        That base's kind (`models.base.geometry.Embedder.name`), for messages.
    context : dict
        The base's geometry the head was trained with (`context_record`).
    speaker : SpeakerProfile, optional
        The enrolled user's voice (`models.wake.speaker`), for the optional speaker check; only
        enrolled models have one.
    """

    name: str
    phrase: str
    head: WakeHead
    calibration: list[np.ndarray]
    calibration_hours: float
    phrase_duration_s: float
    base_sha256: str
    base: str
    context: dict[str, Any]
    manifest: Manifest | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    speaker: SpeakerProfile | None = None

    @property
    def hop_s(self) -> float:
        """Seconds between the hops the head scores."""
        return float(self.context["hop_s"])

    def false_alarm_curve(self, smoothing_hops: int, refractory_s: float) -> FalseAlarmCurve:
        """False alarms per hour on the calibration stream against the threshold."""
        return false_alarm_curve(
            self.calibration,
            hours=self.calibration_hours,
            smoothing_hops=smoothing_hops,
            refractory_hops=refractory_hops(refractory_s, self.hop_s),
        )

    def threshold_for(
        self, per_hour: float, *, smoothing_hops: int, refractory_s: float
    ) -> tuple[float, bool]:
        """The threshold giving ``per_hour`` false alarms, and whether it was extrapolated."""
        return threshold_for_rate(self.false_alarm_curve(smoothing_hops, refractory_s), per_hour)

    def save(
        self,
        path: Path,
        *,
        recipe: dict[str, Any],
        metrics: dict[str, Any],
        curve: dict[str, Any],
    ) -> Manifest:
        """Write the model (head, calibration scores) with its manifest."""
        arrays = {f"head/{k}": v for k, v in self.head.state().items()}
        arrays["calibration/scores"] = (
            np.concatenate(self.calibration).astype(np.float32)
            if self.calibration
            else np.zeros(0, np.float32)
        )
        if self.speaker is not None:
            arrays |= {f"speaker/{k}": v for k, v in self.speaker.state().items()}
        architecture = {
            "name": HEAD_ARCHITECTURE,
            "args": {"inputs": self.head.inputs, "hidden": int(self.head.w1.shape[1])},
            "context": self.context,
        }
        extra = {
            **self.extra,
            "name": self.name,
            "phrase": self.phrase,
            "base_sha256": self.base_sha256,
            "base": self.base,
            "phrase_duration_s": self.phrase_duration_s,
            "calibration_hours": self.calibration_hours,
            "calibration_episodes": [int(s.size) for s in self.calibration],
            "calibration_curve": curve,
            "wake_format": WAKE_FORMAT_VERSION,
        }
        manifest = Manifest(
            WAKE_KIND, architecture, [OTHER_LABEL, self.name], recipe=recipe, metrics=metrics,
            extra=extra,
        )  # fmt: skip
        self.manifest = save_model(path, arrays, manifest)
        return self.manifest

    @classmethod
    def load(cls, path: Path, *, base_sha256: str | None = None) -> WakeWordModel:
        """Read and check a wake-word model file.

        Raises
        ------
        ModelError
            Missing, corrupt or mismatched file (see `models.nn.checkpoint.load_model`), a file
            from another format version, a manifest that breaks `WAKE_SCHEMA`, arrays that do
            not fit it, or a model trained on another base model than ``base_sha256``.
        """
        arrays, manifest = load_model(path, kind=WAKE_KIND)
        extra = manifest.extra
        if extra.get("wake_format") != WAKE_FORMAT_VERSION:
            name = extra.get("name")
            raise ModelError(
                f"{path}: wake-word format {extra.get('wake_format')!r}, this earshot reads "
                f"{WAKE_FORMAT_VERSION}; run `earshot train "
                f"{name if isinstance(name, str) else 'NAME'}`"
            )
        validate_manifest(path, manifest.__dict__, WAKE_SCHEMA)
        if base_sha256 is not None and extra["base_sha256"] != base_sha256:
            raise ModelError(
                f"{path}: trained on base {extra['base']} ({extra['base_sha256'][:12]}...), the "
                f"base in use is {base_sha256[:12]}...; run `earshot train {extra['name']}`"
            )
        head = _checked_head(path, arrays, manifest.architecture["args"])
        speaker_state = {
            k.removeprefix("speaker/"): v for k, v in arrays.items() if k.startswith("speaker/")
        }
        try:
            speaker = SpeakerProfile.from_state(speaker_state) if speaker_state else None
        except KeyError as err:
            raise ModelError(f"{path}: speaker profile lacks {err}") from err
        except ModelError as err:
            raise ModelError(f"{path}: {err}") from err
        calibration = _checked_calibration(path, arrays, extra["calibration_episodes"])
        return cls(
            extra["name"], extra["phrase"], head, calibration, float(extra["calibration_hours"]),
            float(extra["phrase_duration_s"]), extra["base_sha256"], extra["base"],
            dict(manifest.architecture["context"]), manifest, extra, speaker,
        )  # fmt: skip


def _checked_head(path: Path, arrays: dict[str, np.ndarray], args: dict[str, int]) -> WakeHead:
    """The head's weights, refused unless their shapes are those the manifest's ``args`` say."""
    inputs, hidden = args["inputs"], args["hidden"]
    expected = {
        "head/0.weight": (inputs, hidden),
        "head/0.bias": (hidden,),
        "head/2.weight": (hidden, 2),
        "head/2.bias": (2,),
    }
    for name, shape in expected.items():
        if name not in arrays:
            raise ModelError(f"{path}: the head's weights lack {name!r}")
        if arrays[name].shape != shape or arrays[name].dtype.kind != "f":
            raise ModelError(
                f"{path}: {name} has shape {arrays[name].shape} ({arrays[name].dtype}), expected "
                f"floats of shape {shape} (manifest architecture.args {args})"
            )
    return WakeHead.from_state(
        {k.removeprefix("head/"): v for k, v in arrays.items() if k.startswith("head/")}
    )


def _checked_calibration(
    path: Path, arrays: dict[str, np.ndarray], episodes: list[int]
) -> list[np.ndarray]:
    """The calibration scores cut into ``episodes``, refused unless their lengths add up."""
    scores = arrays.get("calibration/scores")
    if scores is None or scores.ndim != 1 or scores.dtype.kind != "f":
        raise ModelError(f"{path}: calibration/scores is missing or not a 1-D array of floats")
    if sum(episodes) != scores.size:
        raise ModelError(
            f"{path}: manifest extra.calibration_episodes: lengths add up to {sum(episodes)}, "
            f"expected {scores.size} (the calibration scores in the file)"
        )
    return split_rows(scores, episodes)


def model_path(directory: Path, name: str) -> Path:
    """Where the wake word ``name``'s model lives in ``directory``."""
    return directory / f"{name}.npz"


def recordings_digest(recordings: list[np.ndarray]) -> str:
    """A checksum of the user's recordings of a phrase (their samples, in order)."""
    digest = hashlib.sha256()
    for samples in recordings:
        digest.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


NO_MODEL = "no model yet"
"""`stale_reason` of a detector that was never trained."""

"""Detectors shipped with earshot (the default wake word's), used until the user trains one."""


def shipped_detector(name: str) -> Path:
    """Where earshot's own detector for wake word ``name`` would be."""
    return model_path(SHIPPED_DETECTORS, name)


def stale_reason(
    path: Path, phrase: str, base_sha256: str, recordings_sha256: str | None = None
) -> str | None:
    """Why the model at ``path`` must be (re)trained for ``phrase`` on that base; None if not.

    ``recordings_sha256`` (`recordings_digest` of the configured recordings) is compared too
    when given.
    """
    if not path.is_file():
        return NO_MODEL
    try:
        model = WakeWordModel.load(path)
    except ModelError as err:
        return f"unusable model ({err})"
    if model.phrase != phrase:
        return f"phrase changed from {model.phrase!r}"
    if model.base_sha256 != base_sha256:
        return "base model changed"
    if recordings_sha256 is not None and model.extra.get("recordings_sha256") != recordings_sha256:
        return "recordings changed"
    return None
