"""Property-based tests of the parsers that read untrusted input.

- the config loader (`agent.settings.load_settings`, `parse_settings`): random YAML text, bytes
  and documents, and mutations of the shipped config, give a `Settings` or a one-line
  `ConfigError` whose message names the file and a field path, never another exception; a key
  written twice is refused naming it and both lines, and credentials in the endpoint's URL are
  refused without being shown;
- the audio reader (`dsp.audio.load_audio`): random bytes and valid files of many formats that are
  then truncated, overwritten or given absurd header fields give a finite float32 1-D array or an
  `AudioError` naming the file, never another exception, and run in a child process whose address
  space is capped so that a header declaring gigabytes cannot be believed;
- the model loaders (`models.base.model.BaseModel.load`, `models.wake.model.WakeWordModel.load`):
  the shipped models with mutated manifests give a working model or a `ModelError` naming the
  file, never another exception, in a child process whose address space is capped so that an
  architecture argument of a million channels cannot be built;
- the endpoint's reply parser (`agent.egress.wire.parse_response`), the reference receiver's upload
  parsers and `agent.capture.sources.StdinSource` on random bytes.

Every property runs a fixed number of derandomized cases (``max_examples``, the same on every run);
the number that ran is printed (``pytest -s``) and recorded as the ``cases`` user property.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import math
import os
import re
import string
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np
import pytest
import soundfile
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agent.capture.sources import StdinSource
from agent.egress.decoder import BadRequest, parse_multipart, parse_pcm, parse_wav
from agent.egress.wire import ERROR_TEXT_CHARS, Response, multipart_body, parse_response, wav_header
from agent.settings import Settings, default_config_path, load_settings, parse_settings
from agent.settings.schema import show
from dsp.audio import load_audio
from kernels.errors import AudioError, ConfigError, ModelError
from models.base.model import BaseModel
from models.nn.checkpoint import MANIFEST_KEY
from models.paths import SHIPPED_BASE_MODEL
from models.wake.model import WakeWordModel, shipped_detector

REPO = Path(__file__).resolve().parent.parent

CASES: Counter[str] = Counter()
"""Examples each property ran, by property name."""


def fuzz(max_examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings of every property here: fixed count, derandomized, no database."""
    return hypothesis_settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def report(name: str, record_property: Callable[[str, object], None]) -> None:
    """Print and record how many cases a property ran (and how many were refused)."""
    ran, refused = CASES[name], CASES[name + " (refused)"]
    print(f"\n{name}: {ran} cases", f"({refused} refused with an error)" if refused else "")
    record_property("cases", ran)
    if refused:
        record_property("refused", refused)
    assert ran > 0


# ---------------------------------------------------------------------------------------------
# Config loader
# ---------------------------------------------------------------------------------------------


def _schema_names(cls: Any, seen: set[str]) -> set[str]:
    """Every field name of the dataclass ``cls`` and of the dataclasses inside it."""
    hints = get_type_hints(cls)
    for spec in fields(cls):
        seen.add(spec.name)
        kind = hints[spec.name]
        for inner in (kind, *get_args(kind)):
            if is_dataclass(inner) and isinstance(inner, type):
                _schema_names(inner, seen)
    return seen


def _literal_options(cls: Any, out: set[Any]) -> set[Any]:
    """Every value a ``Literal`` field of the schema allows."""
    hints = get_type_hints(cls)
    for spec in fields(cls):
        kind = hints[spec.name]
        for inner in (kind, *get_args(kind)):
            if get_origin(inner) is Literal:
                out.update(get_args(inner))
            elif is_dataclass(inner) and isinstance(inner, type):
                _literal_options(inner, out)
    return out


SECTIONS = frozenset(spec.name for spec in fields(Settings))
FIELD_NAMES = frozenset(_schema_names(Settings, set()))
_PATH = re.compile(r"[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*")


def check_config_error(err: ConfigError, file: Path | None) -> None:
    """One line naming the file (when there is one), then a field path of the schema."""
    message = str(err)
    assert "\n" not in message, message
    if file is not None:
        assert message.startswith(f"{file}: "), message
        message = message[len(f"{file}: ") :]
        if message.startswith(("cannot read config file", "invalid YAML")):
            return
    if message.startswith("config: "):  # the document itself is not a mapping
        return
    if ": unknown key; allowed keys are " in message:
        # The unknown key itself closes the path; the message lists the schema's keys there.
        allowed = re.search(r": unknown key; allowed keys are (\[[^\]]*\])", message)
        assert allowed is not None, message
        assert set(ast.literal_eval(allowed.group(1))) <= FIELD_NAMES, message
        return
    where = message.split(": ", 1)[0]
    assert _PATH.fullmatch(where), message
    names = set(re.findall(r"[a-z_]+", where))
    assert names <= FIELD_NAMES, message
    assert where.split(".")[0].split("[")[0] in SECTIONS, message


def _default_document() -> dict[str, Any]:
    document = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


DEFAULT_DOCUMENT = _default_document()


