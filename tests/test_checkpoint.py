"""Model files: round trip, and refusal of corrupt, truncated, edited or mismatched files."""

import json
import re

import numpy as np
import pytest

from dsp.constants import FrontEndSettings
from kernels.errors import ModelError
from models.nn.checkpoint import MANIFEST_KEY, Manifest, arrays_digest, load_model, save_model

ARRAYS = {
    "conv.weight": np.random.default_rng(0).standard_normal((10, 4, 1, 8)).astype(np.float32),
    "bn.running_var": np.ones(8, np.float32),
    "step": np.array(12, np.int64),
}
MANIFEST = Manifest(
    kind="base",
    architecture={"name": "dscnn", "args": {"channels": 8}},
    labels=["yes", "no"],
    recipe={"seed": 3},
    metrics={"accuracy": 0.9},
)


def test_round_trip_keeps_arrays_and_manifest(tmp_path):
    path = tmp_path / "model.npz"
    written = save_model(path, ARRAYS, MANIFEST)
    assert written.sha256 == arrays_digest(ARRAYS)
    arrays, manifest = load_model(path, kind="base")
    assert manifest == written
    assert set(arrays) == set(ARRAYS)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(arrays[name], array)
        assert arrays[name].dtype == array.dtype


def test_digest_depends_on_names_values_dtypes_and_shapes():
    base = arrays_digest(ARRAYS)
    assert arrays_digest(dict(ARRAYS)) == base
    changed = [
        {**ARRAYS, "step": np.array(13, np.int64)},
        {**ARRAYS, "step": np.array(12, np.int32)},
        {**ARRAYS, "bn.running_var": np.ones((1, 8), np.float32)},
        {("renamed" if k == "step" else k): v for k, v in ARRAYS.items()},
    ]
    assert len({arrays_digest(a) for a in changed} | {base}) == 5


def test_edited_weights_fail_the_checksum(tmp_path):
    path = tmp_path / "model.npz"
    written = save_model(path, ARRAYS, MANIFEST)
    tampered = {**ARRAYS, "step": np.array(99, np.int64)}
    np.savez(path, **tampered, __manifest__=np.array(written.to_json()))
    with pytest.raises(ModelError, match=f"{path}: checksum mismatch"):
        load_model(path)


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "model.npz"
    save_model(path, ARRAYS, MANIFEST)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelError, match=f"{path}: not a readable model file"):
        load_model(path)


def test_missing_foreign_and_wrong_kind_files(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ModelError, match="no manifest"):
        load_model(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a readable model file"):
        load_model(text)
    path = tmp_path / "model.npz"
    save_model(path, ARRAYS, MANIFEST)
    with pytest.raises(ModelError, match="a 'base' model, expected a 'head' model"):
        load_model(path, kind="head")


def test_front_end_mismatch_names_every_difference(tmp_path):
    path = tmp_path / "model.npz"
    other = FrontEndSettings(n_mels=32, hop_samples=320)
    save_model(path, ARRAYS, Manifest(**{**MANIFEST.__dict__, "front_end": other.as_dict()}))
    with pytest.raises(
        ModelError, match=r"front-end settings.*hop_samples: 160 != 320; n_mels: 40 != 32"
    ):
        load_model(path)
    arrays, manifest = load_model(path, front_end=None)  # inspection still works
    assert manifest.front_end["n_mels"] == 32


def test_reserved_name_is_refused(tmp_path):
    with pytest.raises(ModelError, match="reserved"):
        save_model(tmp_path / "m.npz", {"__manifest__": np.zeros(1)}, MANIFEST)


def _rewrite_manifest(path, text: str) -> None:
    """Replace the manifest of the model file at ``path`` by ``text``, keeping its arrays."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != MANIFEST_KEY}
    np.savez(path, **arrays, **{MANIFEST_KEY: np.array(text)})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"sha256": 5}, r"manifest sha256: got int 5, expected a sha256 in lowercase hex"),
        ({"kind": ["base"]}, r"manifest kind: got list of 1 items, expected text of 1 to 40"),
        ({"labels": "yes"}, r"manifest labels: got str 'yes', expected a list of 0 to 100000"),
        ({"labels": ["yes", 2]}, r"manifest labels\[1\]: got int 2, expected text"),
        (
            {"front_end": {"n_mels": "40"}},
            r"manifest front_end.n_mels: got str '40', expected an integer in \[1, 10000\]",
        ),
        ({"architecture": None}, r"manifest architecture: got NoneType None, expected a mapping"),
        ({"extra": []}, r"manifest extra: got list of 0 items, expected a mapping of at most"),
        ({"format_version": True}, r"manifest format_version: got bool True, expected an integer"),
        ({"surprise": 1}, r"manifest surprise: unknown key; allowed keys are \['architecture'"),
    ],
)
def test_manifest_fields_are_checked_naming_the_file_and_field(tmp_path, edit, message):
    path = tmp_path / "model.npz"
    written = save_model(path, ARRAYS, MANIFEST)
    _rewrite_manifest(path, json.dumps({**json.loads(written.to_json()), **edit}))
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {message}"):
        load_model(path, kind="base")


def test_a_missing_manifest_field_is_named(tmp_path):
    path = tmp_path / "model.npz"
    fields = json.loads(save_model(path, ARRAYS, MANIFEST).to_json())
    del fields["labels"]
    _rewrite_manifest(path, json.dumps(fields))
    with pytest.raises(ModelError, match=f"{re.escape(str(path))}: manifest labels: required key"):
        load_model(path)


@pytest.mark.parametrize(
    "text",
    ['{"kind": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000, '["base"]', "null", "{"],
    ids=["5000-digit-int", "deep-nesting", "a-list", "null", "broken"],
)
def test_a_manifest_that_is_not_a_json_mapping_is_a_model_error(tmp_path, text):
    path = tmp_path / "model.npz"
    save_model(path, ARRAYS, MANIFEST)
    _rewrite_manifest(path, text)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: manifest"):
        load_model(path)
