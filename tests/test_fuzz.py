"""Fuzzing the parsers of untrusted input: regression tests of what it found."""

from __future__ import annotations

import pytest

from agent.settings import load_settings
from kernels.errors import ConfigError


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