def _rich_document() -> dict[str, Any]:
    """The default config with every list and optional section filled in (and valid)."""
    document = copy.deepcopy(DEFAULT_DOCUMENT)
    document["wake_words"].append(
        {"name": "hey-earshot", "phrase": "hey earshot", "recordings": ["a.wav", "~/b.flac"],
         "threshold": 0.6, "verify_speaker": True}
    )  # fmt: skip
    document["commands"] = [
        {"name": "lights-on", "phrase": "turn on the lights", "action": "shell",
         "run": "true", "min_score": 0.4},
        {"name": "stop", "builtin": "stop", "action": "event"},
        {"name": "ask", "phrase": "ask", "action": "forward"},
    ]  # fmt: skip
    document["endpoint"].update(
        {"url": "https://example.com/audio", "token_env": "TOKEN", "kind": "openai-transcription"}
    )
    document["events"]["hooks"] = {"wake": "paplay bell.oga", "error": "logger earshot"}
    document["models"]["directory"] = "models"
    document["privacy"]["debug_audio_dir"] = "/tmp/x"
    document["audio"]["device"] = "USB"
    return document


RICH_DOCUMENT = _rich_document()


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


_NEAR_VALUES = sorted(
    {repr(v): v for v in [*_leaves(RICH_DOCUMENT), *_literal_options(Settings, set())]}.values(),
    key=repr,
)
"""Values valid somewhere in the schema: mutations put them where they are not."""

_EDGE_NUMBERS = [
    0, -1, 1, 2**31, 2**63, -(2**63), 2**64, 10**30, 10**300, 0.0, -0.0, 1e-300, 1e308,
    math.inf, -math.inf, math.nan, 0.5, 0.999, 0.001, 0.0009, 1000.5, 3600.0001,
]  # fmt: skip
_EDGE_TEXTS = [
    "", " ", "\t", "~", "null", "None", "true", "é", "e\u0301", "a" * 61, "_x", "-x", "base",
    "computer", "http://127.0.0.1:8765/audio", "http://example.com/", "https://", "https://[::1",
    "https://h:99999/", "ftp://example.com/", "http://[::1]/", "http://localhost/", "\x00",
    "\U0001f600", "..", "/", "wake_words", "../../etc/passwd",
]  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_EDGE_NUMBERS),
    st.text(max_size=20),
    st.sampled_from(_EDGE_TEXTS),
    st.sampled_from(_NEAR_VALUES),
    # Too long for repr() (Python's 4300-digit limit), so YAML cannot hold them either.
    st.builds(
        lambda digits, sign: sign * 10**digits, st.integers(4300, 5000), st.sampled_from([1, -1])
    ),
)
KEYS = st.one_of(st.sampled_from(sorted(FIELD_NAMES)), st.text(max_size=10), st.integers())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
DOCUMENTS = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(sorted(SECTIONS)), KEYS), VALUES, max_size=5),
    VALUES,
)

# Literal YAML that no dumped document contains: ints beyond Python's 4300-digit str limit,
# nesting deeper than the recursion limit, tags, aliases, odd scalars and broken syntax.
_YAML_LITERALS = [
    "9" * 5000, "-" + "1" * 4301, "0x" + "f" * 4000, "0o" + "7" * 5000, "1e999", "-.inf", ".nan",
    "[" * 500 + "]" * 500, "{a: " * 500 + "1" + "}" * 500, "- " * 500 + "x", "&a [*a]",
    "*undefined", "!!binary aGVsbG8=", "!!python/object:os.system x", "!!set {a, b}",
    "!!timestamp 2020-01-01", "2020-01-01 10:00:00", "!!float x", "!!int x", "!!str 5",
    "!!omap [a: 1]", "!!pairs [a: 1]", "'unterminated", '"\\ud800"', '"\\x00"', "|\n  block",
    "? [a, b]\n  : c", "{", "]", ":", "\t", "@x", "`x", "%YAML 1.1", "---\n---", "...", "~",
    "0b1010", "1_000", "190:20:30", "+.inf", "0.", "yes", "NO", "on", "Off",
]  # fmt: skip


