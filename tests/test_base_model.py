"""The base model: save/load, inference export, labels, and a tiny end-to-end train + eval."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from kernels.errors import ModelError
from kernels.network import run_numpy
from models.base.architecture import BaseConfig, build_base, build_head
from models.base.model import COMMANDS_HEAD, BaseModel
from models.base.training import command_labels
from models.nn.checkpoint import MANIFEST_KEY, load_model
from models.paths import SHIPPED_BASE_MODEL
from models.speech.corpus import SILENCE, SPEECH, Corpus
from models.speech.dataset import SPEECH_COMMANDS_LABELS
from tests.conftest import require, run_earshot

SMALL = BaseConfig(first_channels=8, channels=16, blocks=1, embedding_dim=12)


def random_model(seed=0):
    rng = np.random.default_rng(seed)
    model = BaseModel(SMALL, build_base(SMALL, rng))
    # non-trivial batch-norm statistics, as after training
    for layer in model.base.layers:
        if "running_var" in layer.buffers:
            layer.buffers["running_mean"][:] = rng.normal(
                0, 0.1, layer.buffers["running_mean"].shape
            )
            layer.buffers["running_var"][:] = rng.uniform(
                0.5, 2, layer.buffers["running_var"].shape
            )
    model.heads[COMMANDS_HEAD] = build_head(SMALL.embedding_dim, 12, rng)
    model.head_labels[COMMANDS_HEAD] = list(SPEECH_COMMANDS_LABELS)
    return model


def test_save_and_load_round_trip(tmp_path):
    model = random_model()
    features = np.random.default_rng(1).normal(-6, 2, (5, 97, 40)).astype(np.float16)
    manifest = model.save(tmp_path / "base.npz", recipe={"seed": 1}, metrics={"accuracy": 0.5})
    loaded = BaseModel.load(tmp_path / "base.npz")
    assert loaded.config == SMALL
    assert loaded.head_labels == model.head_labels
    assert loaded.manifest == manifest
    np.testing.assert_array_equal(loaded.embed(features), model.embed(features))
    _, raw_manifest = load_model(tmp_path / "base.npz", kind="base")
    assert raw_manifest.architecture["heads"] == {"commands": 12}


def test_inference_network_matches_the_training_path():
    model = random_model(2)
    x = np.random.default_rng(3).normal(-6, 2, (4, 97, 40)).astype(np.float32)
    logits = model.heads[COMMANDS_HEAD].forward(model.embed(x), training=False)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    network = model.inference_network(COMMANDS_HEAD)
    np.testing.assert_allclose(run_numpy(network, x[..., None]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        run_numpy(model.inference_network(), x[..., None]), model.embed(x), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ModelError, match="has heads"):
        model.inference_network("wake")


def test_command_labels_map_words_to_the_twelve_classes():
    names = ("yes", "zero", "go", "hello", SILENCE, SPEECH)
    corpus = Corpus(np.zeros((6, 1, 1), np.float16), np.arange(6, dtype=np.int16), names)
    mapped = [SPEECH_COMMANDS_LABELS[i] for i in command_labels(corpus)]
    assert mapped == ["yes", "_unknown_", "go", "_unknown_", "_silence_", "_unknown_"]


def test_loading_a_foreign_architecture_is_refused(tmp_path):
    from models.nn.checkpoint import Manifest, save_model

    save_model(
        tmp_path / "m.npz", {"w": np.zeros(2)}, Manifest("base", {"name": "transformer"}, [])
    )
    with pytest.raises(ModelError, match="architecture 'transformer' is unknown"):
        BaseModel.load(tmp_path / "m.npz")


def edited_shipped_base(path, edit) -> None:
    """The shipped base model's weights at ``path`` under its manifest changed by ``edit``."""
    with np.load(SHIPPED_BASE_MODEL, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = json.loads(str(arrays.pop(MANIFEST_KEY)))
    edit(manifest)
    np.savez(path, **arrays, **{MANIFEST_KEY: np.array(json.dumps(manifest))})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["architecture"]["args"].update(channels=1e6),
            r"manifest architecture.args.channels: got float 1000000.0, expected an integer "
            r"in \[1, 512\]",
        ),
        (
            lambda m: m["architecture"]["args"].update(embedding_dim=10**6),
            r"manifest architecture.args.embedding_dim: got int 1000000, expected an integer "
            r"in \[1, 1024\]",
        ),
        (
            lambda m: m["architecture"]["args"].update(channels="64"),
            r"manifest architecture.args.channels: got str '64', expected an integer",
        ),
        (lambda m: m.pop("extra"), r"manifest extra: required key is missing"),
        (lambda m: m["extra"].clear(), r"manifest extra.head_labels: required key is missing"),
        (
            lambda m: m["architecture"]["heads"].update(commands=13),
            r"manifest architecture.heads: got \{'commands': 13\}, expected \{'commands': 12\}",
        ),
        (
            lambda m: m["architecture"]["args"].update(channels=32),
            r"weights do not fit the manifest's architecture",
        ),
    ],
    ids=["million-channels", "huge-embedding", "text", "no-extra", "no-head-labels",
         "heads-disagree", "weights-disagree"],
)  # fmt: skip
def test_an_edited_manifest_is_refused_before_the_network_is_built(tmp_path, edit, message):
    path = tmp_path / "base.npz"
    edited_shipped_base(path, edit)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {message}"):
        BaseModel.load(path)


