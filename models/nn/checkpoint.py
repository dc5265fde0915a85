"""Model files: weights plus a manifest that says what they are and how they were made.

A model file is one ``.npz`` holding named arrays and a JSON manifest: its kind, the architecture
and its arguments, the front-end settings it was trained with, class labels, the training recipe
and seed, metrics, and the sha256 of the arrays. Loading checks the checksum and compares the
front-end settings with the live front end, and refuses a mismatch with a `ModelError` naming the
file and what differs, so a model never runs on features it was not trained for.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsp.constants import LIVE_FRONT_END, FrontEndSettings
from kernels.errors import ModelError

FORMAT_VERSION = 1
MANIFEST_KEY = "__manifest__"


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a model file holds.

    Attributes
    ----------
    kind : str
        ``"base"`` (embedding network), ``"head"`` (a head on a base) or ``"training"`` (a
        resumable training state).
    architecture : dict
        ``{"name": ..., "args": {...}}``: enough to rebuild the network.
    labels : list of str
        Output classes, in order.
    front_end : dict
        `FrontEndSettings` the features were computed with.
    sha256 : str
        `arrays_digest` of the weights.
    recipe : dict
        How the training data was made (recipe and seed), for reproduction.
    metrics : dict
        Figures measured when the model was saved.
    extra : dict
        Anything else the kind needs (e.g. the base model a head belongs to).
    """

    kind: str
    architecture: dict[str, Any]
    labels: list[str]
    front_end: dict[str, Any] = field(default_factory=LIVE_FRONT_END.as_dict)
    sha256: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest as indented JSON."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"manifest value {value!r} of type {type(value).__name__} is not JSON")


def save_model(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], manifest: Manifest
) -> Manifest:
    """Write ``arrays`` and ``manifest`` (with its checksum filled in) atomically to ``path``.

    Returns
    -------
    Manifest
        The manifest as written, ``sha256`` included.
    """
    path = Path(path)
    if MANIFEST_KEY in arrays:
        raise ModelError(f"{path}: array name {MANIFEST_KEY!r} is reserved")
    written = Manifest(**{**manifest.__dict__, "sha256": arrays_digest(arrays)})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload: dict[str, Any] = {**arrays, MANIFEST_KEY: np.array(written.to_json())}
    with partial.open("wb") as f:
        np.savez(f, **payload)
    partial.replace(path)
    return written


def load_model(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    front_end: FrontEndSettings | None = LIVE_FRONT_END,
) -> tuple[dict[str, np.ndarray], Manifest]:
    """Read a model file and check it.

    Parameters
    ----------
    path : path
        The ``.npz`` model file.
    kind : str, optional
        Required `Manifest.kind`.
    front_end : FrontEndSettings or None
        Front end the model must match; None skips the check (for inspection tools).

    Raises
    ------
    ModelError
        Missing, unreadable, truncated or corrupt file; wrong kind; checksum mismatch; front-end
        settings that differ from ``front_end``. The message names the file and the problem.
    """
    path = Path(path)
    arrays, manifest = _read(path)
    if manifest.format_version != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format {manifest.format_version}, this earshot reads {FORMAT_VERSION}"
        )
    if kind is not None and manifest.kind != kind:
        raise ModelError(f"{path}: a {manifest.kind!r} model, expected a {kind!r} model")
    actual = arrays_digest(arrays)
    if actual != manifest.sha256:
        raise ModelError(
            f"{path}: checksum mismatch (weights sha256 {actual[:12]}..., manifest says "
            f"{manifest.sha256[:12]}...): the file is corrupt or was edited"
        )
    if front_end is not None:
        differences = front_end.differences(_front_end(path, manifest))
        if differences:
            raise ModelError(
                f"{path}: trained with other front-end settings than the live ones "
                f"(live != model): {'; '.join(differences)}"
            )
    return arrays, manifest


def _read(path: Path) -> tuple[dict[str, np.ndarray], Manifest]:
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ModelError(f"{path}: not a readable model file ({err})") from err
    if MANIFEST_KEY not in arrays:
        raise ModelError(f"{path}: not an earshot model file (no manifest)")
    try:
        fields = json.loads(str(arrays.pop(MANIFEST_KEY)))
        return arrays, Manifest(**fields)
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelError(f"{path}: manifest is invalid ({err})") from err


def _front_end(path: Path, manifest: Manifest) -> FrontEndSettings:
    try:
        return FrontEndSettings(**manifest.front_end)
    except TypeError as err:
        raise ModelError(f"{path}: manifest front_end is invalid ({err})") from err


def split_rows(data: np.ndarray, lengths: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Undo a concatenation along the first axis: consecutive pieces of ``lengths`` rows.

    Ragged lists (calibration episodes, takes, clips) are stored as one array and their lengths.
    """
    bounds = np.cumsum([0, *(int(n) for n in lengths)])
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