@st.composite
def yaml_texts(draw: st.DrawFn) -> str:
    """YAML text with odd literals placed under real sections and fields."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        literal = draw(st.sampled_from(_YAML_LITERALS))
        if draw(st.booleans()):
            lines.append(f"{section}: {literal}")
        else:
            key = draw(st.sampled_from(sorted(FIELD_NAMES)))
            lines.append(f"{section}:\n  {key}: {literal}")
    return "\n".join(lines) + "\n"


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """The default (or a fuller) config with 1-4 deletions, replacements, insertions or copies."""
    document: Any = copy.deepcopy(draw(st.sampled_from([DEFAULT_DOCUMENT, RICH_DOCUMENT])))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["delete", "replace", "replace", "insert", "duplicate"]))
        value = draw(st.one_of(VALUES, st.sampled_from(_NEAR_VALUES)))
        if not path:
            if operation == "replace":
                document = value
            continue
        parent, last = _at(document, path[:-1]), path[-1]
        target = parent[last]
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = value
        elif operation == "insert" and isinstance(target, dict):
            target[draw(KEYS)] = value
        elif operation == "duplicate" and isinstance(target, list) and target:
            target.append(copy.deepcopy(draw(st.sampled_from(target))))
        else:
            parent[last] = None
    return document


def _load(text: str | bytes, directory: str) -> Path:
    path = Path(directory) / "earshot.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _check_load_settings(path: Path, name: str) -> None:
    CASES[name] += 1
    try:
        result = load_settings(path)
    except ConfigError as err:
        check_config_error(err, path)
        CASES[name + " (refused)"] += 1
    else:
        assert isinstance(result, Settings)


def _check_document(document: Any, directory: str, name: str) -> None:
    """Parse ``document`` directly, then (when YAML can hold it) load it from a file."""
    try:
        parse_settings(document)
    except ConfigError as err:
        check_config_error(err, None)
    try:
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    except ValueError:  # an int too long to convert to text
        CASES[name] += 1
        return
    _check_load_settings(_load(text, directory), name)


def test_config_loader_random_text_and_bytes(record_property):
    """Random unicode, random bytes and odd YAML literals: Settings or a ConfigError."""
    name = "config: random YAML text and bytes"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(600)
        @given(st.one_of(st.text(max_size=300), st.binary(max_size=300), yaml_texts()))
        def run(text: str | bytes) -> None:
            _check_load_settings(_load(text, directory), name)

        run()
    report(name, record_property)


def test_config_loader_random_documents(record_property):
    """Random nested documents dumped as YAML, loaded from a file and parsed directly."""
    name = "config: random YAML documents"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(500)
        @given(DOCUMENTS)
        def run(document: Any) -> None:
            _check_document(document, directory, name)

        run()
    report(name, record_property)


def test_config_loader_mutated_default_config(record_property):
    """Mutations of the shipped config (and of a fuller valid one) written back as YAML."""
    name = "config: mutations of the default config"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(800)
        @given(mutated_documents())
        def run(document: Any) -> None:
            _check_document(document, directory, name)

        run()
    report(name, record_property)
    assert CASES[name + " (refused)"] < CASES[name]  # some mutations are still valid configs


def test_config_schema_parses_the_fuller_document_used_for_mutations():
    assert isinstance(parse_settings(RICH_DOCUMENT), Settings)


# Regression tests of what the properties found.


@pytest.mark.parametrize(
    "literal",
    ["9" * 5000, "[" * 500 + "]" * 500, "{a: " * 500 + "1" + "}" * 500],
    ids=["5000-digit-int", "deep-list", "deep-mapping"],
)
def test_yaml_the_parser_cannot_build_is_a_config_error(tmp_path, literal):
    path = tmp_path / "earshot.yaml"
    path.write_text(f"audio:\n  block_ms: {literal}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: ")


_KEY_LINE = re.compile(r"(?P<indent> *)(?P<dash>- )?(?P<key>[a-z_]+):(?P<rest>( .*)?)")


@st.composite
def duplicated_keys(draw: st.DrawFn) -> tuple[str, str, int]:
    """A valid config as YAML with one key's line written again right after itself.

    Returns the text, the key and the line number (from 1) of its first occurrence. A key that
    opens a list item (``- name: x``) is repeated inside the item (``  name: x``).
    """
    document = draw(st.sampled_from([DEFAULT_DOCUMENT, RICH_DOCUMENT]))
    lines = yaml.safe_dump(document, sort_keys=False, width=10**6).splitlines()
    index = draw(st.sampled_from([i for i, line in enumerate(lines) if _KEY_LINE.fullmatch(line)]))
    match = _KEY_LINE.fullmatch(lines[index])
    assert match is not None
    indent = match["indent"] + ("  " if match["dash"] else "")
    lines.insert(index + 1, f"{indent}{match['key']}:{match['rest']}")
    return "\n".join(lines) + "\n", match["key"], index + 1


def test_config_loader_refuses_every_duplicated_key(record_property):
    """A key written twice in one mapping: refused naming the key and both lines, never kept."""
    name = "config: duplicated keys"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(300)
        @given(duplicated_keys())
        def run(case: tuple[str, str, int]) -> None:
            text, key, line = case
            CASES[name] += 1
            path = _load(text, directory)
            with pytest.raises(ConfigError) as info:
                load_settings(path)
            check_config_error(info.value, path)
            assert f"duplicate key '{key}' (lines {line} and {line + 1})" in str(info.value)
            CASES[name + " (refused)"] += 1

        run()
    report(name, record_property)


_USERINFO_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%"


def test_credentials_in_the_endpoint_url_are_refused_and_never_shown(record_property):
    """``scheme://user:password@host/...``: a ConfigError pointing at token_env and token_file
    that shows neither the user name nor the password."""
    name = "config: credentials in endpoint.url"

    @fuzz(300)
    @given(
        st.sampled_from(["http", "https", "HTTPS"]),
        st.text(_USERINFO_CHARS, min_size=8, max_size=16),
        st.one_of(st.none(), st.text(_USERINFO_CHARS + ":@", min_size=8, max_size=24)),
        st.sampled_from(["127.0.0.1", "localhost", "[::1]", "127.0.0.1:8765", "example.com",
                         "stt.example.org:8443", "10.0.0.2"]),
        st.sampled_from(["", "/", "/audio", "/v1/audio/transcriptions?x=1", "#f"]),
    )  # fmt: skip
    def run(scheme: str, user: str, password: str | None, host: str, tail: str) -> None:
        CASES[name] += 1
        # "Zq" appears nowhere in the message, so neither can a secret that starts with it (a
        # password such as "endpoint" would otherwise be found in the field's name).
        user = "Zq" + user
        password = None if password is None else "Zq" + password
        userinfo = user if password is None else f"{user}:{password}"
        url = f"{scheme}://{userinfo}@{host}{tail}"
        with pytest.raises(ConfigError) as info:
            parse_settings({"endpoint": {"url": url}})
        message = str(info.value)
        check_config_error(info.value, None)
        assert message.startswith("endpoint.url: "), message
        assert "token_env or endpoint.token_file" in message, message
        assert user not in message and (password is None or password not in message), message
        CASES[name + " (refused)"] += 1

    run()
    report(name, record_property)


def test_integers_too_long_to_print_are_shown_by_size():
    huge = 10**5000
    assert show(huge) == "int <about 5001 digits>"
    expected = r"audio\.block_ms: got <about 5001 digits>, expected an integer in \[10, 1000\]"
    with pytest.raises(ConfigError, match=expected):
        parse_settings({"audio": {"block_ms": huge}})
    with pytest.raises(ConfigError, match=r"logging\.level: got int <about 5001 digits>"):
        parse_settings({"logging": {"level": -huge}})


# ---------------------------------------------------------------------------------------------
# Audio reader (run in a child process under an address-space cap)
# ---------------------------------------------------------------------------------------------

AUDIO_MEMORY_HEADROOM = 768 << 20
"""Address space the child may add beyond what it holds after its imports."""
MAX_EXPANSION = 256
"""Samples returned per byte of file at most. A 1 kHz file of 4-bit ADPCM legitimately expands
32-fold when resampled to 16 kHz; FLAC's run-length coding of a constant signal more."""

