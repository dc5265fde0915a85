"""The streaming detector against offline scoring, chunking, refractory periods and timing.

The wake word ``seven`` is trained once per session (`tests.test_wake_cli.trained_seven`) on the
default base (the imported embedding); heads with random weights check both bases without it.
"""

import re
from dataclasses import replace

import numpy as np
import pytest

from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ModelError
from models.base.geometry import Embedder
from models.base.loading import load_base
from models.wake.detector import Detection, Detector, WakeWord, silence_embedding, stream_scores
from models.wake.metrics import event_hops, smooth
from models.wake.model import (
    WakeHead,
    WakeWordModel,
    context_record,
    model_path,
    refractory_hops,
)
from tests.test_wake_cli import default_base, hop_count, place, speech, trained_seven

WORDS = [(0.3, "one"), (1.4, "seven"), (2.6, "three"), (3.7, "seven"), (4.9, "nine")]


@pytest.fixture(scope="module")
def base() -> Embedder:
    return default_base()


@pytest.fixture(scope="module")
def model(tmp_path_factory, base) -> WakeWordModel:
    config = trained_seven(tmp_path_factory)
    return WakeWordModel.load(
        model_path(config.parent / "models", "seven"), base_sha256=base.sha256
    )


@pytest.fixture(scope="module")
def sentence(model) -> np.ndarray:
    """Six seconds of digits, "seven" twice, in quiet noise (``model`` checked espeak-ng)."""
    return place([(start, speech(word)) for start, word in WORDS], 6.0)


def chunk_sizes(chunk: int | list[int]):
    """Endless chunk sizes: ``chunk`` every time, or the sizes of a list, cycled."""
    sizes = [chunk] if isinstance(chunk, int) else chunk
    while True:
        yield from sizes


def stream(base, wake_words, audio, chunk):
    """Push ``audio`` in ``chunk``-sample pieces (or pieces of the listed sizes, cycled); the
    detections and every hop's (time, scores)."""
    hops: list[tuple[float, np.ndarray]] = []
    detector = Detector(
        base, wake_words, backend="numpy", on_hop=lambda t, s: hops.append((t, s.copy()))
    )
    found: list[Detection] = []
    start = 0
    for size in chunk_sizes(chunk):
        if start >= audio.size:
            break
        found += detector.push(audio[start : start + size])
        start += size
    return found, hops


def offline_detections(base, scores, threshold, smoothing_hops, refractory_s):
    """Decision times of the offline scores, by `models.wake.metrics`."""
    refractory = refractory_hops(refractory_s, base.geometry.hop_s)
    return base.geometry.hop_end_s(
        event_hops(smooth(scores, smoothing_hops), threshold, refractory)
    )


def random_model(
    base: Embedder,
    name: str = "random",
    *,
    seed: int = 0,
    hidden: int = 16,
    episodes: tuple[int, ...] = (200,),
) -> WakeWordModel:
    """A wake word on ``base`` whose head has random weights, scaled to score between 0 and 1,
    calibrated on random scores of ``episodes`` hops."""
    rng = np.random.default_rng(seed)
    g = base.geometry
    inputs = g.context_windows * base.dim
    w1 = rng.standard_normal((inputs, hidden)) / np.sqrt(inputs)
    head = WakeHead(
        w1.astype(np.float32), np.zeros(hidden, np.float32),
        (rng.standard_normal((hidden, 2)) * 0.3).astype(np.float32), np.zeros(2, np.float32),
    )  # fmt: skip
    calibration = [rng.random(n).astype(np.float32) for n in episodes]
    return WakeWordModel(
        name, name, head, calibration, 0.1, 0.6, base.sha256, base.name, context_record(g)
    )


@pytest.fixture(scope="module", params=["speech_embedding", "dscnn"])
def any_base(request) -> Embedder:
    return load_base(request.param)


