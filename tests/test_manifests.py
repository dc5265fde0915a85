"""Edited model manifests: a wake-word model's checks, and `earshot run` refusing edited models.

Only a model file's weights are checksummed; its manifest is checked against a schema with bounds
before anything is built from it. An edited file makes `earshot run` exit 5 with one line naming
the file and the field, before the agent starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernels.errors import ModelError
from models.base.loading import load_base
from models.base.model import BaseModel
from models.base.speech_embedding import SpeechEmbedding
from models.nn.checkpoint import MANIFEST_KEY
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING
from models.wake.model import (
    WAKE_FORMAT_VERSION,
    WakeWordModel,
    context_record,
    shipped_detector,
)
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import write_config
from tests.test_detector import random_model

Edit = Callable[[dict[str, Any]], object]


def edited_copy(source: Path, path: Path, edit: Edit) -> Path:
    """A copy of the model file ``source`` at ``path``, its manifest changed by ``edit``."""
    with np.load(source, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = json.loads(str(arrays.pop(MANIFEST_KEY)))
    edit(manifest)
    np.savez(path, **arrays, **{MANIFEST_KEY: np.array(json.dumps(manifest))})
    return path


def set_extra(**values: object) -> Edit:
    return lambda manifest: manifest["extra"].update(values)


def set_context(**values: object) -> Edit:
    return lambda manifest: manifest["architecture"]["context"].update(values)


def one_more_episode_hop(manifest: dict[str, Any]) -> None:
    episodes = manifest["extra"]["calibration_episodes"]
    manifest["extra"]["calibration_episodes"] = [*episodes[:-1], episodes[-1] + 1]


def one_more_hidden_unit(manifest: dict[str, Any]) -> None:
    manifest["architecture"]["args"]["hidden"] += 1


@pytest.fixture(scope="module", params=["shipped", "fresh"])
def wake_file(request, tmp_path_factory) -> Path:
    """The shipped "computer" detector, or one saved just now on the default base (random head,
    a few calibration episodes): the manifest checks must not depend on one file's numbers."""
    if request.param == "shipped":
        return shipped_detector("computer")
    path = tmp_path_factory.mktemp("wake") / "computer.npz"
    model = random_model(load_base(), "computer", hidden=32, episodes=(300, 200, 100))
    model.save(path, recipe={}, metrics={}, curve={})
    return path


def file_numbers(path: Path) -> dict[str, int]:
    """Numbers of a wake-word file the refusals quote: head sizes, calibration scores."""
    with np.load(path, allow_pickle=False) as data:
        inputs, hidden = data["head/0.weight"].shape
        scores = data["calibration/scores"].size
    return {"inputs": inputs, "hidden": hidden, "hidden1": hidden + 1, "scores": scores,
            "scores1": scores + 1}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            set_extra(calibration_hours=0),
            r"manifest extra.calibration_hours: got int 0, expected a number in \(0, 100000\]",
        ),
        (set_extra(calibration_hours=-1.5), r"manifest extra.calibration_hours: got float -1.5"),
        (set_extra(phrase_duration_s=None), r"manifest extra.phrase_duration_s: got NoneType"),
        (set_extra(name=7), r"manifest extra.name: got int 7, expected text"),
        (
            lambda m: m["extra"].pop("calibration_episodes"),
            r"manifest extra.calibration_episodes: required key is missing",
        ),
        (
            one_more_episode_hop,
            r"manifest extra.calibration_episodes: lengths add up to {scores1}, expected {scores}",
        ),
        (
            one_more_hidden_unit,
            r"head/0.weight has shape \({inputs}, {hidden}\) \(float32\), expected floats of "
            r"shape \({inputs}, {hidden1}\)",
        ),
        (
            set_context(window_frames=0),
            r"manifest architecture.context.window_frames: got int 0, expected an integer in "
            r"\[1, 10000\]",
        ),
        (
            set_context(windows=1000),
            r"manifest architecture.context.windows: got int 1000, expected an integer in "
            r"\[1, 256\]",
        ),
        (
            set_context(hop_s=-0.08),
            r"manifest architecture.context.hop_s: got float -0.08, expected a number in "
            r"\(0, 10\]",
        ),
        (
            lambda m: m["architecture"]["context"].pop("bands", None),
            r"manifest architecture.context.bands: required key is missing",
        ),
        (
            lambda m: m["extra"].pop("base", None),
            r"manifest extra.base: required key is missing",
        ),
        (lambda m: m.update(labels=["_other_"]), r"manifest labels: got list of 1 items"),
    ],
    ids=["zero-hours", "negative-hours", "no-duration", "name-not-text", "no-episodes",
         "episodes-disagree", "hidden-disagrees", "no-window", "too-many-windows",
         "negative-hop", "no-bands", "no-base", "one-label"],
)  # fmt: skip
def test_an_edited_wake_word_manifest_is_refused_naming_the_file_and_field(
    tmp_path, wake_file, edit, message
):
    path = edited_copy(wake_file, tmp_path / "computer.npz", edit)
    expected = message.format(**file_numbers(wake_file))
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {expected}"):
        WakeWordModel.load(path)