_FORMATS = [
    ("WAV", "PCM_16", 3), ("WAV", "PCM_24", 3), ("WAV", "PCM_32", 2), ("WAV", "FLOAT", 3),
    ("WAV", "DOUBLE", 2), ("WAV", "PCM_U8", 2), ("WAV", "ULAW", 1), ("WAV", "ALAW", 1),
    ("WAV", "IMA_ADPCM", 2), ("WAV", "MS_ADPCM", 2), ("WAV", "GSM610", 1), ("FLAC", "PCM_16", 3),
    ("FLAC", "PCM_24", 2), ("FLAC", "PCM_S8", 2), ("AIFF", "PCM_16", 2), ("AIFF", "FLOAT", 1),
    ("AU", "PCM_16", 2), ("W64", "PCM_16", 2), ("CAF", "PCM_16", 2), ("RF64", "PCM_16", 2),
    ("OGG", "VORBIS", 2),
]  # fmt: skip
"""(format, subtype, most channels) of the files the mutations start from."""
_RATES = [1000, 8000, 11025, 16000, 22050, 44100, 48000, 96000]
_SIZE_TAGS = [b"RIFF", b"RF64", b"data", b"fmt ", b"fact", b"PEAK", b"ds64", b"FORM", b"COMM",
              b"SSND", b"riff", b"caff", b"desc", b"fLaC", b".snd", b"OggS"]  # fmt: skip
