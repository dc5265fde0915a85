"""Listening CPU of two peer wake-word engines on the same audio: openWakeWord and Porcupine.

earshot's own listening cost comes from ``earshot bench daemon``; this module runs the peers on a
recording so the figures can be set side by side:

* **openWakeWord 0.5.1** with its bundled ONNX models (melspectrogram, speech embedding and one
  wake-word model, `OWW_MODEL`), loaded by explicit path from the installed package, so nothing is
  downloaded. Each ONNX Runtime session runs on one intra-op and one inter-op thread (openWakeWord
  fixes that for the wake-word model; ``ncpu=1`` does it for the feature models).
* **Porcupine** (pvporcupine 1.9.5, which needs no access key) with its built-in keyword
  `PORCUPINE_KEYWORD`. The library is single-threaded.

Each peer runs in a process of its own (``python -m agent.bench.peers --peer NAME --wav FILE``)
with ``OMP_NUM_THREADS=1``, reads the 16 kHz mono 16-bit WAV, and feeds it frame by frame as the
peer's streaming examples do: 1280-sample (80 ms) frames to ``Model.predict``, ``frame_length``
(512-sample) frames to ``Porcupine.process``; the file's last partial frame is padded with zeros.
The child times the processing loop only with ``time.process_time()`` (CPU of all its threads) and
``time.perf_counter()``; importing the peer and loading its models is timed apart (``load_s``).
CPU % of one core for listening in real time is ``100 * cpu_s / audio_s``. A detection is a
Porcupine hit, or an openWakeWord score rising to `OWW_THRESHOLD` (the threshold of openWakeWord's
examples) from below it.

The peers are benchmark-only dependencies (``pip install 'earshot[bench]'``); the product never
imports them. Run ``python -m agent.bench.peers`` (10 minutes of scripted everyday speech,
`models.speech.demo_stream.other_speech`) or ``--wav FILE``; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.common import (
    CHUNK_SAMPLES,
    MINUTES,
    PHRASE,
    Stopwatch,
    add_json_option,
    print_json,
    say,
    write_speech,
)
from agent.paths import SOURCE_ROOT
from dsp.constants import SAMPLE_RATE_HZ
from models.wake.metrics import SECONDS_PER_HOUR

PEERS = ("openwakeword", "porcupine")
OWW_MODEL = "alexa_v0.1"
"""openWakeWord's bundled model that is run (one wake word, like one earshot detector)."""
OWW_FRAME = 1280
OWW_THRESHOLD = 0.5
PORCUPINE_KEYWORD = "computer"
PACKAGES = {"openwakeword": "openwakeword", "porcupine": "pvporcupine", "earshot": "earshot"}
NOT_INSTALLED = "not installed: pip install 'earshot[bench]'"
CHILD_TIMEOUT_S = 1800.0
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class Peer:
    """A loaded peer engine: feed it one frame at a time; it says whether it detected."""

    frame: int
    threads: int
    model: str

    def process(self, frame: np.ndarray) -> bool:
        """Process one int16 frame; True when the wake word was detected in it."""
        raise NotImplementedError

    def close(self) -> None:
        """Free the engine."""


class OpenWakeWord(Peer):
    """openWakeWord on ONNX Runtime, bundled models by path, one thread per session."""

    frame = OWW_FRAME
    threads = 1
    model = OWW_MODEL

    def __init__(self) -> None:
        import openwakeword

        models = Path(openwakeword.__file__).parent / "resources" / "models"
        self.engine = openwakeword.Model(
            wakeword_models=[str(models / f"{OWW_MODEL}.onnx")],
            inference_framework="onnx",
            melspec_model_path=str(models / "melspectrogram.onnx"),
            embedding_model_path=str(models / "embedding_model.onnx"),
            ncpu=self.threads,
        )
        self.above = False
        self.max_score = 0.0

    def process(self, frame: np.ndarray) -> bool:  # noqa: D102
        score = float(self.engine.predict(frame)[OWW_MODEL])
        self.max_score = max(self.max_score, score)
        rising = score >= OWW_THRESHOLD and not self.above
        self.above = score >= OWW_THRESHOLD
        return rising


