"""Config loading: the shipped default, strict validation with clear messages."""

from pathlib import Path

import pytest

from agent.settings import (
    DEFAULT_FALSE_ACCEPTS_PER_HOUR,
    ModelSettings,
    Settings,
    WakeWordSettings,
    default_config_path,
    default_model_dir,
    load_settings,
    parse_settings,
)
from kernels.errors import ConfigError
from tests.conftest import run_earshot


def test_shipped_default_config_is_valid_and_documents_every_key():
    path = default_config_path()
    settings = load_settings(path)
    assert settings == Settings()
    text = path.read_text()
    for section in ("audio", "logging", "detection", "models"):
        assert f"\n{section}:\n" in text, f"section {section} is not in {path}"
        for key in getattr(settings, section).__dataclass_fields__:
            assert f"{key}:" in text, f"{section}.{key} is not in {path}"
    assert "\nwake_words:\n" in text
    for key in WakeWordSettings.__dataclass_fields__:
        assert f"    {key}:" in text, f"wake_words[0].{key} is not in {path}"


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


def _words(*entries: dict) -> dict:
    """A document whose wake words are ``entries``, each completed with a valid name and phrase."""
    return {
        "wake_words": [
            {"name": f"word{i}", "phrase": "hey you", **e} for i, e in enumerate(entries)
        ]
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"wake_words": "computer"},
            "wake_words: got str 'computer', expected a list of mappings",
        ),
        ({"wake_words": {"name": "computer"}}, "wake_words: got dict, expected a list of mappings"),
        (
            {"wake_words": [None]},
            "wake_words\\[0\\]: got NoneType None, expected a mapping of keys",
        ),
        ({"wake_words": ["computer"]}, "wake_words\\[0\\]: got str 'computer', expected a mapping"),
        (
            _words({}, {"phrse": "hello"}),
            "wake_words\\[1\\].phrse: unknown key; allowed keys are .*did you mean 'phrase'",
        ),
        ({"wake_words": [{"phrase": "hello"}]}, "wake_words\\[0\\].name: required key is missing"),
        ({"wake_words": [{"name": "hello"}]}, "wake_words\\[0\\].phrase: required key is missing"),
        (_words({"name": 7}), "wake_words\\[0\\].name: got int 7, expected a string"),
        (
            _words({"name": "Hey Computer"}),
            "wake_words\\[0\\].name: got str 'Hey Computer', expected 1-40 characters of lowercase",
        ),
        (_words({"name": "-x"}), "wake_words\\[0\\].name: got str '-x', expected"),
        (_words({"name": "a" * 41}), "wake_words\\[0\\].name: got str 'aaaa"),
        (_words({"name": "../evil"}), "wake_words\\[0\\].name: got str '../evil', expected"),
        (
            _words({}, {"phrase": ""}),
            "wake_words\\[1\\].phrase: got str '', expected 1-60 characters of letters, spaces, "
            "apostrophes and hyphens, with at least one letter",
        ),
        (_words({"phrase": " - '"}), 'wake_words\\[0\\].phrase: got str " - \'", expected 1-60'),
        (_words({"phrase": "route 66"}), "wake_words\\[0\\].phrase: got str 'route 66', expected"),
        (_words({"phrase": "hey!"}), "wake_words\\[0\\].phrase: got str 'hey!', expected"),
        (_words({"phrase": "a" * 61}), "wake_words\\[0\\].phrase: got str 'aaaa"),
        (_words({"phrase": ["hey"]}), "wake_words\\[0\\].phrase: got list, expected a string"),
        (
            _words({"recordings": "me.wav"}),
            "wake_words\\[0\\].recordings: got str 'me.wav', expected a list of strings",
        ),
        (
            _words({"recordings": ["me.wav", 3]}),
            "wake_words\\[0\\].recordings\\[1\\]: got int 3, expected a string",
        ),
        (
            _words({"recordings": [""]}),
            "wake_words\\[0\\].recordings\\[0\\]: got str '', expected a file path",
        ),
        (
            _words({"threshold": 1.0}),
            "wake_words\\[0\\].threshold: got float 1.0, expected a number in "
            "\\[0.001, 0.999\\] or null",
        ),
        (
            _words({"threshold": "high"}),
            "wake_words\\[0\\].threshold: got str 'high', expected a number in",
        ),
        (
            _words({"false_accepts_per_hour": 0}),
            "wake_words\\[0\\].false_accepts_per_hour: got int 0, expected a number in "
            "\\[0.001, 100\\] or null",
        ),
        (
            _words({"smoothing_hops": 21}),
            "wake_words\\[0\\].smoothing_hops: got 21, expected an integer in \\[1, 20\\]",
        ),
        (
            _words({"smoothing_hops": 2.5}),
            "wake_words\\[0\\].smoothing_hops: got float 2.5, expected an integer",
        ),
        (
            _words({"refractory_s": -1}),
            "wake_words\\[0\\].refractory_s: got -1, expected a number in \\[0, 60\\]",
        ),
        (
            _words({"name": "base"}),
            "wake_words\\[0\\].name: got str 'base', which is reserved",
        ),
        (
            _words({}, {"threshold": 0.5, "false_accepts_per_hour": 1}),
            "wake_words\\[1\\]: set false_accepts_per_hour or threshold, not both",
        ),
        (
            _words({"name": "computer"}, {}, {"name": "computer"}),
            "wake_words\\[2\\].name: got str 'computer', already used by wake_words\\[0\\]",
        ),
        (
            {"detection": {"backend": "cuda"}},
            "detection.backend: got str 'cuda', expected one of \\['auto', 'numpy', 'wgpu'\\]",
        ),
        (
            {"detection": {"backnd": "auto"}},
            "detection.backnd: unknown key.*did you mean 'backend'",
        ),
        ({"models": {"directory": 3}}, "models.directory: got int 3, expected a string or null"),
        ({"models": {"base": ""}}, "models.base: got str '', expected a path or null"),
        ({"modles": {}}, "modles: unknown key.*did you mean 'models'"),
    ],
)
def test_invalid_wake_words_detection_and_models(document, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(document)


def test_wake_word_operating_point():
    default = parse_settings(_words({})).wake_words[0]
    assert default.false_accepts_per_hour is None and default.threshold is None
    assert default.target_false_accepts_per_hour == DEFAULT_FALSE_ACCEPTS_PER_HOUR == 0.1
    by_rate = parse_settings(_words({"false_accepts_per_hour": 2})).wake_words[0]
    assert by_rate.false_accepts_per_hour == 2.0
    assert by_rate.target_false_accepts_per_hour == 2.0
    by_threshold = parse_settings(_words({"threshold": 0.7})).wake_words[0]
    assert by_threshold.threshold == 0.7
    assert by_threshold.target_false_accepts_per_hour is None


def test_valid_wake_words():
    settings = parse_settings(
        {
            "wake_words": [
                {"name": "computer", "phrase": "computer"},
                {
                    "name": "ok_maison-2",
                    "phrase": "D'accord Maison-Été",
                    "smoothing_hops": 5,
                    "refractory_s": 0,
                    "recordings": None,
                },
            ]
        }
    )
    assert [w.name for w in settings.wake_words] == ["computer", "ok_maison-2"]
    second = settings.wake_word("ok_maison-2")
    assert second.phrase == "D'accord Maison-Été"
    assert (second.smoothing_hops, second.refractory_s, second.recordings) == (5, 0.0, ())
    assert parse_settings({"wake_words": []}).wake_words == ()
    assert parse_settings({"wake_words": None}).wake_words == ()
    assert parse_settings({}).wake_words == Settings().wake_words
    assert Settings().wake_word("computer") == WakeWordSettings(name="computer", phrase="computer")


def test_unknown_wake_word_lists_the_configured_names():
    with pytest.raises(ConfigError, match=r"'computr'.*\['computer'\]; did you mean 'computer'"):
        Settings().wake_word("computr")
    with pytest.raises(ConfigError, match="'jarvis' is not configured; no wake words"):
        parse_settings({"wake_words": []}).wake_word("jarvis")


def test_recording_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    config = config_dir / "earshot.yaml"
    config.write_text(
        "wake_words:\n"
        "  - name: computer\n"
        "    phrase: computer\n"
        "    recordings: [clips/one.wav, /abs/two.wav, ~/three.wav]\n"
        "models:\n"
        "  directory: detectors\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("conf") / "earshot.yaml")
    assert settings.wake_words[0].recordings == (
        str(config_dir / "clips" / "one.wav"),
        "/abs/two.wav",
        str(tmp_path / "home" / "three.wav"),
    )
    assert settings.models.directory == str(config_dir / "detectors")
    assert settings.models.resolved_directory() == config_dir / "detectors"
    # Without a file there is nothing to be relative to: only "~" is expanded.
    parsed = parse_settings(_words({"recordings": ["clips/one.wav", "~/x.wav"]}))
    assert parsed.wake_words[0].recordings == ("clips/one.wav", str(tmp_path / "home" / "x.wav"))


def test_model_directory_defaults_to_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_model_dir() == tmp_path / "data" / "earshot" / "wake"
    assert ModelSettings().resolved_directory() == tmp_path / "data" / "earshot" / "wake"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_model_dir() == tmp_path / "home" / ".local" / "share" / "earshot" / "wake"
    assert ModelSettings(directory="~/models").resolved_directory() == tmp_path / "home" / "models"


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


def check(path: Path) -> tuple[int, list[str]]:
    """``earshot config check path``: its exit code and the lines it wrote to stderr."""
    result = run_earshot("config", "check", str(path))
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr.splitlines()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("audio: [unclosed\n", "line 2, column 1: expected ',' or ']', but got '<stream end>'"),
        ('audio:\n  device: "USB\n\n', "line 4, column 1: found unexpected end of stream"),
        ("audio:\n  block_ms: 80\n bad: 1\n", "line 3, column 2: expected <block end>"),
        ("audio: *nowhere\n", "line 1, column 8: found undefined alias 'nowhere'"),
        ("audio: \x07\n", "line 1, column 8: character #x0007: special characters"),
    ],
    ids=["unclosed-list", "unclosed-quote", "bad-indent", "undefined-alias", "control-character"],
)
def test_invalid_yaml_is_one_line_naming_the_line_and_column(tmp_path, text, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, lines = check(bad)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"earshot: error: {bad}: invalid YAML at {where}"), lines


