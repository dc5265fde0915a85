"""Model files: weights plus a manifest that says what they are and how they were made.

A model file is one ``.npz`` holding named arrays and a JSON manifest: its kind, the architecture
and its arguments, the front-end settings it was trained with, class labels, the training recipe
and seed, metrics, and the sha256 of the arrays. Loading checks the checksum and compares the
front-end settings with the live front end, and refuses a mismatch with a `ModelError` naming the
file and what differs, so a model never runs on features it was not trained for.

Only the weights are checksummed: the manifest is checked against `MANIFEST_SCHEMA` (types and
bounds, `models.nn.manifest`) when it is read, and each model module checks the fields of its
kind the same way before it builds anything from them.
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
from models.nn.manifest import (
    ANY,
    ListOf,
    MapOf,
    Number,
    Record,
    Text,
    validate_manifest,
)

FORMAT_VERSION = 1
MANIFEST_KEY = "__manifest__"
MAX_LABELS = 100_000
"""Most class labels a manifest may list."""
MAX_ENTRIES = 10_000
"""Most entries of a manifest's ``recipe``, ``metrics`` or ``extra``."""

SHA256 = Text(
    min_chars=64, max_chars=64, pattern="[0-9a-f]{64}", meaning="a sha256 in lowercase hex"
)
"""A checksum as manifests store it."""

_SAMPLES = Number(1, 10_000_000, integer=True)
_HZ = Number(0, 10_000_000)
FRONT_END_SCHEMA = Record(
    {
        "sample_rate_hz": _SAMPLES,
        "window_samples": _SAMPLES,
        "hop_samples": _SAMPLES,
        "n_fft": _SAMPLES,
        "n_mels": Number(1, 10_000, integer=True),
        "f_min_hz": _HZ,
        "f_max_hz": _HZ,
        "log_floor": Number(0, 1, low_open=True),
    },
    optional=frozenset(FrontEndSettings.__dataclass_fields__),
)
"""`FrontEndSettings` as a manifest stores it (fields left out take the live values)."""

MANIFEST_SCHEMA = Record(
    {
        "kind": Text(max_chars=40),
        "architecture": Record({"name": Text()}, optional=frozenset({"name"}), open=True),
        "labels": ListOf(Text(min_chars=0), MAX_LABELS),
        "front_end": FRONT_END_SCHEMA,
        "sha256": SHA256,
        "recipe": MapOf(ANY, MAX_ENTRIES),
        "metrics": MapOf(ANY, MAX_ENTRIES),
        "extra": MapOf(ANY, MAX_ENTRIES),
        "format_version": Number(1, 1_000_000, integer=True),
    }
)
"""What every manifest holds, whatever its kind; each kind's loader checks more."""


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
        Missing, unreadable, truncated or corrupt file; a manifest that breaks `MANIFEST_SCHEMA`;
        wrong kind; checksum mismatch; front-end settings that differ from ``front_end``. The
        message names the file and the problem (and the manifest field).
    """
    path = Path(path)
    arrays, manifest = _read(path)
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
    except (ValueError, RecursionError) as err:
        # ValueError covers JSONDecodeError and integers longer than Python converts.
        raise ModelError(f"{path}: manifest is not valid JSON ({err})") from err
    version = fields.get("format_version") if isinstance(fields, dict) else None
    if isinstance(version, int) and version != FORMAT_VERSION:
        raise ModelError(f"{path}: model format {version}, this earshot reads {FORMAT_VERSION}")
    validate_manifest(path, fields, MANIFEST_SCHEMA)
    return arrays, Manifest(**fields)


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