class Porcupine(Peer):
    """Porcupine with a built-in keyword (version 1.9 needs no access key)."""

    threads = 1
    model = PORCUPINE_KEYWORD

    def __init__(self) -> None:
        import pvporcupine

        self.engine = pvporcupine.create(keywords=[PORCUPINE_KEYWORD])
        if self.engine.sample_rate != SAMPLE_RATE_HZ:
            raise RuntimeError(f"Porcupine wants {self.engine.sample_rate} Hz audio")
        self.frame = int(self.engine.frame_length)

    def process(self, frame: np.ndarray) -> bool:  # noqa: D102
        return bool(self.engine.process(frame) >= 0)

    def close(self) -> None:  # noqa: D102
        self.engine.delete()


class EarshotDetector(Peer):
    """earshot's own detector (`models.wake.detector`) with the shipped config, as a peer.

    The same bare loop as the peers get, with none of the daemon around it (no capture, voice
    activity, queues or events): the like-for-like figure next to theirs.
    """

    frame = CHUNK_SAMPLES  # the daemon's 80 ms blocks
    threads = 1
    model = PHRASE

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits

        from agent.daemon.detectors import load_models
        from agent.settings import load_settings

        threadpool_limits(limits=1)
        self.detector = load_models(load_settings()).detector

    def process(self, frame: np.ndarray) -> bool:  # noqa: D102
        return bool(self.detector.push(frame.astype(np.float32) / 32768.0))


LOADERS: dict[str, Callable[[], Peer]] = {
    "openwakeword": OpenWakeWord, "porcupine": Porcupine, "earshot": EarshotDetector,
}  # fmt: skip


def read_wav(wav: Path) -> np.ndarray:
    """The samples of a 16 kHz mono WAV file, as int16."""
    import soundfile

    audio, rate = soundfile.read(str(wav), dtype="int16", always_2d=True)
    if rate != SAMPLE_RATE_HZ or audio.shape[1] != 1:
        raise ValueError(f"{wav}: {rate} Hz, {audio.shape[1]} channels; want 16 kHz mono")
    return np.ascontiguousarray(audio[:, 0])


def os_threads() -> int:
    """Threads this process has now (Linux), or 0 where that cannot be read."""
    from agent.control.procstat import proc_status

    status = proc_status()
    return status.get("Threads", 0) if status else 0


def blank(name: str) -> dict[str, Any]:
    """A result for ``name`` with nothing measured yet."""
    return {
        "peer": name,
        "version": None,
        "model": OWW_MODEL if name == "openwakeword" else PORCUPINE_KEYWORD,
        "audio_s": None,
        "cpu_s": None,
        "cpu_percent": None,
        "wall_s": None,
        "load_s": None,
        "detections": None,
        "threads": None,
        "os_threads": None,
        "error": None,
    }


