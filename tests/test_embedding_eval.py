"""Both bases side by side: metrics, logistic heads, contexts, and the protocols end to end."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dsp.audio import resample
from models.base import embedding_eval as ee
from models.base.evaluation import Recording
from models.base.model import BaseModel
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING
from models.speech.dataset import DIGIT_WORDS
from models.speech.synth import Rendition, Voice, render
from tests.conftest import fsdd_files, require, run_earshot


def brute_auc(positive, negative):
    pairs = [(p > n) + 0.5 * (p == n) for p in positive for n in negative]
    return float(np.mean(pairs))


def brute_miss(positive, negative, rate):
    """Best miss rate over every threshold (accept score >= t) within the false-accept budget."""
    allowed = int(np.floor(rate * len(negative) + 1e-9))
    best = 1.0
    for t in [*np.unique(np.concatenate([positive, negative])), np.inf]:
        if np.sum(negative >= t) <= allowed:
            best = min(best, float(np.mean(positive < t)))
    return best


def test_auc_counts_ties_as_half():
    assert ee.auc(np.array([3, 4, 5]), np.array([1, 2, 3])) == pytest.approx(8.5 / 9)
    assert ee.auc(np.array([1.0]), np.array([2.0])) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    positive = rng.integers(0, 30, size=rng.integers(5, 40)).astype(float)
    negative = rng.integers(-10, 25, size=rng.integers(50, 300)).astype(float)
    assert ee.auc(positive, negative) == pytest.approx(brute_auc(positive, negative))
    for rate in (0.0, 0.01, 0.05, 0.2, 1.0):
        expected = brute_miss(positive, negative, rate)
        assert ee.miss_rate_at(positive, negative, rate) == pytest.approx(expected), rate


def test_miss_rate_at_zero_false_accepts_is_above_the_best_negative():
    negative = np.array([0.1, 0.2, 0.9])
    assert ee.miss_rate_at(np.array([0.5, 0.9, 1.0, 2.0]), negative, 0.0) == 0.5
    assert ee.miss_rate_at(np.array([0.5, 0.9, 1.0, 2.0]), negative, 0.34) == 0.0


def test_logistic_heads_separate_blobs_and_shrink_with_l2():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 40)
    x = centres[labels] + rng.normal(size=(120, 8))
    x[:, 0] = 7.0  # a constant feature must not break the standardization
    soft = ee.fit_logistic(x, np.eye(3)[labels], softmax=True)
    assert np.mean(soft.logits(x).argmax(axis=1) == labels) == 1.0
    one_vs_rest = ee.fit_logistic(x, np.eye(3)[labels], softmax=False)
    assert np.mean(one_vs_rest.logits(x).argmax(axis=1) == labels) == 1.0
    assert np.all((one_vs_rest.logits(x) > 0) == np.eye(3, dtype=bool)[labels])
    strong = ee.fit_logistic(x, np.eye(3)[labels], softmax=True, l2=1e4)
    assert np.abs(strong.weights).max() < 0.1 * np.abs(soft.weights).max()


def fake_base(hops_per_clip=8, joined=(0, 7)):
    samples_per_hop = ee.CLIP_SAMPLES // hops_per_clip
    return ee.ContextBase(
        "fake", "0" * 64, lambda audio: np.zeros((audio.size // samples_per_hop, 1, 1)),
        lambda w: w.reshape(len(w), -1), joined,
    )  # fmt: skip


def test_contexts_join_or_pool_the_hops_of_each_position():
    base = fake_base()
    assert base.context_hops == 8
    hops = np.arange(20, dtype=np.float32).reshape(10, 2)
    joined = ee.contexts(base, hops, "joined")
    np.testing.assert_array_equal(joined, np.concatenate([hops[:3], hops[7:]], axis=1))
    pooled = ee.contexts(base, hops, "pooled")
    assert pooled.shape == (3, 4)
    np.testing.assert_allclose(pooled[1], [*hops[1:9].mean(axis=0), *hops[8]])
    with pytest.raises(ValueError, match="a context needs 8"):
        ee.contexts(base, hops[:7], "joined")


def test_dscnn_context_is_the_wake_detectors_context():
    model = BaseModel.load(SHIPPED_BASE_MODEL)
    g = model.geometry
    base = ee.dscnn_base(model)
    assert ee.DSCNN_HOP_FRAMES == g.hop_frames
    assert base.joined_hops == tuple(k * g.context_stride_hops for k in range(g.context_windows))
    assert base.context_hops == g.context_hops + 1


def test_imported_context_is_the_wake_detectors_sixteen_hops():
    if not SHIPPED_EMBEDDING.is_file():
        pytest.skip(f"{SHIPPED_EMBEDDING} is not there")
    from models.base.speech_embedding import SpeechEmbedding

    embedding = SpeechEmbedding.load()
    g = embedding.geometry
    base = ee.imported_base(embedding)
    assert base.context_hops == 16 and base.joined_hops == tuple(range(16))
    assert base.joined_hops == tuple(k * g.context_stride_hops for k in range(g.context_windows))
    assert base.context_hops == g.context_hops + 1


def test_recordings_are_centred_in_two_seconds_above_a_faint_floor():
    short = np.ones(8000, np.float32)
    clip = ee.recording_clip(short)
    assert clip.size == ee.CLIP_SAMPLES and clip.dtype == np.float32
    np.testing.assert_allclose(clip[12000:20000], 1.0, atol=10 * ee.FLOOR_RMS)
    padding = np.concatenate([clip[:12000], clip[20000:]])
    assert np.sqrt(np.mean(padding**2)) == pytest.approx(ee.FLOOR_RMS, rel=0.05)
    np.testing.assert_array_equal(ee.recording_clip(short), clip)  # seeded
    long = np.ones(ee.CLIP_SAMPLES + 100, np.float32)
    assert ee.recording_clip(long).size == long.size


SPEAKERS = {"ann": Voice("espeak-ng", "en-us+f2"), "bob": Voice("espeak-ng", "en-gb+m3")}
TAKES = 3


def fake_fsdd(folder: Path) -> None:
    """FSDD-named 8 kHz recordings of synthesized digits: 2 speakers, 3 takes of each digit."""
    folder.mkdir()
    for speaker, voice in SPEAKERS.items():
        for digit, word in enumerate(DIGIT_WORDS):
            for take in range(TAKES):
                audio = render(Rendition(word, voice, rate=0.9 + 0.1 * take))
                name = folder / f"{digit}_{speaker}_{take}.wav"
                soundfile.write(name, resample(audio, orig_sr=16_000, target_sr=8000), 8000)


def test_protocols_end_to_end_on_a_tiny_synthetic_set(tmp_path, monkeypatch):
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake_fsdd(tmp_path / "fsdd")
    tiny = ee.ClipRecipe(digit_clips=3, other_words=4, engines=("espeak-ng",))
    protocols = ee.Protocols(zero_shot=tiny, detection=tiny, shots=2)
    base = ee.dscnn_base(BaseModel.load(SHIPPED_BASE_MODEL))
    results = ee.compare_bases([base], tmp_path / "fsdd", protocols=protocols, workers=1)

    figures = results["dscnn"]
    zero = figures["zero_shot"]
    assert zero["train_clips"] == 30 and 0.0 <= zero["accuracy"] <= 1.0
    assert np.sum(zero["confusion"]) == 2 * 10 * TAKES
    assert set(figures["few_shot"]["per_speaker"]) == set(SPEAKERS)
    detection = figures["detection"]
    assert detection["train_clips"] == 34 and len(detection["per_digit"]) == 10
    for digit in detection["per_digit"].values():
        assert 0.0 <= digit["auc"] <= 1.0
        assert 0.0 <= digit["miss_at_1pct_fa"] <= digit["miss_at_0_fa"] <= 1.0
    assert detection["mean"]["auc"] > 0.75  # a real signal, even from 3 clips per digit

    # A rerun reads every embedding from the cache: no synthesis, no audio decoding.
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed instead of read from the cache")

    monkeypatch.setattr(ee, "synthetic_clips", refuse)
    monkeypatch.setattr(ee, "load_audio", refuse)
    assert ee.compare_bases([base], tmp_path / "fsdd", protocols=protocols) == results
    assert ee.detection_protocol(base, tmp_path / "fsdd", recipe=tiny) == detection

    from agent.cli.base import _comparison_table

    table = "\n".join(_comparison_table({"protocols": {
        "zero_shot": vars(tiny), "detection": vars(tiny), "shots": 2}, **results}))  # fmt: skip
    assert "dscnn" in table and "miss rate at 0 false accepts" in table


def test_real_recordings_are_embedded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    files = fsdd_files("*_theo_0.wav")[:3]
    recordings = [Recording(p, int(p.name[0]), "theo", 0) for p in files]
    base = ee.dscnn_base(BaseModel.load(SHIPPED_BASE_MODEL))
    first = ee.recording_embeddings(base, recordings)
    assert [h.shape for h in first] == [(11, 96)] * 3
    again = ee.recording_embeddings(base, recordings)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cli_defaults_are_the_protocol_sizes():
    from agent.cli import base as cli

    assert cli.ZERO_SHOT_CLIPS == ee.ZERO_SHOT_RECIPE.digit_clips
    assert cli.DETECT_DIGIT_CLIPS == ee.DETECTION_RECIPE.digit_clips == 100
    assert cli.DETECT_OTHER_WORDS == ee.DETECTION_RECIPE.other_words == 260


def test_eval_base_help_lists_the_comparison_options():
    done = run_earshot("eval", "base", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--embedding", "--zero-shot-clips", "--detect-digit-clips",
                   "--detect-other-words", "--synth-seed"):  # fmt: skip
        assert option in done.stdout