def test_streaming_scores_equal_offline_scores(base, model, sentence):
    _, hops = stream(base, [WakeWord(model, threshold=0.5)], sentence, 1280)
    offline = stream_scores(base, [model.head], sentence)
    assert len(hops) == offline.shape[0] == hop_count(base, sentence.size)
    times = np.array([t for t, _ in hops])
    np.testing.assert_allclose(times, base.geometry.hop_end_s(np.arange(len(hops))), atol=1e-9)
    scores = np.array([s for _, s in hops])
    assert scores.shape == (len(hops), 1)
    np.testing.assert_allclose(scores, offline, atol=1e-4)
    assert offline.max() > 0.5, "the trained word scores high somewhere in the sentence"


def assert_same(found, expected, label=""):
    assert [d.name for d in found] == [d.name for d in expected], label
    np.testing.assert_allclose(
        [(d.score, d.start_s, d.end_s, d.time_s) for d in found],
        [(d.score, d.start_s, d.end_s, d.time_s) for d in expected],
        atol=1e-6,
        err_msg=label,
    )


def test_detections_do_not_depend_on_chunk_size(base, model, sentence):
    wake = WakeWord(model, threshold=0.3, refractory_s=1.0)
    reference, _ = stream(base, [wake], sentence, 1280)
    assert len(reference) >= 2, "the sentence has two sevens"
    offline = stream_scores(base, [model.head], sentence)[:, 0]
    np.testing.assert_allclose(
        [d.time_s for d in reference], offline_detections(base, offline, 0.3, 2, 1.0), atol=1e-9
    )
    for chunk in (160, 7000, sentence.size):
        found, _ = stream(base, [wake], sentence, chunk)
        assert_same(found, reference, f"chunks of {chunk} samples")


def test_sample_by_sample_streaming_gives_the_same_detections(base, model, sentence):
    clip = sentence[: int(2.4 * SAMPLE_RATE_HZ)]  # the first "seven" ends near 1.9 s
    wake = WakeWord(model, threshold=0.3, refractory_s=0.5)
    reference, reference_hops = stream(base, [wake], clip, 1280)
    assert reference
    found, hops = stream(base, [wake], clip, 1)
    assert_same(found, reference)
    assert len(hops) == len(reference_hops)


@pytest.mark.parametrize("refractory_s", [0.0, 0.5, 1.3])
def test_detections_respect_the_refractory_period(base, model, sentence, refractory_s):
    wake = WakeWord(model, threshold=0.0, refractory_s=refractory_s)  # every hop is above it
    found, hops = stream(base, [wake], sentence, 1280)
    times = np.array([d.time_s for d in found])
    assert np.all(np.diff(times) >= refractory_s - 1e-9)
    step = refractory_hops(refractory_s, base.geometry.hop_s)
    np.testing.assert_allclose(
        times, base.geometry.hop_end_s(np.arange(0, len(hops), step)), atol=1e-9
    )


def test_detections_place_the_phrase_before_the_decision(base, model, sentence):
    found, _ = stream(base, [WakeWord(model, threshold=0.0, refractory_s=0.3)], sentence, 1280)
    assert len(found) > 10
    for d in found:
        assert d.name == "seven"
        assert 0 <= d.start_s < d.end_s <= d.time_s, d
        assert d.end_s - d.start_s <= 2.0  # within the context the detector keeps


@pytest.mark.parametrize("seed", [0, 1])
def test_a_detection_locates_the_phrase(base, model, seed):
    clip = speech("seven")
    start_s, end_s = 2.0, 2.0 + clip.size / SAMPLE_RATE_HZ
    audio = place([(start_s, clip)], 5.0, seed=seed)
    peak = smooth(stream_scores(base, [model.head], audio)[:, 0], 2).max()
    found, _ = stream(base, [WakeWord(model, threshold=0.9 * peak)], audio, 1280)
    assert len(found) == 1
    (d,) = found
    assert start_s < d.time_s < end_s + 1.0
    assert d.end_s == pytest.approx(end_s, abs=0.25)
    assert d.start_s == pytest.approx(start_s, abs=0.35)


