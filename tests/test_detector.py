"""The streaming detector against offline scoring, chunking, refractory periods and timing.

The wake word ``seven`` is trained once per session (`tests.test_wake_cli.trained_seven`).
"""

from dataclasses import replace

import numpy as np
import pytest

from dsp.constants import SAMPLE_RATE_HZ
from models.base.model import BaseModel
from models.paths import SHIPPED_BASE_MODEL
from models.wake.context import hop_end_s
from models.wake.detector import Detection, Detector, WakeWord, stream_scores
from models.wake.metrics import event_hops, smooth
from models.wake.model import WakeWordModel, model_path, refractory_hops
from tests.test_wake_cli import hop_count, place, speech, trained_seven

WORDS = [(0.3, "one"), (1.4, "seven"), (2.6, "three"), (3.7, "seven"), (4.9, "nine")]


@pytest.fixture(scope="module")
def base() -> BaseModel:
    return BaseModel.load(SHIPPED_BASE_MODEL)


@pytest.fixture(scope="module")
def network(base):
    return base.inference_network()


@pytest.fixture(scope="module")
def model(tmp_path_factory, base) -> WakeWordModel:
    config = trained_seven(tmp_path_factory)
    assert base.manifest is not None
    return WakeWordModel.load(
        model_path(config.parent / "models", "seven"), base_sha256=base.manifest.sha256
    )


@pytest.fixture(scope="module")
def sentence(model) -> np.ndarray:
    """Six seconds of digits, "seven" twice, in quiet noise (``model`` checked espeak-ng)."""
    return place([(start, speech(word)) for start, word in WORDS], 6.0)


def stream(network, wake_words, audio, chunk):
    """Push ``audio`` in ``chunk``-sample pieces; the detections and every hop's (time, scores)."""
    hops: list[tuple[float, np.ndarray]] = []
    detector = Detector(
        network, wake_words, backend="numpy", on_hop=lambda t, s: hops.append((t, s.copy()))
    )
    found: list[Detection] = []
    for i in range(0, audio.size, chunk):
        found += detector.push(audio[i : i + chunk])
    return found, hops


def offline_detections(scores, threshold, smoothing_hops, refractory_s):
    """Decision times of the offline scores, by `models.wake.metrics`."""
    fired = event_hops(smooth(scores, smoothing_hops), threshold, refractory_hops(refractory_s))
    return hop_end_s(fired)


def test_streaming_scores_equal_offline_scores(network, base, model, sentence):
    _, hops = stream(network, [WakeWord(model, threshold=0.5)], sentence, 1280)
    offline = stream_scores(base, [model.head], sentence)
    assert len(hops) == offline.shape[0] == hop_count(sentence.size)
    times = np.array([t for t, _ in hops])
    np.testing.assert_allclose(times, hop_end_s(np.arange(len(hops))), atol=1e-9)
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


def test_detections_do_not_depend_on_chunk_size(network, base, model, sentence):
    wake = WakeWord(model, threshold=0.3, refractory_s=1.0)
    reference, _ = stream(network, [wake], sentence, 1280)
    assert len(reference) >= 2, "the sentence has two sevens"
    offline = stream_scores(base, [model.head], sentence)[:, 0]
    np.testing.assert_allclose(
        [d.time_s for d in reference], offline_detections(offline, 0.3, 2, 1.0), atol=1e-9
    )
    for chunk in (160, 7000, sentence.size):
        found, _ = stream(network, [wake], sentence, chunk)
        assert_same(found, reference, f"chunks of {chunk} samples")


def test_sample_by_sample_streaming_gives_the_same_detections(network, model, sentence):
    clip = sentence[: int(2.4 * SAMPLE_RATE_HZ)]  # the first "seven" ends near 1.9 s
    wake = WakeWord(model, threshold=0.3, refractory_s=0.5)
    reference, reference_hops = stream(network, [wake], clip, 1280)
    assert reference
    found, hops = stream(network, [wake], clip, 1)
    assert_same(found, reference)
    assert len(hops) == len(reference_hops)


@pytest.mark.parametrize("refractory_s", [0.0, 0.5, 1.3])
def test_detections_respect_the_refractory_period(network, model, sentence, refractory_s):
    wake = WakeWord(model, threshold=0.0, refractory_s=refractory_s)  # every hop is above it
    found, hops = stream(network, [wake], sentence, 1280)
    times = np.array([d.time_s for d in found])
    assert np.all(np.diff(times) >= refractory_s - 1e-9)
    step = refractory_hops(refractory_s)
    np.testing.assert_allclose(times, hop_end_s(np.arange(0, len(hops), step)), atol=1e-9)


def test_detections_place_the_phrase_before_the_decision(network, model, sentence):
    found, _ = stream(network, [WakeWord(model, threshold=0.0, refractory_s=0.3)], sentence, 1280)
    assert len(found) > 10
    for d in found:
        assert d.name == "seven"
        assert 0 <= d.start_s < d.end_s <= d.time_s, d
        assert d.end_s - d.start_s <= 2.0  # within the context the detector keeps


@pytest.mark.parametrize("seed", [0, 1])
def test_a_detection_locates_the_phrase(network, base, model, seed):
    clip = speech("seven")
    start_s, end_s = 2.0, 2.0 + clip.size / SAMPLE_RATE_HZ
    audio = place([(start_s, clip)], 5.0, seed=seed)
    peak = smooth(stream_scores(base, [model.head], audio)[:, 0], 2).max()
    found, _ = stream(network, [WakeWord(model, threshold=0.9 * peak)], audio, 1280)
    assert len(found) == 1
    (d,) = found
    assert start_s < d.time_s < end_s + 1.0
    assert d.end_s == pytest.approx(end_s, abs=0.25)
    assert d.start_s == pytest.approx(start_s, abs=0.35)


def test_ten_wake_words_on_one_embedding_score_like_one(network, model, sentence):
    one, one_hops = stream(network, [WakeWord(model, threshold=0.3)], sentence, 1280)
    names = [f"seven-{k}" for k in range(10)]
    ten = [WakeWord(replace(model, name=name), threshold=0.3) for name in names]
    found, hops = stream(network, ten, sentence, 1280)
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


def test_wake_word_names_must_differ(network, model):
    with pytest.raises(ValueError, match="names must differ"):
        Detector(network, [WakeWord(model, 0.5), WakeWord(model, 0.7)], backend="numpy")


def test_reset_starts_a_new_stream(network, model, sentence):
    detector = Detector(network, [WakeWord(model, threshold=0.3)], backend="numpy")
    first = detector.push(sentence)
    assert first and detector.hops == hop_count(sentence.size)
    detector.reset()
    assert detector.hops == 0
    assert detector.push(sentence) == first
