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
from models.base.model import BaseModel
from models.nn.checkpoint import MANIFEST_KEY
from models.paths import SHIPPED_BASE_MODEL
from models.wake.context import CONTEXT_WINDOWS
from models.wake.model import WakeWordModel, shipped_detector
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import write_config

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
            set_extra(calibration_episodes=[2981] * 11),
            r"manifest extra.calibration_episodes: lengths add up to 32791, expected 35772",
        ),
        (
            lambda m: m["architecture"]["args"].update(hidden=33),
            r"head/0.weight has shape \(288, 32\) \(float32\), expected floats of shape "
            r"\(288, 33\)",
        ),
        (
            lambda m: m["architecture"]["context"].update(windows=4),
            r"manifest architecture.context.windows: got int 4, expected 3",
        ),
        (lambda m: m.update(labels=["_other_"]), r"manifest labels: got list of 1 items"),
    ],
    ids=["zero-hours", "negative-hours", "no-duration", "name-not-text", "no-episodes",
         "episodes-disagree", "hidden-disagrees", "other-context", "one-label"],
)  # fmt: skip
def test_an_edited_wake_word_manifest_is_refused_naming_the_file_and_field(tmp_path, edit, message):
    path = edited_copy(shipped_detector("computer"), tmp_path / "computer.npz", edit)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {message}"):
        WakeWordModel.load(path)


def test_a_wake_word_model_of_another_format_still_says_how_to_remake_it(tmp_path):
    path = edited_copy(shipped_detector("computer"), tmp_path / "c.npz", set_extra(wake_format=2))
    with pytest.raises(ModelError, match=r"wake-word format 2, .*run `earshot train computer`"):
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
    base = BaseModel.load(SHIPPED_BASE_MODEL)
    assert base.manifest is not None
    wake = WakeWordModel.load(shipped_detector("computer"), base_sha256=base.manifest.sha256)
    assert wake.calibration_hours > 0
    assert wake.head.inputs == CONTEXT_WINDOWS * base.config.embedding_dim
