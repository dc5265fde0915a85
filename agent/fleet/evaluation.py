"""``earshot eval fleet``: what fleet learning buys on real voices, FSDD leave one speaker out.

Each of FSDD's speakers is a device that enrolled every digit's wake word with its first
``takes`` recordings of it (from the detector trained from text only; `enroll_wake_word`, as
`earshot enroll` does): "each device alone". For each test speaker, the other devices federate
the digits' heads through a real Flower SuperLink and SuperNodes (earshot's apps; ``rounds``
rounds of FedAvg from the text-only heads, each device fine-tuning on the takes it keeps, as
`earshot fleet join` does), without and with server-side differential privacy at each epsilon
(`agent.fleet.accounting`). A head enrolled centrally with all their takes pooled is the
reference. The test speaker is never used for training or thresholds: every detector's miss rate
at 1 false alarm per hour is read on that speaker's recordings of the digit, against every other
digit of every speaker plus synthetic speech (`models.enroll.evaluation.miss_rate`).

This is the one place where FSDD recordings train anything, and only the other speakers'.
Results are written per test speaker to ``results.json`` in the work folder as they come, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.enroll.store import save_enrollment
from agent.fleet.accounting import DELTA, noise_multiplier
from agent.fleet.coordinator import load_round
from agent.fleet.flower import (
    FleetError,
    flwr,
    free_port,
    run_status,
    start_superlink,
    start_supernode,
)
from agent.private_files import private_dir, wav_bytes
from dsp.audio import load_audio
from models.base.evaluation import fsdd_recordings
from models.base.geometry import Embedder
from models.enroll.evaluation import miss_rate
from models.enroll.finetune import EnrollRecipe, enroll_wake_word
from models.speech.dataset import DIGIT_WORDS
from models.wake.model import WakeHead, WakeWordModel
from models.wake.streams import NegativeStream

APP_DIR = Path(__file__).resolve().parent / "app"
"""The Flower App folder `flwr run` ships (its components point at `agent.fleet.apps`)."""
CLIPPING_NORM = 0.1
"""The DP runs' clipping norm, fixed beforehand (not tuned on FSDD)."""
POLL_S = 2.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Device:
    """One speaker as a device: its config, data folder (enrollments) and feedback folder."""

    speaker: str
    home: Path

    @property
    def config(self) -> Path:
        """Its earshot config."""
        return self.home / "earshot.yaml"

    @property
    def data(self) -> Path:
        """Its XDG_DATA_HOME."""
        return self.home / "data"


def _stored(take: np.ndarray, scratch: Path) -> np.ndarray:
    """``take`` as an enrollment stores it (16-bit WAV) and a device reads it back."""
    scratch.write_bytes(wav_bytes(take))
    return load_audio(scratch)


def enroll_devices(
    base: Embedder,
    root: Path,
    directory: Path,
    text_models: dict[str, WakeWordModel],
    models_dir: Path,
    speakers: Sequence[str],
    *,
    takes: int,
    say: Say,
) -> tuple[dict[str, Device], dict[tuple[str, str], WakeHead]]:
    """Each speaker as a device that enrolled every digit; (devices, heads each enrolled alone)."""
    recordings = fsdd_recordings(directory)
    devices, alone = {}, {}
    for speaker in speakers:
        device = Device(speaker, root / "devices" / speaker)
        device.home.mkdir(parents=True, exist_ok=True)
        _write_config(device.config, models_dir, text_models, {
            "learning": {"enabled": True, "directory": str(device.home / "feedback")},
            "privacy": {"audit_log": str(device.home / "audit.jsonl")},
        })  # fmt: skip
        cache = private_dir(private_dir(device.home / "feedback") / "examples")
        for word in text_models:
            digit = DIGIT_WORDS.index(word)
            mine = sorted((r for r in recordings if r.speaker == speaker and r.digit == digit),
                          key=lambda r: r.take)[:takes]  # fmt: skip
            clips = [_stored(load_audio(r.path), device.home / "take.wav") for r in mine]
            folder = device.data / "earshot" / "enrollment"
            model_file = folder / word / "model.npz"
            if not model_file.is_file():
                say(f"{speaker} enrolls {word} with {len(clips)} takes")
                result = enroll_wake_word(
                    text_models[word], base, clips, recipe=EnrollRecipe(hold_out=False),
                    take_cache=cache,
                )  # fmt: skip
                save_enrollment(
                    folder, word, takes=clips, room=None, info={"fsdd_speaker": speaker},
                    write_model=lambda path, r=result: r.model.save(path, **r.report),
                )  # fmt: skip
            alone[(speaker, word)] = WakeWordModel.load(model_file).head
        devices[speaker] = device
    return devices, alone