_HUGE_U32 = [0, 1, 2, 0x7FFFF000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
_MAGIC = [b"", b"RIFF\xff\xff\xff\xffWAVE", b"RIFF$\x00\x00\x00WAVEfmt ", b"fLaC\x00\x00\x00\x22",
          b"FORM\x00\x00\x00\x00AIFF", b".snd", b"OggS\x00\x02", b"caff\x00\x01\x00\x00",
          b"RF64\xff\xff\xff\xffWAVEds64", b"ID3\x03\x00"]  # fmt: skip


def _signal(seed: int, frames: int, channels: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros((frames, channels), np.float32)
    x = rng.uniform(-1.0, 1.0, (frames, channels)).astype(np.float32)
    if kind == "loud":
        x *= 4.0  # clipped by integer subtypes, kept by float ones
    elif kind == "nonfinite" and frames:
        x.flat[rng.integers(x.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return x


@st.composite
def audio_files(draw: st.DrawFn) -> bytes:
    """A valid file written by libsndfile, then damaged by 0-3 mutations."""
    fmt, subtype, most_channels = draw(st.sampled_from(_FORMATS))
    channels = draw(st.integers(1, most_channels))
    frames = draw(st.integers(0, 1500))
    # FLAC's frame headers cannot code every rate above 65535 Hz.
    rate = draw(st.one_of(st.sampled_from(_RATES), st.integers(1000, 65535)))
    kind = draw(st.sampled_from(["noise", "noise", "silence", "loud", "nonfinite"]))
    if kind == "nonfinite" and subtype not in ("FLOAT", "DOUBLE"):
        kind = "noise"  # libsndfile's u-law and A-law encoders crash on NaN
    signal = _signal(draw(st.integers(0, 2**32 - 1)), frames, channels, kind)
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format=fmt, subtype=subtype)
    data = bytearray(buffer.getvalue())
    for _ in range(draw(st.integers(0, 3))):
        operation = draw(
            st.sampled_from(["truncate", "overwrite", "size", "size", "field", "wav", "flac"])
        )
        if operation == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif operation == "overwrite" and data:
            offset = draw(st.integers(0, min(len(data), 128) - 1))
            patch = draw(st.binary(min_size=1, max_size=8))
            data[offset : offset + len(patch)] = patch
        elif operation == "size":
            # The 4-byte size after a chunk tag (or the tag's first field), little or big endian.
            found = [i for tag in _SIZE_TAGS if (i := data.find(tag)) >= 0]
            if found:
                at = draw(st.sampled_from(found)) + 4
                order = draw(st.sampled_from(["<I", ">I"]))
                if at + 4 <= len(data):
                    struct.pack_into(order, data, at, draw(st.sampled_from(_HUGE_U32)))
        elif operation == "field" and len(data) >= 8:
            at = draw(st.integers(0, min(len(data), 64) - 4))
            order = draw(st.sampled_from(["<I", ">I", "<H", ">H"]))
            value = draw(st.sampled_from(_HUGE_U32)) & (0xFFFF if order.endswith("H") else ~0)
            struct.pack_into(order, data, at, value)
        elif operation == "wav" and (fmt_at := data.find(b"fmt ")) >= 0:
            # channels (u16), sample rate (u32), byte rate (u32), block align (u16), bits (u16)
            offset, order = draw(
                st.sampled_from([(10, "<H"), (12, "<I"), (16, "<I"), (20, "<H"), (22, "<H")])
            )
            value = draw(st.sampled_from([0, 1, 2, 3, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            if fmt_at + offset + struct.calcsize(order) <= len(data):
                mask = 0xFFFF if order == "<H" else 0xFFFFFFFF
                struct.pack_into(order, data, fmt_at + offset, value & mask)
        elif operation == "flac" and data[:4] == b"fLaC" and len(data) >= 26:
            # STREAMINFO bytes 18..25: rate (20 bits), channels-1 (3), bits-1 (5), frames (36).
            packed = int.from_bytes(data[18:26], "big")
            shift, width = draw(st.sampled_from([(44, 20), (41, 3), (36, 5), (0, 36)]))
            value = draw(st.sampled_from([0, 1, 2**32, (1 << width) - 1])) & ((1 << width) - 1)
            packed = (packed & ~(((1 << width) - 1) << shift)) | (value << shift)
            data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


RANDOM_AUDIO_BYTES = st.builds(
    lambda magic, tail: magic + tail, st.sampled_from(_MAGIC), st.binary(max_size=2048)
)


def check_load_audio(data: bytes, directory: str, name: str) -> None:
    """``load_audio`` gives finite mono float32, at most MAX_EXPANSION samples a byte, or an
    AudioError naming the file."""
    CASES[name] += 1
    path = Path(directory) / "fuzz.audio"
    path.write_bytes(data)
    try:
        samples = load_audio(path)
    except AudioError as err:
        assert str(path) in str(err), str(err)
        CASES[name + " (refused)"] += 1
        return
    assert isinstance(samples, np.ndarray)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 1 <= samples.size <= MAX_EXPANSION * len(data), (samples.size, len(data))
    assert np.all(np.isfinite(samples))


def audio_random_bytes() -> None:
    name = "audio: random bytes"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(400)
        @given(RANDOM_AUDIO_BYTES)
        def run(data: bytes) -> None:
            check_load_audio(data, directory, name)

        check_load_audio(b"", directory, name)  # zero-length
        run()


def audio_damaged_files() -> None:
    name = "audio: damaged files"
    with tempfile.TemporaryDirectory() as directory:

        @fuzz(700)
        @given(audio_files())
        def run(data: bytes) -> None:
            check_load_audio(data, directory, name)

        run()


AUDIO_PROPERTIES = {"random_bytes": audio_random_bytes, "damaged_files": audio_damaged_files}


def _virtual_memory_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def audio_child(which: str) -> None:
    """Run one audio property with the address space capped; print its case counts as JSON."""
    import resource

    cap = _virtual_memory_bytes() + AUDIO_MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    AUDIO_PROPERTIES[which]()
    print(json.dumps({"cap_mib": cap >> 20, "cases": dict(CASES)}))


def _run_audio_child(which: str) -> dict[str, Any]:
    code = f"from tests.test_fuzz import audio_child; audio_child({which!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
@pytest.mark.parametrize("which", sorted(AUDIO_PROPERTIES))
def test_audio_reader_under_memory_cap(record_property, which):
    """Random or damaged audio files: finite float32 or AudioError, in a bounded address space."""
    result = _run_audio_child(which)
    for name, count in result["cases"].items():
        CASES[name] = count
    name = next(n for n in result["cases"] if not n.endswith("(refused)"))
    print(f"\n(address space capped at {result['cap_mib']} MiB)", end="")
    report(name, record_property)


# Regression tests of what the properties found.


def _flac_declaring_frames(path: Path, frames: int) -> Path:
    soundfile.write(path, np.random.default_rng(3).uniform(-0.5, 0.5, 4000), 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | frames
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_flac_declaring_more_frames_than_it_holds_is_read_without_trusting_the_count(tmp_path):
    # 2**36 - 1 frames is 256 GiB of float32: reading must not allocate by the declared count.
    path = _flac_declaring_frames(tmp_path / "liar.flac", (1 << 36) - 1)
    try:
        samples = load_audio(path)
    except AudioError as err:
        assert str(path) in str(err)
    else:
        assert 0 < samples.size <= 4000


def test_flac_declaring_a_gigabyte_is_read_under_a_memory_cap(tmp_path):
    # 2**28 frames is 1 GiB of float32: under a cap the child fails if that is allocated.
    path = _flac_declaring_frames(tmp_path / "liar.flac", 1 << 28)
    code = (
        "import resource, sys\n"
        "from dsp.audio import load_audio\n"
        "from tests.test_fuzz import AUDIO_MEMORY_HEADROOM, _virtual_memory_bytes\n"
        "cap = _virtual_memory_bytes() + AUDIO_MEMORY_HEADROOM\n"
        "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
        "from kernels.errors import AudioError\n"
        "try:\n"
        "    print(load_audio(sys.argv[1]).size)\n"
        "except AudioError as err:\n"
        "    print('AudioError', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


def test_gsm610_wav_which_libsndfile_cannot_seek_is_read(tmp_path):
    # libsndfile opens GSM 6.10 WAV as not seekable, and soundfile refuses to read a file that
    # cannot seek without a frame count (a ValueError); a block size is such a count.
    path = tmp_path / "gsm.wav"
    soundfile.write(path, np.zeros(1000), 8000, format="WAV", subtype="GSM610")
    with soundfile.SoundFile(path) as f:
        assert not f.seekable()
    assert load_audio(path).size >= 1000 * 2
    empty = tmp_path / "empty-gsm.wav"
    soundfile.write(empty, np.zeros(0), 8000, format="WAV", subtype="GSM610")
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(empty)


@pytest.mark.parametrize("rate", [1, 2, 999])
def test_sample_rates_below_1khz_are_refused_not_expanded(tmp_path, rate):
    # 20000 samples at 1 Hz would resample to 320 million at 16 kHz (1.3 GB from a 40 kB file).
    path = tmp_path / "slow.wav"
    soundfile.write(path, np.zeros(20000, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"fmt ") + 12, rate)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=rf"{re.escape(str(path))}: sample rate {rate} Hz"):
        load_audio(path)


@pytest.mark.parametrize(("frames", "rate"), [(1, 44100), (10, 0x7FFFFFFF)])
def test_too_short_to_give_one_sample_at_16khz_is_refused(tmp_path, frames, rate):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.full(frames, 0.25, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"fmt ") + 12, rate)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)


# ---------------------------------------------------------------------------------------------
# Model manifests (run in a child process under an address-space cap)
# ---------------------------------------------------------------------------------------------

MODEL_MEMORY_HEADROOM = 768 << 20
"""Address space the child may add beyond what it holds after its imports."""
SHIPPED_MODELS = {"base": SHIPPED_BASE_MODEL, "wake": shipped_detector("computer")}

_MANIFEST_EDGE_VALUES = [
    0, -1, 1, 2, 3, 64, 10**6, 1e6, 2**31, 2**63, -(2**63), 10**30, 0.0, -0.0, 1e-300, 1e308,
    math.inf, -math.inf, math.nan, 0.5, "64", "1.0", "", "dscnn", "context-mlp", "base", "wake",
    "computer", None, True, False, [], {}, [1, 2], [-5, 10**9], {"a": 1}, "a" * 300, "0" * 64,
    "\x00", ["yes", "no"],
]  # fmt: skip


def _read_model(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, json.loads(str(arrays.pop(MANIFEST_KEY)))


def _manifest_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths into a manifest, into at most the first three items of each list."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _manifest_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:3]):
            found += _manifest_paths(value, (*prefix, index))
    return found


@st.composite
def mutated_manifests(draw: st.DrawFn, manifest: dict[str, Any]) -> Any:
    """``manifest`` with 1-3 deletions, replacements or insertions anywhere in it."""
    document: Any = copy.deepcopy(manifest)
    keys = sorted({str(p[-1]) for p in _manifest_paths(manifest) if p and isinstance(p[-1], str)})
    values = st.one_of(
        st.sampled_from(_MANIFEST_EDGE_VALUES),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.lists(st.integers(-10, 4000), max_size=4),
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_manifest_paths(document)))
        operation = draw(st.sampled_from(["delete", "replace", "replace", "insert"]))
        value = draw(values)
        if not path:
            if operation == "replace":
                document = value
            continue
        parent, last = _at(document, path[:-1]), path[-1]
        target = parent[last]
        if operation == "delete":
            del parent[last]
        elif operation == "insert" and isinstance(target, dict):
            target[draw(st.one_of(st.sampled_from(keys), st.text(max_size=6)))] = value
        else:
            parent[last] = value
    return document


def _check_working_model(kind: str, model: Any) -> None:
    """A model that loaded must run: embed a window, or score a context and find a threshold."""
    if kind == "base":
        windows = np.zeros((2, *model.config.input_shape[:2]), np.float32)
        embedding = model.embed(windows)
        assert embedding.shape == (2, model.config.embedding_dim)
        assert np.all(np.isfinite(embedding))
        model.inference_network()
        return
    threshold, _ = model.threshold_for(0.1, smoothing_hops=3, refractory_s=1.0)
    assert 0.0 <= threshold <= 1.0
    scores = model.head.scores(np.zeros((1, model.head.inputs), np.float32))
    assert scores.shape == (1,) and np.all(np.isfinite(scores))


def manifest_property(kind: str) -> None:
    """Mutations of a shipped model's manifest: a working model or a ModelError naming the file."""
    name = f"models: mutated {kind} manifests"
    loader = {"base": BaseModel.load, "wake": WakeWordModel.load}[kind]
    arrays, manifest = _read_model(SHIPPED_MODELS[kind])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{kind}.npz"

        @fuzz(200)
        @given(mutated_manifests(manifest))
        def run(mutated: Any) -> None:
            CASES[name] += 1
            np.savez(path, **arrays, **{MANIFEST_KEY: np.array(json.dumps(mutated))})
            try:
                model = loader(path)
            except ModelError as err:
                message = str(err)
                assert message.startswith(f"{path}: ") and "\n" not in message, message
                CASES[name + " (refused)"] += 1
                return
            _check_working_model(kind, model)

        run()


def manifest_child(kind: str) -> None:
    """Run one manifest property with the address space capped; print its case counts as JSON."""
    import resource

    cap = _virtual_memory_bytes() + MODEL_MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    manifest_property(kind)
    print(json.dumps({"cap_mib": cap >> 20, "cases": dict(CASES)}))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
@pytest.mark.parametrize("kind", sorted(SHIPPED_MODELS))
def test_model_loaders_on_mutated_manifests_under_memory_cap(record_property, kind):
    """Edited manifests (types, bounds, missing and extra keys): a working model or ModelError."""
    code = f"from tests.test_fuzz import manifest_child; manifest_child({kind!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, count in result["cases"].items():
        CASES[name] = count
    name = next(n for n in result["cases"] if not n.endswith("(refused)"))
    print(f"\n(address space capped at {result['cap_mib']} MiB)", end="")
    report(name, record_property)
    assert 0 < CASES[name + " (refused)"] < CASES[name]  # some mutations are harmless


# Regression tests of what the properties found.


@pytest.mark.parametrize(
    ("kind", "edit", "field"),
    [
        ("base", ("architecture", "args", "channels", 10**6), "architecture.args.channels"),
        ("base", ("architecture", "args", "blocks", -1), "architecture.args.blocks"),
        ("wake", ("extra", "calibration_hours", math.nan), "extra.calibration_hours"),
        ("wake", ("extra", "phrase_duration_s", "0.5"), "extra.phrase_duration_s"),
        ("wake", ("extra", "calibration_episodes", [-1]), "extra.calibration_episodes[0]"),
        ("wake", ("sha256", 5), "sha256"),
    ],
)
def test_an_edited_manifest_is_refused_naming_the_file_and_field(tmp_path, kind, edit, field):
    arrays, manifest = _read_model(SHIPPED_MODELS[kind])
    *keys, value = edit
    _at(manifest, tuple(keys[:-1]))[keys[-1]] = value
    path = tmp_path / f"{kind}.npz"
    np.savez(path, **arrays, **{MANIFEST_KEY: np.array(json.dumps(manifest))})
    loader = {"base": BaseModel.load, "wake": WakeWordModel.load}[kind]
    expected = rf"^{re.escape(str(path))}: manifest {re.escape(field)}: "
    with pytest.raises(ModelError, match=expected):
        loader(path)


# ---------------------------------------------------------------------------------------------
# Endpoint replies and the reference receiver's parsers
# ---------------------------------------------------------------------------------------------

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["text", "error", "message", "detail"]) | st.text(), inner, max_size=4
        ),
    ),  # fmt: skip
    max_leaves=15,
)
_ODD_JSON = [
    b'{"text": ' * 5000, b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"text": ' + b"9" * 5000 + b"}", b'{"text": 1e999}', b'{"text": NaN, "error": -Infinity}',
    b'{"text": "\\ud800"}', b'{"text": "\xff\xfe"}', b'{"error": {"message": ["x"]}}',
    b'{"error": {"message": "' + b"\x1b[31m\r\n" * 500 + b'"}}', b"\xef\xbb\xbf{}", b"{",
    b'{"text": "ok"}\x00', b'  {"text": "ok"}  ', b'"just a string"', b"null", b"",
]  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda v: json.dumps(v).encode(), _JSON_VALUES),
    st.builds(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"),
              _JSON_VALUES),
    st.sampled_from(_ODD_JSON),
    st.builds(lambda a, b: a + b, st.sampled_from(_ODD_JSON), st.binary(max_size=40)),
)  # fmt: skip
CONTENT_TYPES = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                     "APPLICATION/JSON", "application/problem+json", "", "text/html"]),
)  # fmt: skip


