"""The coordinator's side of a fleet run: the starting heads, and a versioned head per round.

`starting_heads` reads the heads of the words a run federates from the coordinator's own config
(its detectors, as the agent would load them). `RoundWriter` writes what each round aggregated:
``DIRECTORY/NAME/round-K.npz`` (the head's arrays, as a trained head stores them) beside
``round-K.json`` (round, contributors, the base the head belongs to, metrics, array shapes), and
``latest.json`` pointing at the newest; devices fetch these. A round with fewer contributors
than the minimum writes nothing (Flower's FedAvg would average whoever answered).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.daemon.detectors import base_detector_model, load_base
from agent.fleet.device import SEPARATOR, head_arrays, split_heads
from agent.settings import Settings
from models.wake.model import WakeHead


def starting_heads(settings: Settings, words: tuple[str, ...]) -> tuple[dict[str, WakeHead], str]:
    """The heads of ``words`` (every configured wake word when empty) and their base's sha256."""
    base = load_base(settings)
    names = words or tuple(w.name for w in settings.wake_words)
    heads = {}
    for name in names:
        wake = settings.wake_word(name)
        heads[name] = base_detector_model(
            wake, base.sha256, settings.models.resolved_directory()
        ).head
    return heads, base.sha256


def _atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)


class RoundWriter:
    """Writes each aggregated round's heads and manifests under ``directory``."""

    def __init__(self, directory: Path, base_sha256: str, min_devices: int) -> None:
        self.directory = directory
        self.base_sha256 = base_sha256
        self.min_devices = min_devices
        self.rounds: list[dict[str, Any]] = []
        self.latest: tuple[dict[str, Any], dict[str, WakeHead]] | None = None
        """The newest written round: its record and heads (what devices are offered)."""

    def write(
        self,
        round_number: int,
        arrays: dict[str, np.ndarray] | None,
        contributors: int,
        metrics: dict[str, Any],
    ) -> bool:
        """Record a round; write its heads when enough devices contributed. Whether it did."""
        accepted = arrays is not None and contributors >= self.min_devices
        record: dict[str, Any] = {
            "round": round_number, "contributors": contributors, "accepted": accepted,
            "base_sha256": self.base_sha256, "metrics": metrics, "time": time.time(),
        }  # fmt: skip
        if accepted:
            assert arrays is not None
            heads = split_heads(arrays)
            self.latest = (record, heads)
            for name, head in heads.items():
                folder = self.directory / name
                folder.mkdir(parents=True, exist_ok=True)
                state = {k: np.asarray(v) for k, v in head.state().items()}
                stored: dict[str, Any] = {f"head/{k}": v for k, v in state.items()}
                partial = folder / f".round-{round_number}.npz"
                with partial.open("wb") as f:
                    np.savez(f, **stored)
                partial.replace(folder / f"round-{round_number}.npz")
                shapes = {k: list(v.shape) for k, v in state.items()}
                _atomic(
                    folder / f"round-{round_number}.json",
                    json.dumps({**record, "word": name, "shapes": shapes}, indent=2).encode(),
                )
                _atomic(folder / "latest.json", json.dumps({"round": round_number}).encode())
        self.rounds.append(record)
        return accepted

    def finish(self, run_id: int) -> None:
        """The run's manifest: every round's record; written last."""
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "run_id": run_id, "rounds": self.rounds,
            "all_rounds_accepted": bool(self.rounds) and all(r["accepted"] for r in self.rounds),
        }  # fmt: skip
        _atomic(self.directory / "manifest.json", json.dumps(manifest, indent=2).encode())


def load_round(directory: Path, name: str, round_number: int) -> WakeHead:
    """A versioned head the coordinator wrote."""
    with np.load(directory / name / f"round-{round_number}.npz") as f:
        return WakeHead.from_state({k.removeprefix("head/"): f[k] for k in f.files})


__all__ = ["SEPARATOR", "RoundWriter", "head_arrays", "load_round", "starting_heads"]