def test_the_unedited_copy_loads(tmp_path, wake_file):
    path = edited_copy(wake_file, tmp_path / "computer.npz", lambda m: None)
    model = WakeWordModel.load(path)
    assert model.name == "computer" and model.head.inputs == file_numbers(wake_file)["inputs"]


@pytest.mark.parametrize("version", [1, WAKE_FORMAT_VERSION + 1], ids=["older", "newer"])
def test_a_wake_word_model_of_another_format_still_says_how_to_remake_it(
    tmp_path, wake_file, version
):
    path = edited_copy(wake_file, tmp_path / "c.npz", set_extra(wake_format=version))
    with pytest.raises(
        ModelError,
        match=rf"wake-word format {version}, this earshot reads {WAKE_FORMAT_VERSION}; "
        r"run `earshot train computer`",
    ):
        WakeWordModel.load(path)


def run_with_models(tmp_path: Path, **models: str) -> tuple[int, str, str]:
    config = write_config(tmp_path / "earshot.yaml", models=models)
    result = run_earshot(
        "run", "--config", str(config), "--demo", "--fast", env=agent_home(tmp_path / "home")
    )
    return result.returncode, result.stdout, result.stderr


def test_run_refuses_an_edited_base_model_with_exit_5_before_starting(tmp_path):
    edited = edited_copy(
        SHIPPED_BASE_MODEL, tmp_path / "base.npz",
        lambda m: m["architecture"]["args"].update(channels=1e6),
    )  # fmt: skip
    code, stdout, stderr = run_with_models(tmp_path, base=str(edited))
    assert code == 5, stderr
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("earshot: error:")]
    assert line == (
        f"earshot: error: {edited}: manifest architecture.args.channels: got float 1000000.0, "
        "expected an integer in [1, 512]"
    )
    assert '"state"' not in stdout  # nothing started


def test_run_refuses_a_base_model_without_head_labels_with_exit_5(tmp_path):
    edited = edited_copy(SHIPPED_BASE_MODEL, tmp_path / "base.npz", lambda m: m.pop("extra"))
    code, _, stderr = run_with_models(tmp_path, base=str(edited))
    assert code == 5, stderr
    assert "Traceback" not in stderr and "KeyError" not in stderr
    assert f"{edited}: manifest extra: required key is missing" in stderr


def test_run_refuses_a_wake_word_model_calibrated_on_no_audio_with_exit_5(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    edited = edited_copy(
        shipped_detector("computer"), models / "computer.npz", set_extra(calibration_hours=0)
    )
    code, stdout, stderr = run_with_models(tmp_path, directory=str(models))
    assert code == 5, stderr
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("earshot: error:")]
    assert str(edited) in line and "extra.calibration_hours: got int 0" in line
    assert '"state"' not in stdout


def test_the_shipped_models_meet_their_schemas():
    dscnn = BaseModel.load(SHIPPED_BASE_MODEL)
    assert dscnn.manifest is not None and dscnn.commands_head() is not None
    imported = SpeechEmbedding.load(SHIPPED_EMBEDDING)
    assert imported.manifest is not None
    base = load_base()  # the default: the shipped wake word is trained on it
    assert base.sha256 == imported.sha256
    wake = WakeWordModel.load(shipped_detector("computer"), base_sha256=base.sha256)
    assert wake.calibration_hours > 0
    assert wake.base == base.name and wake.context == context_record(base.geometry)
    assert wake.head.inputs == base.geometry.context_windows * base.dim
