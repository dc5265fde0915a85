"""Fuzzing the parsers of untrusted input: regression tests of what it found."""

from __future__ import annotations

import pytest

from agent.schema import show
from agent.settings import load_settings, parse_settings
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


def test_integers_too_long_to_print_are_shown_by_size():
    huge = 10**5000
    assert show(huge) == "int <about 5001 digits>"
    expected = r"audio\.block_ms: got <about 5001 digits>, expected an integer in \[10, 1000\]"
    with pytest.raises(ConfigError, match=expected):
        parse_settings({"audio": {"block_ms": huge}})
    with pytest.raises(ConfigError, match=r"logging\.level: got int <about 5001 digits>"):
        parse_settings({"logging": {"level": -huge}})