def test_a_key_written_twice_is_refused_naming_the_key_and_both_lines(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("audio:\n  block_ms: 80\n  device: USB\n  block_ms: 40\n")
    code, lines = check(twice)
    assert code == 2
    assert lines == [
        f"earshot: error: {twice}: invalid YAML at line 4, column 3: duplicate key 'block_ms' "
        "(lines 2 and 4); a key may appear only once in a mapping"
    ]
    sections = tmp_path / "sections.yaml"
    sections.write_text("audio: {block_ms: 80}\nlogging: {level: info}\naudio: {block_ms: 40}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'audio' \(lines 1 and 3\)"):
        load_settings(sections)


def test_keys_a_merge_brings_in_may_still_be_overridden(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "wake_words:\n"
        "  - &computer {name: computer, phrase: computer, smoothing_hops: 2}\n"
        "  - <<: *computer\n"
        "    name: jarvis\n"
        "    phrase: jarvis\n"
    )
    settings = load_settings(merged)
    assert [(w.name, w.smoothing_hops) for w in settings.wake_words] == [
        ("computer", 2),
        ("jarvis", 2),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pa55word@127.0.0.1/x",
        "https://pa55word@stt.example.org/v1/audio/transcriptions",
        "https://user:pa55word@example.com:8443/a",
    ],
)
def test_credentials_in_the_endpoint_url_are_refused_without_showing_them(tmp_path, url):
    with pytest.raises(ConfigError, match="endpoint.url: .*token_env or endpoint.token_file"):
        parse_settings({"endpoint": {"url": url}})
    config = tmp_path / "creds.yaml"
    config.write_text(f"endpoint:\n  url: {url}\n")
    code, lines = check(config)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"earshot: error: {config}: endpoint.url: got str '")
    assert "://***@" in lines[0] and "pa55word" not in lines[0]


