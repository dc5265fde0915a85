"""`earshot train`, `earshot detect` and `earshot eval wake` on a wake word trained from text.

One wake word, ``seven``, is trained once per session with the small recipe (`trained_seven`);
`tests/test_detector.py` uses the same model.
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.cli.wake import TRAILING_S
from dsp.constants import SAMPLE_RATE_HZ
from dsp.embedding_features import embedding_frame_count
from dsp.features import frame_count
from models.base.geometry import Embedder
from models.base.loading import load_base
from models.speech.dataset import trim_silence
from models.speech.synth import Rendition, SpeechCache, Voice
from models.wake.detector import stream_scores
from models.wake.metrics import THRESHOLD_GRID, event_hops, smooth
from models.wake.model import (
    WakeWordModel,
    context_record,
    model_path,
    refractory_hops,
    stale_reason,
)
from tests.conftest import require, run_earshot

VOICES = [Voice("espeak-ng", v) for v in ("en-us", "en-us+f3", "en-gb-x-rp+m7", "en-029+m3")]
CONFIG = """\
wake_words:
  - name: seven
    phrase: {phrase}
    {operating_point}
detection:
  backend: numpy
models:
  directory: {directory}
"""


def write_config(
    path: Path,
    directory: Path | str,
    *,
    phrase="seven",
    operating_point="threshold: 0.5",
    base: str | None = None,
) -> Path:
    text = CONFIG.format(phrase=phrase, operating_point=operating_point, directory=directory)
    path.write_text(text + (f"  base: {base}\n" if base is not None else ""))
    return path


def require_synthesizer() -> None:
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")


def trained_seven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config of the wake word ``seven``, trained with ``earshot train --small``.

    The config names no base, so ``seven`` is trained on the default one (`default_base`).

    The first caller in a session trains it under the session's temporary folder; later callers
    (other test modules) find it there. The config keeps its models in ``models/`` beside it.
    """
    require_synthesizer()
    root = tmp_path_factory.getbasetemp() / "wake-seven"
    config = root / "earshot.yaml"
    model = root / "models" / "seven.npz"
    if not model.is_file():
        root.mkdir(exist_ok=True)
        write_config(config, "models")
        result = run_earshot("train", "--config", str(config), "--small")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "seven: training 'seven' (no model yet)" in result.stderr
        assert "seven: trained in" in result.stdout and "threshold 0.5000" in result.stdout
        assert model.is_file()
    return config


def speech(text: str, voice: Voice = VOICES[0]) -> np.ndarray:
    """Synthesized ``text`` without its leading and trailing silence, peaking at 0.5."""
    clip = trim_silence(SpeechCache().get(Rendition(text, voice)))
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)


def place(parts: list[tuple[float, np.ndarray]], seconds: float, seed: int = 0) -> np.ndarray:
    """Clips added at their start times (s) into ``seconds`` of quiet noise."""
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)) * 3e-3).astype(np.float32)
    for start_s, clip in parts:
        start = int(start_s * SAMPLE_RATE_HZ)
        audio[start : start + clip.size] += clip[: audio.size - start]
    return audio