def test_parse_response_never_raises(record_property):
    """Any status, content type and body: a Response with short printable error text."""
    name = "wire: parse_response"

    @fuzz(3000)
    @given(st.one_of(st.integers(), st.integers(100, 599)), CONTENT_TYPES, BODIES)
    def run(status: int, content_type: str | None, body: bytes) -> None:
        CASES[name] += 1
        response = parse_response(status, content_type, body)
        assert isinstance(response, Response)
        assert response.ok == (200 <= status < 300)
        assert response.text is None or isinstance(response.text, str)
        assert response.text is None or len(response.text) <= len(body)
        if response.ok:
            assert response.error is None
        else:
            assert isinstance(response.error, str)
            assert response.error.startswith(f"HTTP {status}")
            assert len(response.error) <= len(f"HTTP {status}: ") + ERROR_TEXT_CHARS
            assert response.error.isprintable()

    run()
    report(name, record_property)


@st.composite
def wav_bodies(draw: st.DrawFn) -> bytes:
    """An upload WAV (or a streaming one) with fields overwritten, cut or extended."""
    data = bytearray(wav_header(draw(st.sampled_from([None, 0, 8, 1 << 20]))) + bytes(16))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 4))
        struct.pack_into("<I", data, at, draw(st.sampled_from(_HUGE_U32)))
    data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=64))
    return bytes(data)