@pytest.mark.parametrize(
    ("mode", "warning"),
    [
        (0o644, "is readable by everyone (mode 0644)"),
        (0o640, "is readable by its group (mode 0640)"),
        (0o604, "is readable by everyone (mode 0604)"),
        (0o600, None),
        (0o400, None),
    ],
)
def test_a_token_file_others_can_read_is_warned_about(tmp_path, mode, warning):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    token.chmod(mode)
    config = tmp_path / "earshot.yaml"
    config.write_text(f"endpoint:\n  url: https://example.com/a\n  token_file: {token}\n")
    code, lines = check(config)
    assert code == 0
    warnings = [line for line in lines if "WARNING" in line]
    if warning is None:
        assert warnings == []
    else:
        (line,) = warnings
        assert f"endpoint.token_file {token} {warning}" in line and f"chmod 600 {token}" in line


def test_config_check_command_on_wake_words(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "wake_words:\n"
        "  - {name: computer, phrase: computer}\n"
        "  - {name: jarvis, phrase: 'jarvis 2'}\n"
    )
    result = run_earshot("config", "check", str(bad))
    assert result.returncode == 2
    assert f"{bad}: wake_words[1].phrase: got str 'jarvis 2'" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(
        "wake_words:\n"
        "  - {name: computer, phrase: computer, threshold: 0.6}\n"
        "  - {name: jarvis, phrase: Jarvis, recordings: [me.wav]}\n"
    )
    result = run_earshot("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert f"{good}: valid" in result.stdout
    assert str(tmp_path / "me.wav") in result.stdout


def test_systemd_unit_runs_the_agent():
    import configparser

    from tests.conftest import REPO

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "config" / "earshot.service")
    assert unit["Service"]["ExecStart"].endswith("/earshot run --no-demo --json")
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
