"""Choose a base by name or file: the imported speech embedding by default, or the own DS-CNN.

``models.base`` in the config is one of `BASES` (the shipped files) or a path to a base file:
one written by ``earshot train base`` (a DS-CNN) or by ``earshot model import`` (an imported
embedding network). Every head records the checksum of the base it was trained on and is refused
on another one.
"""

from __future__ import annotations

from pathlib import Path

from models.base.geometry import Embedder
from models.base.model import ARCHITECTURE_NAME, BaseModel
from models.base.speech_embedding import BASE_NAME, SpeechEmbedding
from models.nn.checkpoint import load_model
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING

BASES = {BASE_NAME: SHIPPED_EMBEDDING, ARCHITECTURE_NAME: SHIPPED_BASE_MODEL}
"""The shipped bases by name."""
DEFAULT_BASE = BASE_NAME
"""The base used when the config names none: the speech embedding, trained on real speech."""


def base_path(spec: str | None) -> Path:
    """The file a ``models.base`` value names (a shipped base's name, or a path)."""
    spec = spec or DEFAULT_BASE
    return BASES[spec] if spec in BASES else Path(spec).expanduser()


def load_base(spec: str | None = None) -> Embedder:
    """The base a ``models.base`` value names; see the module's docstring.

    Raises
    ------
    ModelError
        The file is missing, corrupt, or neither a DS-CNN nor an imported network.
    """
    path = base_path(spec)
    _, manifest = load_model(path, kind="base", front_end=None)
    if manifest.architecture.get("name") == ARCHITECTURE_NAME:
        return BaseModel.load(path)
    return SpeechEmbedding.load(path)