def test_receiver_upload_parsers_raise_only_bad_request(record_property):
    """parse_wav, parse_pcm and parse_multipart: a result or BadRequest, nothing else."""
    name = "receiver: parse_wav, parse_pcm, parse_multipart"

    @fuzz(1500)
    @given(
        st.one_of(st.binary(max_size=300), wav_bodies()),
        st.one_of(st.text(max_size=80), st.just("multipart/form-data; boundary=b")),
        st.one_of(st.binary(max_size=400), st.sampled_from([b"--b\r\n", b"--b--\r\n"])),
        st.data(),
    )
    def run(wav: bytes, content_type: str, body: bytes, data: st.DataObject) -> None:
        CASES[name] += 1
        try:
            samples = parse_wav(wav)
        except BadRequest:
            pass
        else:
            assert samples.dtype == np.float32 and samples.ndim == 1
            assert samples.size <= len(wav) // 2
        pcm = parse_pcm(wav)
        assert pcm.size == len(wav) // 2 and np.all(np.abs(pcm) <= 1.0)
        if data.draw(st.booleans()):
            # A real multipart body, then damaged.
            fields_ = [("file", "a.wav", "audio/wav", wav), ("model", None, None, b"whisper-1")]
            body, content_type = multipart_body(fields_)
            cut = data.draw(st.integers(0, len(body)))
            body = body[:cut] + data.draw(st.binary(max_size=20)) + body[cut:]
        try:
            parts = parse_multipart(content_type, body)
        except BadRequest:
            return
        assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in parts.items())

    run()
    report(name, record_property)