def test_tiny_model_trains_and_evaluates_end_to_end(tmp_path):
    for binary in ("espeak-ng", "flite", "text2wave"):
        require(shutil.which(binary) is not None, f"{binary} is not installed")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "base.npz"
    trained = run_earshot(
        "train", "base", "--out", str(out), "--words", "12", "--renditions", "3,1,1",
        "--copies", "1", "--epochs", "2", env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["epochs"] == 2
    assert "epoch   2" in trained.stderr
    model = BaseModel.load(out)
    assert model.manifest.recipe["words"][:2] == ["yes", "no"]
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == model.manifest.sha256
    png = tmp_path / "confusion.png"
    evaluated = run_earshot(
        "eval", "base", "--model", str(out), "--fsdd", str(tmp_path / "no-fsdd"),
        "--confusion", str(png), "--json", env=env,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert 0.0 <= result["commands_test_accuracy"] <= 1.0
    assert "not found" in result["fsdd"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_base_model_runs_on_the_wgpu_kernels(gpu):
    from kernels.gpu_network import WgpuNetwork

    model = random_model(4)
    full = BaseModel(BaseConfig(), build_base(BaseConfig(), np.random.default_rng(5)))
    x = np.random.default_rng(6).normal(-6, 2, (7, 97, 40, 1)).astype(np.float32)
    for network in (model.inference_network(COMMANDS_HEAD), full.inference_network()):
        on_gpu = WgpuNetwork(network, gpu, batch_size=4).run(x)
        np.testing.assert_allclose(on_gpu, run_numpy(network, x), rtol=1e-4, atol=1e-4)


def test_shipped_model_loads_and_fits_the_budget():
    from models.paths import SHIPPED_BASE_MODEL

    model = BaseModel.load(SHIPPED_BASE_MODEL)  # checks sha256 and the live front end
    network = model.inference_network(COMMANDS_HEAD)
    trainable = sum(p.size for _, p, _ in model.base.parameters())
    assert trainable <= 100_000
    assert network.flops() <= 10_000_000
    assert model.head_labels[COMMANDS_HEAD] == list(SPEECH_COMMANDS_LABELS)
    # `earshot train base` with its defaults reproduces the shipped model's corpus exactly
    from models.speech.corpus import CorpusRecipe
    from models.speech.dataset import load_vocabulary

    assert CorpusRecipe.from_dict(model.manifest.recipe) == CorpusRecipe(words=load_vocabulary())
    probabilities = run_numpy(network, np.full((2, 97, 40, 1), -13.8, np.float32))
    assert probabilities.shape == (2, 12)
    assert SPEECH_COMMANDS_LABELS[int(np.argmax(probabilities[0]))] == "_silence_"
