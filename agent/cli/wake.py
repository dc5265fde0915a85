"""Wake-word commands: ``earshot train [NAME...]``, ``detect FILE...``, ``eval wake``'s options.

They read the wake words from the config (`agent.settings`), keep trained detectors in the
model directory (``models.directory``), and load them as the running agent does
(`agent.daemon.detectors`). ``eval wake`` itself runs in `agent.cli.wake_eval`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.daemon.detectors import load_base, load_wake_words, threshold_of
from kernels.errors import ConfigError

if TYPE_CHECKING:
    from agent.settings import Settings, WakeWordSettings
    from models.base.geometry import Embedder
    from models.wake.recipe import WakeRecipe

CHUNK_S = 0.08
"""`earshot detect` feeds files in the live agent's block size."""
TRAILING_S = 1.0
"""Silence `earshot detect` appends to each file."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` option every command that reads the config takes."""
    parser.add_argument(
        "--config", type=Path,
        help="config file (default: ~/.config/earshot/earshot.yaml or the shipped one)",
    )  # fmt: skip


def add_train_options(train: argparse.ArgumentParser) -> None:
    """Options of ``earshot train NAME...`` for wake words."""
    group = train.add_argument_group("wake words (earshot train [NAME...])")
    add_config_option(group)  # type: ignore[arg-type]
    group.add_argument(
        "--force", action="store_true", help="retrain even when the model is up to date"
    )
    group.add_argument(
        "--small", action="store_true",
        help="a small, fast recipe (less data, short negative streams): for trying a phrase "
        "out and for tests; less accurate",
    )  # fmt: skip
    group.add_argument(
        "--feedback", action="store_true",
        help="improve the wake words (those named, else every one with feedback kept) from the "
        "false alarms and misses kept by `earshot feedback`; the result is used only if it is "
        "no worse on them (learning.enabled must be on)",
    )  # fmt: skip


def add_parsers(
    commands: argparse._SubParsersAction, eval_what: argparse._SubParsersAction
) -> None:
    """Register ``detect`` and ``eval wake``."""
    detect = commands.add_parser(
        "detect", help="run the configured wake words over audio files",
        description="Stream each file, followed by 1 s of silence, through the detector (in "
        "80 ms blocks, as the agent does) and print one JSON line per detection: file, wake "
        "word, score, start and end of the phrase and the time of the decision, in seconds "
        "from the file's start.",
    )  # fmt: skip
    detect.add_argument("files", type=Path, nargs="+", metavar="FILE", help="audio files")
    add_config_option(detect)
    detect.add_argument(
        "--scores", type=Path, metavar="CSV",
        help="write every hop's raw score per wake word: time_s, then one column per wake "
        "word (with several files, a first column names the file)",
    )  # fmt: skip
    detect.add_argument(
        "--plot", type=Path, metavar="PNG",
        help="draw waveform, spectrogram and scores with detections marked (with several "
        "files, one PNG each, named PNG-stem.N.png)",
    )  # fmt: skip

    wake = eval_what.add_parser(
        "wake", help="miss rate against false alarms per hour (DET curve) of a wake word",
        description="Score positive recordings (each should trigger the wake word) and a "
        "negative stream (nothing should), then report the miss rate at 1 false alarm per hour "
        "and per 10 hours and write the DET curve as CSV and PNG. With --fsdd, run the Free "
        "Spoken Digit Dataset protocol: every digit as a wake word trained from text only.",
    )  # fmt: skip
    add_config_option(wake)
    wake.add_argument("--wake-word", metavar="NAME", help="a configured wake word")
    wake.add_argument(
        "--positives", type=Path, nargs="+", metavar="DIR_OR_FILE",
        help="recordings of the phrase (folders are searched for .wav/.flac/.ogg)",
    )  # fmt: skip
    wake.add_argument(
        "--negatives", type=Path, nargs="+", metavar="FILE",
        help="audio without the phrase; each file is an independent stretch of stream",
    )  # fmt: skip
    wake.add_argument(
        "--fsdd", type=Path, nargs="?", const=Path(), metavar="DIR",
        help="run the FSDD protocol on this recordings folder (default ../shared/data/fsdd)",
    )  # fmt: skip
    wake.add_argument(
        "--out", type=Path, default=Path("det"),
        help="prefix of the DET outputs: PREFIX.csv and PREFIX.png (default det)",
    )  # fmt: skip
    wake.add_argument(
        "--plot", action="store_true",
        help="with --fsdd: run the protocol on both shipped bases (speech_embedding, dscnn) and "
        "draw their DET curves side by side in PREFIX.png",
    )  # fmt: skip
    wake.add_argument("--json", action="store_true", help="print one JSON document")


# ---- train ---------------------------------------------------------------------------------------


def run_train_wake(args: argparse.Namespace) -> int:
    """Train every wake word and phrase command whose model is missing or stale (or those named)."""
    from agent.settings import load_settings
    from models.wake.recipe import SMALL_RECIPE, WakeRecipe

    settings = load_settings(args.config)
    if args.feedback:
        return _train_from_feedback(args, settings)
    trainable = trainable_phrases(settings)
    names = args.names or list(trainable)
    if not names:
        raise ConfigError("wake_words: none configured; add one to the config, then train it")
    wakes = [trainable[n] if n in trainable else settings.wake_word(n) for n in names]
    base = load_base(settings)
    recipe = SMALL_RECIPE if args.small else WakeRecipe()
    for wake in wakes:
        train_one(settings, wake, base, force=args.force, recipe=recipe)
    return 0