class _TrickleStream(io.RawIOBase):
    """Gives at most a chosen number of bytes per read (short reads, as pipes do)."""

    def __init__(self, data: bytes, sizes: list[int]):
        self._data, self._sizes, self._at, self._read = data, sizes, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        step = self._sizes[self._read % len(self._sizes)] if self._sizes else size
        self._read += 1
        size = min(size, step) if size >= 0 else step
        chunk = self._data[self._at : self._at + max(size, 1)]
        self._at += len(chunk)
        return chunk


def test_stdin_source_on_random_streams(record_property):
    """Random byte streams, short reads included: the PCM back in order, an odd byte dropped."""
    name = "sources: StdinSource"

    @fuzz(500)
    @given(
        st.binary(max_size=5000),
        st.lists(st.integers(1, 4000), max_size=5),
        st.sampled_from([10, 20, 80, 1000]),
    )
    def run(data: bytes, sizes: list[int], block_ms: int) -> None:
        CASES[name] += 1
        stream = _TrickleStream(data, sizes) if sizes else io.BytesIO(data)
        blocks = list(StdinSource(stream, block_ms=block_ms).chunks())  # type: ignore[arg-type]
        got = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        usable = len(data) - len(data) % 2
        expected = np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
        np.testing.assert_array_equal(got, expected)
        assert all(block.dtype == np.float32 and block.size > 0 for block in blocks)

    run()
    report(name, record_property)
