"""The FSDD enrollment protocol on a small case, and the speaker gate it applies.

Needs the Free Spoken Digit Dataset (skips cleanly without it): two speakers, one digit, a
small text-only recipe.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.base.model import BaseModel
from models.enroll.evaluation import fsdd_enrollment
from models.paths import SHIPPED_BASE_MODEL
from models.wake.detector import locate_phrase
from models.wake.evaluation import fsdd_stream
from models.wake.recipe import SMALL_RECIPE
from models.wake.streams import StreamRecipe, build_stream
from models.wake.training import train_wake_word
from tests.conftest import fsdd_files

SPEAKERS = ("jackson", "theo")


def test_locate_phrase_finds_the_loud_stretch_ending_last():
    frames = np.full((200, 40), -12.0, np.float32)
    frames[40:70] = -2.0  # earlier speech, too long before the phrase's end to belong to it
    frames[120:165] = -1.0  # the phrase
    assert locate_phrase(frames, duration_frames=60) == (120, 164)
    assert locate_phrase(frames, duration_frames=20) == (144, 164)  # at most its length back
    quiet = np.full((50, 40), -12.0, np.float32)
    assert locate_phrase(quiet, duration_frames=20) == (29, 49)


@pytest.fixture(scope="module")
def fsdd_subset(tmp_path_factory):
    files = [f for f in fsdd_files() if f.stem.split("_")[1] in SPEAKERS]
    folder = tmp_path_factory.mktemp("fsdd")
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def test_fsdd_enrollment_protocol_small(tmp_path, fsdd_subset):
    base = BaseModel.load(SHIPPED_BASE_MODEL)
    text, _ = train_wake_word("one", "one", base, SMALL_RECIPE, stream_dir=tmp_path)
    labelled = fsdd_stream(base, fsdd_subset, keep_frames=True)
    synthetic = build_stream(base, StreamRecipe(60.0), "evaluation", keep_frames=True)
    result = fsdd_enrollment(
        base, fsdd_subset, {"one": text}, labelled, synthetic, speakers=SPEAKERS, digits=["one"]
    )
    rows = result["rows"]
    assert [(r["speaker"], r["digit"]) for r in rows] == [(s, "one") for s in SPEAKERS]
    keys = ("text", "enrolled", "enrolled_speaker_check")
    for row in rows:
        assert all(0.0 <= row[k] <= 1.0 for k in keys)
    mean = result["mean"]
    # Five takes of their own voice lower the speakers' miss rate.
    assert mean["enrolled"] < mean["text"]
    # The speaker check keeps more of the speaker's own takes than it lets others' through.
    assert 1 - mean["speaker_false_reject"] > mean["speaker_false_accept"]
    assert set(result["per_speaker"]) == set(SPEAKERS)
