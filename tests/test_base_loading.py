"""`models.base.loading.load_base`: the imported embedding by default, the DS-CNN by name, a file.

Every other spec, a file that is no base (a wake-word model, a missing or unreadable file) is a
`ModelError` naming the file.
"""

import re
from pathlib import Path

import pytest

from kernels.errors import ModelError
from models.base.loading import BASES, DEFAULT_BASE, base_path, load_base
from models.base.model import DSCNN_GEOMETRY, BaseModel
from models.base.speech_embedding import EMBEDDING_GEOMETRY, SpeechEmbedding
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING
from models.wake.model import WakeWordModel
from tests.test_detector import random_model


@pytest.fixture(scope="module")
def imported() -> SpeechEmbedding:
    base = load_base()
    assert isinstance(base, SpeechEmbedding)
    return base


@pytest.fixture(scope="module")
def dscnn() -> BaseModel:
    base = load_base("dscnn")
    assert isinstance(base, BaseModel)
    return base


def test_the_default_base_is_the_imported_speech_embedding(imported):
    assert DEFAULT_BASE == "speech_embedding"
    assert imported.name == "speech_embedding"
    assert imported.geometry == EMBEDDING_GEOMETRY
    assert imported.manifest is not None and imported.sha256 == imported.manifest.sha256
    assert len(imported.sha256) == 64 and imported.dim == 96
    for spec in (None, "", "speech_embedding"):
        again = load_base(spec)
        assert isinstance(again, SpeechEmbedding) and again.sha256 == imported.sha256, spec
    assert base_path(None) == SHIPPED_EMBEDDING == BASES["speech_embedding"]


def test_dscnn_names_the_shipped_ds_cnn(dscnn):
    assert dscnn.name == "dscnn" and dscnn.geometry == DSCNN_GEOMETRY
    assert dscnn.manifest is not None and dscnn.sha256 == dscnn.manifest.sha256
    assert dscnn.sha256 == BaseModel.load(SHIPPED_BASE_MODEL).sha256
    assert base_path("dscnn") == SHIPPED_BASE_MODEL


def test_the_two_bases_differ(imported, dscnn):
    assert imported.sha256 != dscnn.sha256
    assert imported.geometry != dscnn.geometry


@pytest.mark.parametrize(
    ("source", "kind"),
    [(SHIPPED_EMBEDDING, SpeechEmbedding), (SHIPPED_BASE_MODEL, BaseModel)],
    ids=["speech_embedding", "dscnn"],
)
def test_a_path_to_either_base_file_loads_that_base(tmp_path, source, kind):
    copy = tmp_path / "my base.npz"
    copy.write_bytes(source.read_bytes())
    base = load_base(str(copy))
    assert type(base) is kind
    assert base.sha256 == load_base(str(source)).sha256
    # A path is taken as it is written, ``~`` expanded.
    assert base_path(str(copy)) == copy
    assert base_path("~/base.npz") == Path.home() / "base.npz"


def wake_word_file(path: Path, base) -> Path:
    """A (random) wake-word model trained "on" ``base``, saved at ``path``."""
    random_model(base, "seven").save(path, recipe={}, metrics={}, curve={})
    return path


def test_a_wake_word_model_file_is_no_base(tmp_path, imported):
    path = wake_word_file(tmp_path / "seven.npz", imported)
    assert WakeWordModel.load(path, base_sha256=imported.sha256).base == "speech_embedding"
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: a 'wake' model, expected a "
                                         "'base' model"):  # fmt: skip
        load_base(str(path))


@pytest.mark.parametrize("content", [None, b"not a model file"], ids=["missing", "garbage"])
def test_a_missing_or_unreadable_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "base.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: "):
        load_base(str(path))


def test_an_unknown_name_is_taken_for_a_missing_file():
    with pytest.raises(ModelError, match=r"^dscnn2: no such model file"):
        load_base("dscnn2")
