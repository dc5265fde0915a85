"""The take check's threshold: reproduced from synthetic speakers, evaluated on real ones (FSDD)."""

import itertools

import numpy as np
import pytest

from models.base.loading import load_base
from models.enroll.take_similarity import (
    REFUSED_SHARE,
    SimilarityStats,
    _stats,
    fsdd_take_similarities,
    take_similarities,
)
from models.enroll.takes import MIN_SIMILARITY, similarity
from tests.conftest import FSDD_DIR, fsdd_files, run_earshot


@pytest.mark.parametrize("name", sorted(MIN_SIMILARITY))
def test_each_base_threshold_comes_from_synthetic_speakers(name):
    """`earshot eval takes` reproduces the shipped constant, and it splits the phrases."""
    stats = take_similarities(load_base(name))
    assert stats.speakers == 12
    assert stats.threshold() == pytest.approx(MIN_SIMILARITY[name], abs=0.01)
    _, refused_third, _ = stats.errors(stats.threshold())
    assert refused_third == pytest.approx(REFUSED_SHARE, abs=0.005)
    assert np.median(stats.same) > np.median(stats.different) + 0.2


def test_pairs_and_third_takes_match_brute_force():
    rng = np.random.default_rng(3)
    speakers = [
        [(str(rng.integers(3)), rng.standard_normal(8)) for _ in range(7)] for _ in range(2)
    ]
    stats = _stats(speakers)
    same, different, third = [], [], []
    for takes in speakers:
        for (pa, xa), (pb, xb) in itertools.combinations(takes, 2):
            (same if pa == pb else different).append(similarity(xa, xb))
        for (pa, xa), (pb, xb), (pc, xc) in itertools.permutations(takes, 3):
            if pa == pb == pc and id(xa) < id(xb):  # unordered pair (a, b), any third c
                third.append((similarity(xc, xa) + similarity(xc, xb)) / 2)
    assert sorted(stats.same) == pytest.approx(sorted(same))
    assert sorted(stats.different) == pytest.approx(sorted(different))
    assert sorted(stats.third_take) == pytest.approx(sorted(third))
    assert stats.speakers == 2


def test_threshold_and_errors():
    stats = SimilarityStats(
        same=np.array([0.2, 0.9]), different=np.array([0.1, 0.5, 0.7]),
        third_take=np.linspace(0, 1, 101), speakers=1,
    )  # fmt: skip
    assert stats.threshold(0.1) == pytest.approx(0.1)
    assert stats.errors(0.6) == pytest.approx((0.5, 60 / 101, 1 / 3))
    assert stats.summary(0.6)["different_accepted"] == pytest.approx(1 / 3)


def test_real_speakers_good_takes_are_rarely_refused_on_the_default_base():
    """FSDD (evaluation only): the synthetic threshold refuses few real third takes (0.6%)."""
    fsdd_files()
    stats = fsdd_take_similarities(load_base("speech_embedding"), FSDD_DIR)
    refused_pairs, refused_third, _ = stats.errors(MIN_SIMILARITY["speech_embedding"])
    assert stats.speakers == 6 and stats.same.size == 6 * 10 * 45
    assert refused_third < 0.03 and refused_pairs < 0.05
    assert np.median(stats.same) > np.median(stats.different) + 0.2


def test_eval_takes_refuses_bad_options():
    done = run_earshot("eval", "takes", "--speakers", "1")
    assert done.returncode != 0
    assert "--speakers: got 1, expected at least 2" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_earshot("eval", "takes", "--fsdd", "/nonexistent/fsdd")
    assert "--fsdd: /nonexistent/fsdd is not a folder" in done.stderr