def test_ten_wake_words_on_one_embedding_score_like_one(base, model, sentence):
    one, one_hops = stream(base, [WakeWord(model, threshold=0.3)], sentence, 1280)
    names = [f"seven-{k}" for k in range(10)]
    ten = [WakeWord(replace(model, name=name), threshold=0.3) for name in names]
    found, hops = stream(base, ten, sentence, 1280)
    assert len(hops) == len(one_hops)
    for (t10, s10), (t1, s1) in zip(hops, one_hops, strict=True):
        assert t10 == t1 and s10.shape == (10,)
        np.testing.assert_allclose(s10, np.repeat(s1, 10), rtol=1e-5, atol=1e-7)
    assert len(found) == 10 * len(one) and one
    for name in names:
        mine = [d for d in found if d.name == name]
        assert [replace(d, name="seven", score=0.0) for d in mine] == [
            replace(d, score=0.0) for d in one
        ]
        np.testing.assert_allclose([d.score for d in mine], [d.score for d in one], rtol=1e-5)


def test_wake_word_names_must_differ(base, model):
    with pytest.raises(ValueError, match="names must differ"):
        Detector(base, [WakeWord(model, 0.5), WakeWord(model, 0.7)], backend="numpy")


def test_reset_starts_a_new_stream(base, model, sentence):
    detector = Detector(base, [WakeWord(model, threshold=0.3)], backend="numpy")
    first = detector.push(sentence)
    assert first and detector.hops == hop_count(base, sentence.size)
    detector.reset()
    assert detector.hops == 0
    assert detector.push(sentence) == first


# ---- any base, without a trained wake word ----------------------------------------------------


def test_a_wake_word_trained_on_another_base_is_refused(any_base):
    other = load_base("dscnn" if any_base.name == "speech_embedding" else "speech_embedding")
    foreign = random_model(other, "hey-there")
    assert foreign.base_sha256 != any_base.sha256
    with pytest.raises(ModelError) as raised:
        Detector(any_base, [WakeWord(random_model(any_base), 0.5), WakeWord(foreign, 0.5)])
    message = str(raised.value)
    assert message.startswith("hey-there: trained on base ")
    assert f"base {other.name} ({other.sha256[:12]}...)" in message
    assert f"not on the {any_base.name} in use" in message
    assert re.search(r"run `earshot train hey-there`$", message), message
    # The same head's numbers with another base's checksum: still refused.
    relabelled = replace(random_model(any_base, "hey-there"), base_sha256="0" * 64)
    with pytest.raises(ModelError, match="earshot train hey-there"):
        Detector(any_base, [WakeWord(relabelled, 0.5)])
    Detector(any_base, [WakeWord(random_model(any_base), 0.5)], backend="numpy")  # its own: fine


UNEVEN_CHUNKS = [1, 333, 0, 1280, 17, 4000, 161, 2, 12_345, 640]
"""Sample counts, cycled: less than a frame, several hops, nothing at all."""


def test_uneven_chunks_give_the_offline_scores_of_every_hop(any_base):
    g = any_base.geometry
    models = [random_model(any_base, "a", seed=1), random_model(any_base, "b", seed=2)]
    rng = np.random.default_rng(3)
    t = np.arange(int(4.3 * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) * (t % 1.1 < 0.5)).astype(np.float32)
    audio += (0.01 * rng.standard_normal(t.size)).astype(np.float32)
    offline = stream_scores(any_base, [m.head for m in models], audio)
    assert offline.shape == (hop_count(any_base, audio.size), 2)
    assert np.ptp(offline, axis=0).min() > 0.01, "the random heads' scores vary"
    wake_words = [WakeWord(m, threshold=2.0) for m in models]  # never fires
    for chunks in (UNEVEN_CHUNKS, audio.size):
        found, hops = stream(any_base, wake_words, audio, chunks)
        assert not found
        assert len(hops) == offline.shape[0], chunks
        times = np.array([time for time, _ in hops])
        np.testing.assert_allclose(times, g.hop_end_s(np.arange(len(hops))), atol=1e-9)
        np.testing.assert_allclose(np.array([s for _, s in hops]), offline, atol=1e-4)


def test_before_the_first_hop_the_history_is_silence(any_base):
    g = any_base.geometry
    silence = silence_embedding(any_base)
    assert silence.shape == (any_base.dim,)
    frames = any_base.features(np.zeros(g.context_samples, np.float32))
    np.testing.assert_allclose(
        any_base.embed_frames(frames)[0], silence, atol=1e-4 * np.abs(silence).max()
    )
