"""Model files: round trip, and refusal of corrupt, truncated or mismatched files."""

import numpy as np
import pytest

from dsp.constants import FrontEndSettings
from kernels.errors import ModelError
from models.nn.checkpoint import Manifest, arrays_digest, load_model, save_model

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