def measure(name: str, wav: Path) -> dict[str, Any]:
    """Load peer ``name``, run it over ``wav`` frame by frame, and time it (in this process)."""
    result = blank(name)
    try:
        result["version"] = metadata.version(PACKAGES[name])
    except metadata.PackageNotFoundError:
        result["error"] = NOT_INSTALLED
        return result
    audio = read_wav(wav)
    loading = Stopwatch()
    peer = LOADERS[name]()
    result["load_cpu_s"], result["load_s"] = loading.read()
    frames = -(-audio.size // peer.frame)
    padded = np.zeros(frames * peer.frame, np.int16)
    padded[: audio.size] = audio
    detections = 0
    listening = Stopwatch()
    for index in range(frames):
        detections += peer.process(padded[index * peer.frame : (index + 1) * peer.frame])
    cpu_s, wall_s = listening.read()
    audio_s = audio.size / SAMPLE_RATE_HZ
    result.update(
        audio_s=audio_s,
        cpu_s=cpu_s,
        cpu_percent=100.0 * cpu_s / audio_s if audio_s else None,
        wall_s=wall_s,
        detections=detections,
        frame_samples=peer.frame,
        threads=peer.threads,
        os_threads=os_threads(),
    )
    if isinstance(peer, OpenWakeWord):
        result["max_score"] = peer.max_score
    peer.close()
    return result


def run_peer(name: str, wav: Path, timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    """`measure` peer ``name`` on ``wav`` in a subprocess of its own; never raises for the peer."""
    result = blank(name)
    if name not in LOADERS:
        result["error"] = f"unknown peer (known: {', '.join(LOADERS)})"
        return result
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "agent.bench.peers", "--peer", name, "--wav", str(wav)]
    try:
        child = subprocess.run(
            command, capture_output=True, text=True, cwd=SOURCE_ROOT, env=env, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {timeout_s:.0f} s"
        return result
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = (child.stderr.strip() or child.stdout.strip())[-800:]
        result["error"] = f"exit status {child.returncode}: {tail}"
        return result
    result.update(json.loads(lines[-1]))
    return result


def peer_cpu(wav: Path, peers: Sequence[str] = PEERS) -> list[dict[str, Any]]:
    """Each peer's listening CPU on ``wav`` (16 kHz mono 16-bit), one subprocess per peer.

    Every result has ``peer``, ``version``, ``model`` (the wake word or model run), ``audio_s``,
    ``cpu_s``, ``cpu_percent`` (of one core, for real-time listening), ``wall_s``, ``load_s``,
    ``detections``, ``threads`` and ``error``: None, or why the peer could not run (a missing
    package gives ``"not installed: pip install 'earshot[bench]'"``).
    """
    return [run_peer(name, Path(wav)) for name in peers]


def print_table(results: list[dict[str, Any]], source: str) -> None:
    """The results as a table."""
    audio_s = next((r["audio_s"] for r in results if r["audio_s"]), None)
    length = f", {audio_s / 60:.1f} min" if audio_s else ""
    print(f"peer wake-word engines on {source}{length}; one process each, single-threaded")
    print()
    header = f"  {'peer':<22}{'model':<12}{'CPU % of 1 core':>16}{'CPU s/audio h':>15}"
    print(f"{header}{'load s':>8}{'detections':>12}")
    for r in results:
        label = f"{r['peer']} {r['version'] or ''}".strip()
        if r["error"]:
            print(f"  {label:<22}{r['model']:<12}  error: {r['error']}")
            continue
        per_hour = r["cpu_s"] / r["audio_s"] * SECONDS_PER_HOUR
        print(
            f"  {label:<22}{r['model']:<12}{r['cpu_percent']:>16.2f}{per_hour:>15.1f}"
            f"{r['load_s']:>8.2f}{r['detections']:>12d}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the peers (or, with ``--peer``, be one peer's measuring subprocess)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, help="16 kHz mono 16-bit WAV (default: speech)")
    parser.add_argument(
        "--minutes", type=float, default=MINUTES,
        help=f"length of the scripted speech when no --wav is given (default {MINUTES:g})",
    )  # fmt: skip
    add_json_option(parser)
    parser.add_argument("--peer", choices=sorted(LOADERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:  # the measuring subprocess: one JSON line on stdout
        if args.wav is None:
            parser.error("--peer needs --wav")
        print(json.dumps(measure(args.peer, args.wav)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="earshot-peers-") as tmp:
        wav = args.wav
        source = str(wav)
        if wav is None:
            wav = Path(tmp) / "speech.wav"
            say(f"synthesizing {args.minutes:g} min of everyday speech ...")
            write_speech(wav, args.minutes * 60.0)
            source = "scripted everyday speech (no wake word)"
        results = peer_cpu(wav)
    if args.json:
        print_json({"wav": source, "peers": results})
    else:
        print_table(results, source)
    return 1 if all(r["error"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
