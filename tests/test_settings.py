"""Config loading: the shipped default, strict validation with clear messages."""

import pytest

from agent.settings import Settings, default_config_path, load_settings, parse_settings
from kernels.errors import ConfigError
from tests.conftest import run_earshot


def test_shipped_default_config_is_valid_and_documents_every_key():
    path = default_config_path()
    settings = load_settings(path)
    assert settings == Settings()
    text = path.read_text()
    for section in ("audio", "logging"):
        for key in getattr(settings, section).__dataclass_fields__:
            assert f"{key}:" in text, f"{section}.{key} is not in {path}"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"audio": {"blok_ms": 80}}, "audio.blok_ms: unknown key.*did you mean 'block_ms'"),
        ({"audoi": {}}, "audoi: unknown key.*did you mean 'audio'"),
        ({"audio": {"block_ms": 5}}, r"audio.block_ms: got 5, expected an integer in \[10, 1000\]"),
        ({"audio": {"block_ms": "80"}}, "audio.block_ms: got str '80', expected an integer"),
        ({"audio": {"block_ms": True}}, "audio.block_ms: got bool True, expected an integer"),
        (
            {"audio": {"device": 1.5}},
            "audio.device: got float 1.5, expected a string or an integer or null",
        ),
        (
            {"logging": {"level": "loud"}},
            r"logging.level: got str 'loud', expected one of \['debug'",
        ),
        (
            {"logging": {"status_interval_s": 0}},
            r"logging.status_interval_s: got 0, expected a number",
        ),
        (["audio"], "config: got list, expected a mapping"),
    ],
)
def test_invalid_documents_name_the_field_value_and_what_is_allowed(document, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(document)


def test_valid_overrides_and_empty_sections():
    settings = parse_settings({"audio": {"device": "USB", "block_ms": 40}, "logging": None})
    assert settings.audio.device == "USB"
    assert settings.audio.block_ms == 40
    assert settings.logging == Settings().logging
    assert parse_settings({"logging": {"status_interval_s": 2}}).logging.status_interval_s == 2.0


def test_file_errors_name_the_file(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("audio: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad_yaml}: invalid YAML"):
        load_settings(bad_yaml)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty) == Settings()


def test_config_check_command_exit_codes(tmp_path):
    good = run_earshot("config", "check", str(default_config_path()))
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  block_ms: 1\n")
    result = run_earshot("config", "check", str(bad))
    assert result.returncode == 2
    assert "audio.block_ms: got 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_systemd_unit_runs_the_agent():
    import configparser

    from tests.conftest import REPO

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "config" / "earshot.service")
    assert unit["Service"]["ExecStart"].endswith("/earshot run")
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