def _train_from_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """``earshot train --feedback [NAME...]``: see `agent.learning.improve`."""
    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from agent.learning.improve import improve_wake_word

    if not settings.learning.enabled:
        raise ConfigError(
            "learning.enabled: false; nothing is kept to learn from (set it to true, then mark "
            "false alarms and misses with `earshot feedback`)"
        )
    wakes = [settings.wake_word(n) for n in args.names] or list(settings.wake_words)
    base = load_base(settings)
    results = []
    with StageProgress(unit="step") as progress, threadpool_limits(os.cpu_count() or 1):
        for wake in wakes:
            results.append((wake.name, improve_wake_word(settings, wake, base, progress=progress)))
    for name, result in results:
        print(f"{name}: no feedback kept" if result is None else str(result))
        if result is not None and result.unusable_misses:
            print(f"  ({result.unusable_misses} reported miss(es) held no phrase-like speech)")
    refused = [r for _, r in results if r is not None and not r.accepted]
    if refused:
        return 1
    if any(r is not None for _, r in results):
        print("send SIGHUP to the running agent (or restart it) to use the new detectors")
    return 0


def trainable_phrases(settings: Settings) -> dict[str, WakeWordSettings]:
    """Every detector ``earshot train`` makes: the wake words, then the phrase commands."""
    from agent.daemon.local_commands import as_wake_word

    found = {w.name: w for w in settings.wake_words}
    for command in settings.commands:
        if command.phrase is not None:
            found[command.name] = as_wake_word(command)
    return found


def train_one(
    settings: Settings,
    wake: WakeWordSettings,
    base: Embedder,
    *,
    force: bool = False,
    recipe: WakeRecipe | None = None,
) -> Path:
    """Train ``wake``'s detector from text (and its configured recordings) unless up to date."""
    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from dsp.audio import load_audio
    from models.wake.metrics import threshold_text
    from models.wake.model import model_path, recordings_digest, stale_reason
    from models.wake.training import train_wake_word

    path = model_path(settings.models.resolved_directory(), wake.name)
    recordings = [load_audio(Path(r)) for r in wake.recordings]
    digest = recordings_digest(recordings)
    reason = stale_reason(path, wake.phrase, base.sha256, digest)
    if reason is None and not force:
        print(f"{wake.name}: up to date ({path})")
        return path
    own = f", {len(recordings)} of your recordings" if recordings else ""
    print(f"{wake.name}: training {wake.phrase!r}{own} ({reason or 'forced'})", file=sys.stderr)
    started = time.perf_counter()
    with StageProgress(unit="step") as progress, threadpool_limits(os.cpu_count() or 1):
        model, report = train_wake_word(
            wake.name, wake.phrase, base, recipe, smoothing_hops=wake.smoothing_hops,
            refractory_s=wake.refractory_s, recordings=recordings, progress=progress,
        )  # fmt: skip
    report["metrics"]["seconds"]["total"] = round(time.perf_counter() - started, 2)
    model.save(path, **report)
    threshold, source = threshold_of(wake, model)
    print(
        f"{wake.name}: trained in {time.perf_counter() - started:.1f} s -> {path}; "
        f"threshold {threshold_text(threshold)} ({source})"
    )
    return path


# ---- detect --------------------------------------------------------------------------------------


def _chunks(audio: np.ndarray, seconds: float = CHUNK_S) -> list[np.ndarray]:
    from dsp.constants import SAMPLE_RATE_HZ

    step = int(seconds * SAMPLE_RATE_HZ)
    return [audio[i : i + step] for i in range(0, audio.size, step)]


def run_detect(args: argparse.Namespace) -> int:
    """Print detections as JSON lines; optionally write scores (CSV) and plots (PNG)."""
    from agent.settings import load_settings
    from dsp.audio import load_audio
    from dsp.constants import SAMPLE_RATE_HZ
    from models.wake.detector import Detection, Detector

    settings = load_settings(args.config)
    if not settings.wake_words:
        raise ConfigError("wake_words: none configured; nothing to detect")
    base = load_base(settings)
    wake_words = load_wake_words(settings, base)
    names = [w.name for w in wake_words]
    several = len(args.files) > 1
    rows: list[list[object]] = []
    for index, file in enumerate(args.files):
        audio = load_audio(file)
        hops: list[tuple[float, np.ndarray]] = []
        detector = Detector(
            base, wake_words, backend=settings.detection.backend,
            on_hop=lambda t, s, hops=hops: hops.append((t, s.copy())),  # type: ignore[misc]
        )  # fmt: skip
        found: list[Detection] = []
        # A file ends where a stream goes on: trailing silence lets a phrase at the very end
        # (or a file shorter than the detector's 1 s window) be heard.
        padded = np.concatenate([audio, np.zeros(int(TRAILING_S * SAMPLE_RATE_HZ), np.float32)])
        for chunk in _chunks(padded):
            found += detector.push(chunk)
        for d in found:
            print(json.dumps({"file": str(file), **d.as_dict()}), flush=True)
        rows += [[*([str(file)] if several else []), round(t, 3), *s.round(5)] for t, s in hops]
        if args.plot is not None:
            out = args.plot.with_name(f"{args.plot.stem}.{index + 1}.png") if several else args.plot
            from agent.cli.plots import plot_detections

            plot_detections(out, audio, hops, names, [w.threshold for w in wake_words], found)
    if args.scores is not None:
        write_csv(args.scores, [*(["file"] if several else []), "time_s", *names], rows)
    return 0


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write ``rows`` under ``header`` to ``path``; an unwritable path is a ConfigError."""
    try:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as err:
        raise ConfigError(f"{path}: cannot write: {err}") from err