def write_wav(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(path, audio, SAMPLE_RATE_HZ, subtype="FLOAT")
    return path


TRAILING = int(TRAILING_S * SAMPLE_RATE_HZ)
"""Silence `earshot detect` appends to each file."""


def default_base() -> Embedder:
    """The base a config without ``models.base`` uses (the one ``seven`` is trained on)."""
    return load_base()


def hop_count(base: Embedder, samples: int) -> int:
    """Hops the detector on ``base`` scores in a stream of ``samples``."""
    count = embedding_frame_count if base.name == "speech_embedding" else frame_count
    return base.geometry.hop_count(count(samples))


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> Path:
    return trained_seven(tmp_path_factory)


@pytest.fixture(scope="module")
def base() -> Embedder:
    return default_base()


def test_the_trained_model_records_the_default_base_and_its_geometry(seven, base):
    model = WakeWordModel.load(model_path(seven.parent / "models", "seven"))
    assert base.name == "speech_embedding"
    assert model.base_sha256 == base.sha256 and model.base == base.name
    assert model.context == context_record(base.geometry)
    assert model.hop_s == pytest.approx(base.geometry.hop_s)
    assert model.head.inputs == base.geometry.context_windows * base.dim


def test_train_again_is_up_to_date_and_keeps_the_file(seven):
    model = seven.parent / "models" / "seven.npz"
    before = model.stat().st_mtime_ns
    result = run_earshot("train", "--config", str(seven), "--small")
    assert result.returncode == 0, result.stderr
    assert f"seven: up to date ({model})" in result.stdout
    assert "training" not in result.stderr
    assert model.stat().st_mtime_ns == before


def test_changed_phrase_or_base_makes_the_model_stale(seven, base, tmp_path):
    model = model_path(seven.parent / "models", "seven")
    sha = base.sha256
    assert stale_reason(model, "seven", sha) is None
    assert stale_reason(model, "seventy", sha) == "phrase changed from 'seven'"
    assert stale_reason(model, "seven", "0" * 64) == "base model changed"
    assert stale_reason(tmp_path / "seven.npz", "seven", sha) == "no model yet"
    (tmp_path / "broken.npz").write_bytes(b"not a model")
    assert stale_reason(tmp_path / "broken.npz", "seven", sha).startswith("unusable model (")
    # The commands that use the model refuse it and say how to rebuild it.
    config = write_config(tmp_path / "c.yaml", seven.parent / "models", phrase="seventy")
    wav = write_wav(tmp_path / "quiet.wav", place([], 1.5))
    result = run_earshot("detect", str(wav), "--config", str(config))
    assert result.returncode == 5
    assert "phrase changed from 'seven'; run `earshot train seven`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_naming_another_base_says_to_retrain(seven, tmp_path):
    # ``seven`` is trained on the default base; ``models.base: dscnn`` names the other one.
    config = write_config(tmp_path / "d.yaml", seven.parent / "models", base="dscnn")
    wav = write_wav(tmp_path / "quiet.wav", place([], 1.5))
    result = run_earshot("detect", str(wav), "--config", str(config))
    assert result.returncode == 5, result.stderr
    assert "base model changed; run `earshot train seven`" in result.stderr
    assert "Traceback" not in result.stderr


def test_detect_prints_detections_and_writes_scores_and_plot(seven, base, tmp_path):
    audio = place([(1.2, speech("seven"))], 3.5)
    wav = write_wav(tmp_path / "seven.wav", audio)
    scores_csv, plot = tmp_path / "scores.csv", tmp_path / "plot.png"
    result = run_earshot(
        "detect", str(wav), "--config", str(seven), "--scores", str(scores_csv), "--plot", str(plot)
    )
    assert result.returncode == 0, result.stderr
    detections = [json.loads(line) for line in result.stdout.splitlines()]
    assert detections, "the phrase is in the file"
    for d in detections:
        assert set(d) == {"wake_word", "score", "start_s", "end_s", "time_s", "file"}
        assert d["wake_word"] == "seven" and d["file"] == str(wav)
        assert 0.5 <= d["score"] <= 1.0
        assert 0 <= d["start_s"] < d["end_s"] <= d["time_s"] <= audio.size / SAMPLE_RATE_HZ

    with scores_csv.open() as f:
        header, *rows = list(csv.reader(f))
    assert header == ["time_s", "seven"]
    hops = hop_count(base, audio.size + TRAILING)
    assert len(rows) == hops
    table = np.array(rows, dtype=np.float64)
    np.testing.assert_allclose(table[:, 0], base.geometry.hop_end_s(np.arange(hops)), atol=6e-4)
    model = WakeWordModel.load(model_path(seven.parent / "models", "seven"))
    trailing = np.zeros(int(TRAILING_S * SAMPLE_RATE_HZ), np.float32)
    offline = stream_scores(base, [model.head], np.concatenate([audio, trailing]))[:, 0]
    np.testing.assert_allclose(table[:, 1], offline, atol=1e-4)
    # Detections are where the offline scores, smoothed, cross the configured threshold.
    fired = event_hops(smooth(offline, 2), 0.5, refractory_hops(2.0, base.geometry.hop_s))
    assert [d["time_s"] for d in detections] == pytest.approx(
        base.geometry.hop_end_s(fired), abs=1e-3
    )
    assert plot.stat().st_size > 1000


def test_detect_several_files_names_them(seven, base, tmp_path):
    short, long = place([], 1.3), place([], 2.05, seed=1)
    files = [write_wav(tmp_path / "a.wav", short), write_wav(tmp_path / "b.wav", long)]
    out = tmp_path / "scores.csv"
    result = run_earshot(
        "detect", *map(str, files), "--config", str(seven), "--scores", str(out),
        "--plot", str(tmp_path / "plot.png"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with out.open() as f:
        header, *rows = list(csv.reader(f))
    assert header == ["file", "time_s", "seven"]
    assert [r[0] for r in rows] == [str(files[0])] * hop_count(base, short.size + TRAILING) + [
        str(files[1])
    ] * hop_count(base, long.size + TRAILING)
    for n in (1, 2):
        assert (tmp_path / f"plot.{n}.png").stat().st_size > 1000


def test_detect_without_a_trained_model_says_how_to_train_it(tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path / "empty")
    wav = write_wav(tmp_path / "quiet.wav", place([], 1.5))
    result = run_earshot("detect", str(wav), "--config", str(config))
    assert result.returncode == 5
    assert "no model yet" in result.stderr and "earshot train seven" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [["train"], ["detect", "missing.wav"], ["config", "check"]],
    ids=["train", "detect", "config-check"],
)
def test_invalid_wake_word_config_exits_2_naming_the_field(command, tmp_path):
    config = write_config(
        tmp_path / "bad.yaml", tmp_path,
        operating_point="threshold: 0.5\n    false_accepts_per_hour: 1.0",
    )  # fmt: skip
    config_args = [str(config)] if command[0] == "config" else ["--config", str(config)]
    result = run_earshot(*command, *config_args)
    assert result.returncode == 2
    assert f"{config}: wake_words[0]: set false_accepts_per_hour or threshold" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "seven.npz").exists()


def test_eval_wake_writes_a_det_curve(seven, tmp_path):
    positives = tmp_path / "positives"
    positives.mkdir()
    for n, voice in enumerate(VOICES):
        write_wav(positives / f"seven_{n}.wav", place([(0.2, speech("seven", voice))], 1.2, n))
    words = ["one", "two", "three", "four", "five", "six", "eight", "nine", "hello", "eleven"]
    negatives = place([(0.3 + 0.9 * i, speech(w)) for i, w in enumerate(words)], 9.5)
    negative_file = write_wav(tmp_path / "negatives.wav", negatives)
    prefix = tmp_path / "det"
    result = run_earshot(
        "eval", "wake", "--config", str(seven), "--wake-word", "seven",
        "--positives", str(positives), "--negatives", str(negative_file),
        "--out", str(prefix), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["seven"]
    assert summary["positives"] == len(VOICES)
    assert summary["negative_hours"] == round(negatives.size / SAMPLE_RATE_HZ / 3600, 3)
    assert 0.0 <= summary["miss_rate_at_1_per_hour"] <= 1.0
    assert summary["per_10_hours_measured"] is False

    with prefix.with_suffix(".csv").open() as f:
        header, *rows = list(csv.reader(f))
    assert header == ["wake_word", "threshold", "false_alarms_per_hour", "miss_rate"]
    assert len(rows) == THRESHOLD_GRID.size and {r[0] for r in rows} == {"seven"}
    curve = np.array([r[1:] for r in rows], dtype=np.float64)
    assert np.all(np.diff(curve[:, 1]) <= 0) and np.all(np.diff(curve[:, 2]) >= 0)
    # The summary is the curve's point at 1 false alarm per hour.
    first = int(np.flatnonzero(curve[:, 1] <= 1.0)[0])
    assert summary["miss_rate_at_1_per_hour"] == pytest.approx(curve[first, 2], abs=1e-4)
    assert summary["threshold_at_1_per_hour"] == pytest.approx(curve[first, 0], abs=1e-5)
    assert prefix.with_suffix(".png").stat().st_size > 1000


def test_eval_wake_without_positives_exits_2(tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path)
    result = run_earshot(
        "eval", "wake", "--config", str(config), "--wake-word", "seven", "--negatives", "x.wav",
        "--out", str(tmp_path / "det"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--positives" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "det.csv").exists()


@pytest.mark.parametrize(
    ("command", "mentions"), [("train", ["NAME", "--small", "--force"]), ("detect", ["--scores"])]
)
def test_help(command, mentions):
    result = run_earshot(command, "--help")
    assert result.returncode == 0, result.stderr
    for word in mentions:
        assert word in result.stdout


def test_train_uses_the_users_recordings_and_retrains_when_they_change(tmp_path):
    require_synthesizer()
    write_wav(tmp_path / "take.wav", place([(0.3, speech("seven", VOICES[2]))], 1.2))
    config = write_config(
        tmp_path / "earshot.yaml", "models",
        operating_point="threshold: 0.5\n    recordings: [take.wav]",
    )  # fmt: skip
    model = tmp_path / "models" / "seven.npz"

    first = run_earshot("train", "--config", str(config), "--small")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "seven: training 'seven', 1 of your recordings (no model yet)" in first.stderr
    trained = WakeWordModel.load(model)
    assert trained.extra["recordings"] == 1
    # The recording is a positive: the model's examples count grew by its augmented copies.
    from models.wake.recipe import SMALL_RECIPE

    counts = trained.manifest.metrics["examples"]
    assert counts["positives"] == (
        SMALL_RECIPE.phrase_renditions * SMALL_RECIPE.positive_copies
        + SMALL_RECIPE.recording_copies
    )

    again = run_earshot("train", "--config", str(config), "--small")
    assert "seven: up to date" in again.stdout

    write_wav(tmp_path / "take.wav", place([(0.1, speech("seven", VOICES[3]))], 1.2))
    changed = run_earshot("train", "--config", str(config), "--small")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "(recordings changed)" in changed.stderr


def test_train_names_a_missing_recording(tmp_path):
    config = write_config(
        tmp_path / "earshot.yaml", "models",
        operating_point="threshold: 0.5\n    recordings: [missing.wav]",
    )  # fmt: skip
    result = run_earshot("train", "--config", str(config), "--small")
    assert result.returncode == 3
    assert str(tmp_path / "missing.wav") in result.stderr
    assert "Traceback" not in result.stderr