def _write_config(
    path: Path, models_dir: Path, text_models: dict[str, WakeWordModel], extra: dict[str, Any]
) -> None:
    """A config of the digit wake words (their text-only detectors in ``models_dir``)."""
    words = [{"name": w, "phrase": w, "threshold": 0.5} for w in text_models]
    path.write_text(yaml.safe_dump({
        "wake_words": words, "models": {"directory": str(models_dir)},
        "detection": {"backend": "numpy"}, **extra,
    }))  # fmt: skip


@contextlib.contextmanager
def _data_home(path: Path) -> Iterator[None]:
    """XDG_DATA_HOME for processes started inside (a SuperNode finds its enrollments there)."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["XDG_DATA_HOME"]
        else:
            os.environ["XDG_DATA_HOME"] = before


def federate(
    root: Path,
    devices: Sequence[Device],
    text_models: dict[str, WakeWordModel],
    models_dir: Path,
    *,
    rounds: int,
    dp_noise_multiplier: float = 0.0,
    timeout_s: float = 1800.0,
) -> dict[str, WakeHead]:
    """One fleet run of ``devices`` over real Flower processes on loopback; its final heads.

    A run already finished in ``root`` (all its rounds written) is read back, not run again.
    """
    out = root / "out"
    done = out / "manifest.json"
    if done.is_file() and json.loads(done.read_text())["all_rounds_accepted"]:
        return {word: load_round(out, word, rounds) for word in text_models}
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    port = free_port()
    config = root / "coordinator.yaml"
    _write_config(config, models_dir, text_models, {})
    overrides = {
        "config": str(config), "words": ",".join(text_models), "rounds": rounds,
        "min-devices": len(devices), "round-timeout": timeout_s, "out-dir": str(out),
        "dp-noise-multiplier": dp_noise_multiplier, "dp-clipping-norm": CLIPPING_NORM,
        "offer": False,
    }  # fmt: skip
    superlink = f"127.0.0.1:{port}"
    link = start_superlink("127.0.0.1", port, root / "flower", None)
    nodes = []
    try:
        for device in devices:
            with _data_home(device.data):
                nodes.append(start_supernode(
                    superlink, root / "flower", device.speaker,
                    {"config": str(device.config), "coordinator": superlink}, None,
                ))  # fmt: skip
        started = flwr(root / "flower", superlink, None, "run", str(APP_DIR), "earshot",
                       "--run-config", " ".join(f"{k}={json.dumps(v)}"
                                                for k, v in overrides.items()))  # fmt: skip
        _wait(root / "flower", superlink, int(started["run-id"]), timeout_s)
    finally:
        for process in (*nodes, link):
            process.stop()
    manifest = json.loads((out / "manifest.json").read_text())
    if not manifest["all_rounds_accepted"]:
        raise FleetError(f"fleet run in {root}: not every round was written: {manifest}")
    return {word: load_round(out, word, rounds) for word in text_models}


def _wait(home: Path, superlink: str, run_id: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run_status(home, superlink, None, run_id).startswith("finished"):
            return
        time.sleep(POLL_S)
    raise FleetError(f"fleet run {run_id} did not finish within {timeout_s:.0f} s")


def fsdd_fleet(
    base: Embedder,
    directory: Path,
    root: Path,
    text_models: dict[str, WakeWordModel],
    models_dir: Path,
    labelled: NegativeStream,
    synthetic: NegativeStream,
    *,
    test_speakers: Sequence[str] | None = None,
    takes: int = 5,
    rounds: int = 2,
    epsilons: Sequence[float] = (1.0, 10.0),
    smoothing_hops: int = 2,
    refractory_s: float = 2.0,
    say: Say = print,
) -> dict[str, Any]:
    """Run the protocol (see the module docstring) in the work folder ``root``.

    Returns
    -------
    dict
        ``rows`` (one per test speaker and digit: miss rates at 1 false alarm per hour of
        ``text``, ``alone`` (mean over the devices), ``federated``, ``central`` and
        ``dp_eps_E``), their ``mean``, and the settings (rounds, takes, DP noise multipliers).
    """
    speakers = sorted({r.speaker for r in fsdd_recordings(directory)})
    tests = list(test_speakers or speakers)
    devices, alone = enroll_devices(
        base, root, directory, text_models, models_dir, speakers, takes=takes, say=say
    )
    noise = {eps: noise_multiplier(eps, rounds) for eps in epsilons}
    results_file = root / "results.json"
    done: dict[str, list[dict[str, Any]]] = (
        json.loads(results_file.read_text()) if results_file.is_file() else {}
    )
    options = {"smoothing_hops": smoothing_hops, "refractory_s": refractory_s}
    recordings = fsdd_recordings(directory)
    for test in tests:
        if test in done:
            say(f"test speaker {test}: already measured")
            continue
        others = [devices[s] for s in speakers if s != test]
        say(f"test speaker {test}: {len(others)} devices federate {list(text_models)}")
        heads = {"federated": federate(root / "runs" / test / "plain", others, text_models,
                                       models_dir, rounds=rounds)}  # fmt: skip
        for eps, z in noise.items():
            say(f"test speaker {test}: federated with DP, epsilon {eps:g} (noise {z:.2f})")
            heads[f"dp_eps_{eps:g}"] = federate(
                root / "runs" / test / f"dp-{eps:g}", others, text_models, models_dir,
                rounds=rounds, dp_noise_multiplier=z,
            )  # fmt: skip
        rows = []
        for word, text in text_models.items():
            digit = DIGIT_WORDS.index(word)
            test_takes = {r.path.stem for r in recordings if r.speaker == test and r.digit == digit}

            def miss(head: WakeHead, text: WakeWordModel = text, said: set = test_takes) -> float:
                model = replace(text, head=head)
                return miss_rate(base.geometry, model, labelled, synthetic, said, options)

            say(f"test speaker {test}: {word}: central enrollment of the pooled takes")
            pooled = [t for d in others for t in _enrolled_takes(d, word)]
            central = enroll_wake_word(text, base, pooled, recipe=EnrollRecipe(hold_out=False))
            row = {
                "test_speaker": test, "digit": word,
                "text": miss(text.head),
                "alone": float(np.mean([miss(alone[(d.speaker, word)]) for d in others])),
                "central": miss(central.model.head),
                **{name: miss(h[word]) for name, h in heads.items()},
            }  # fmt: skip
            rows.append(row)
            say(f"test speaker {test}: {word}: " + ", ".join(
                f"{k} {v:.1%}" for k, v in row.items() if isinstance(v, float)))  # fmt: skip
        done[test] = rows
        results_file.write_text(json.dumps(done, indent=2))
    rows = [row for test in tests for row in done[test]]
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    return {
        "rows": rows,
        "mean": {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys},
        "rounds": rounds, "takes": takes, "devices_per_run": len(speakers) - 1,
        "dp": {f"{eps:g}": {"noise_multiplier": round(z, 4), "clipping_norm": CLIPPING_NORM,
                            "delta": DELTA} for eps, z in noise.items()},
    }  # fmt: skip


def _enrolled_takes(device: Device, word: str) -> list[np.ndarray]:
    folder = device.data / "earshot" / "enrollment" / word
    return [load_audio(p) for p in sorted(folder.glob("take-*.wav"))]


__all__ = ["Device", "enroll_devices", "federate", "fsdd_fleet"]
