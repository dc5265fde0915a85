"""earshot's settings: the one place YAML is read, validated into frozen dataclasses.

The dataclasses below are the schema; `agent.settings.schema.build` checks a parsed document
against them (unknown keys with a "did you mean" hint, types, ranges, and each class's
``_validate(path)``), and every message names the field path, the value received and what is
allowed, e.g. ``audio.block_ms: got 5, expected an integer in [10, 1000]``. Lower layers never see
YAML: they take the typed values as keyword arguments. Paths to files in a config file are relative
to that file's directory.
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml

from agent.paths import shipped_config_file
from agent.settings.schema import build, in_range, join_path, show
from kernels.errors import ConfigError


@dataclass(frozen=True)
class AudioSettings:
    """Where audio comes from and how it is chunked."""

    device: str | int | None = None
    """Microphone: None for the system default, a name substring, or a PortAudio index."""
    block_ms: int = field(default=80, metadata=in_range(10, 1000))
    """Capture block length, in milliseconds."""
    queue_blocks: int = field(default=25, metadata=in_range(2, 1000))
    """Blocks buffered between capture and processing before the oldest is dropped."""


@dataclass(frozen=True)
class LoggingSettings:
    """What the agent logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    status_interval_s: float = field(default=60.0, metadata=in_range(0.5, 3600))
    """Seconds between the agent's status lines in the log (state, audio heard, level, CPU)."""


DEFAULT_FALSE_ACCEPTS_PER_HOUR = 0.1
"""Target false accepts per hour of a wake word that sets neither a rate nor a threshold."""

_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
RESERVED_NAMES = frozenset({"base"})
"""Wake-word names the CLI uses for something else."""
_PHRASE_MAX_CHARS = 60
_PHRASE_PUNCTUATION = frozenset(" '\u2019-")


@dataclass(frozen=True)
class WakeWordSettings:
    """One wake word: what to listen for and how eagerly to fire."""

    name: str
    """Identifier, also the detector's file name: 1-40 of ``a-z 0-9 _ -``, not starting with
    ``_`` or ``-``."""
    phrase: str
    """What is said: letters (any case, accented included), spaces, apostrophes and hyphens."""
    recordings: tuple[str, ...] = ()
    """The user's own recordings of the phrase; ``~`` is expanded, and relative paths in a config
    file are relative to that file's directory. Existence is checked by enrollment, not here."""
    false_accepts_per_hour: float | None = field(default=None, metadata=in_range(0.001, 100))
    """Target false accepts per hour the threshold is calibrated for; see
    `target_false_accepts_per_hour`."""
    threshold: float | None = field(default=None, metadata=in_range(0.001, 0.999))
    """A fixed detection threshold on the smoothed score, instead of a calibrated one."""
    smoothing_hops: int = field(default=2, metadata=in_range(1, 20))
    """Scores are averaged over this many 100 ms hops before the threshold is applied."""
    refractory_s: float = field(default=2.0, metadata=in_range(0, 60))
    """After a detection, the same wake word cannot fire again for this many seconds."""
    verify_speaker: bool = False
    """Also require the voice to match the takes of ``earshot enroll`` (needs an enrollment)."""

    @property
    def target_false_accepts_per_hour(self) -> float | None:
        """The false-accept rate to calibrate for; None when a fixed `threshold` is set."""
        if self.threshold is not None:
            return None
        if self.false_accepts_per_hour is not None:
            return self.false_accepts_per_hour
        return DEFAULT_FALSE_ACCEPTS_PER_HOUR

    def _validate(self, path: str) -> None:
        """Check the name and phrase patterns, and that at most one operating point is set.

        Raises
        ------
        ConfigError
            A field breaks its pattern, or both ``false_accepts_per_hour`` and ``threshold`` are
            set.
        """
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, expected 1-40 characters of "
                "lowercase letters a-z, digits, '_' or '-', starting with a letter or digit"
            )
        if self.name in RESERVED_NAMES:
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, which is reserved "
                f"(`earshot train base` trains the base model); choose another name"
            )
        if not _is_phrase(self.phrase):
            raise ConfigError(
                f"{join_path(path, 'phrase')}: got {show(self.phrase)}, expected 1-"
                f"{_PHRASE_MAX_CHARS} characters of letters, spaces, apostrophes and hyphens, "
                "with at least one letter"
            )
        for index, recording in enumerate(self.recordings):
            if not recording.strip():
                raise ConfigError(
                    f"{join_path(path, 'recordings')}[{index}]: got {show(recording)}, "
                    "expected a file path"
                )
        if self.false_accepts_per_hour is not None and self.threshold is not None:
            raise ConfigError(
                f"{path or 'wake word'}: set false_accepts_per_hour or threshold, not both"
            )


def _is_phrase(text: str) -> bool:
    """Whether ``text`` is 1-60 letters, spaces, apostrophes and hyphens with a letter in it."""

    def allowed(char: str) -> bool:
        # Combining marks keep decomposed accented letters ("e" + U+0301) acceptable.
        return (
            char.isalpha()
            or char in _PHRASE_PUNCTUATION
            or unicodedata.category(char).startswith("M")
        )

    return (
        1 <= len(text) <= _PHRASE_MAX_CHARS
        and all(allowed(char) for char in text)
        and any(char.isalpha() for char in text)
    )


@dataclass(frozen=True)
class DetectionSettings:
    """How wake words are detected."""

    backend: Literal["auto", "numpy", "wgpu"] = "auto"
    """Where the base network runs: ``wgpu``, ``numpy``, or ``auto`` (wgpu on a real GPU, numpy
    otherwise); see `kernels.runtime.resolve_backend`."""


def data_dir() -> Path:
    """``$XDG_DATA_HOME/earshot`` (``~/.local/share/earshot``): what earshot keeps for the user."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "earshot"


def default_model_dir() -> Path:
    """``$XDG_DATA_HOME/earshot/wake`` (``~/.local/share/earshot/wake``)."""
    return data_dir() / "wake"


def enrollment_dir() -> Path:
    """``$XDG_DATA_HOME/earshot/enrollment``: the user's enrollment takes, owner-only."""
    return data_dir() / "enrollment"


@dataclass(frozen=True)
class ModelSettings:
    """Where models are read from and written to."""

    directory: str | None = None
    """Where trained wake-word detectors are stored; None for `default_model_dir`."""
    base: str | None = None
    """Base model file; None for the one shipped with earshot."""

    def resolved_directory(self) -> Path:
        """The detector directory, ``~`` expanded; `default_model_dir` when unset."""
        if self.directory is None:
            return default_model_dir()
        return Path(self.directory).expanduser()

    def _validate(self, path: str) -> None:
        """Refuse empty paths, which would silently mean the current directory.

        Raises
        ------
        ConfigError
            ``directory`` or ``base`` is an empty string.
        """
        for key in ("directory", "base"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(
                    f"{join_path(path, key)}: got {show(value)}, expected a path or null"
                )


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/earshot`` (else ``/tmp/earshot-UID``): the control socket's home."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "earshot" if base else Path(f"/tmp/earshot-{os.getuid()}")


def default_audit_path() -> Path:
    """``$XDG_DATA_HOME/earshot/audit.jsonl``: one JSON line per upload, owner-only."""
    return data_dir() / "audit.jsonl"


def default_socket_path() -> Path:
    """The control socket `earshot status` talks to."""
    return runtime_dir() / "control.sock"


@dataclass(frozen=True)
class CommandCaptureSettings:
    """How the utterance after a wake word is cut."""

    trailing_silence_s: float = field(default=0.7, metadata=in_range(0.2, 5))
    """The command ends after this much silence following speech."""
    max_s: float = field(default=10.0, metadata=in_range(1, 60))
    """The command ends after this long, whatever is said."""
    no_speech_timeout_s: float = field(default=3.0, metadata=in_range(0.5, 30))
    """The wake is cancelled (nothing is sent) when no speech starts within this time."""
    pre_roll_s: float = field(default=0.0, metadata=in_range(0, 1))
    """Audio from before the wake word's end that is sent too (for server-side verification)."""


ENDPOINT_KINDS = ("http", "openai-transcription")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_url_parts(url: str, where: str, shown: str) -> SplitResult:
    """The parts of an endpoint URL, refusing one that would send audio off this machine in clear.

    Parameters
    ----------
    url : str
        The URL.
    where : str
        The field, for messages (``endpoint.url``).
    shown : str
        How the URL appears in messages (the privacy gate shows it with credentials redacted).

    Raises
    ------
    ConfigError
        Not an http(s) URL with a host, a bad port, or plain http to a host other than loopback.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as err:
        raise ConfigError(f"{where}: got {shown}, {err}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{where}: got {shown}, expected an https:// URL with a host")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"{where}: got {shown}; audio leaves this machine only over https "
            "(plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
        )
    return parts


@dataclass(frozen=True)
class EndpointSettings:
    """Where command audio goes after a wake word; no ``url`` means nowhere."""

    kind: Literal["http", "openai-transcription"] = "http"
    """``http``: a chunked POST of the audio while the user speaks; ``openai-transcription``: a
    multipart POST to a ``/v1/audio/transcriptions``-compatible server once the command ends."""
    url: str | None = None
    """``https://`` (``http://`` only to a loopback address); None sends nothing."""
    format: Literal["wav", "pcm"] = "wav"
    """Audio format of ``http`` uploads: WAV, or raw 16-bit little-endian mono PCM at 16 kHz."""
    token_env: str | None = None
    """Environment variable holding the bearer token."""
    token_file: str | None = None
    """File holding the bearer token (its first line)."""
    ca_file: str | None = None
    """PEM bundle of certificate authorities to trust instead of the system's."""
    model: str = "whisper-1"
    """``model`` field of ``openai-transcription`` requests."""
    device_id: str | None = None
    """Sent in the metadata headers; None for the host name."""
    timeout_s: float = field(default=10.0, metadata=in_range(0.5, 300))
    """Connect and read timeout of each attempt."""
    retries: int = field(default=2, metadata=in_range(0, 10))
    """Further attempts after a failed one (with exponential backoff); then the upload is
    dropped and audited as failed."""

    def _validate(self, path: str) -> None:
        """Check the URL's scheme and host, and that at most one token source is set.

        Raises
        ------
        ConfigError
            Not an http(s) URL, plain http to a host other than loopback, or two token sources.
        """
        if self.url is not None:
            endpoint_url_parts(self.url, join_path(path, "url"), show(self.url))
        if self.token_env is not None and self.token_file is not None:
            raise ConfigError(f"{path or 'endpoint'}: set token_env or token_file, not both")
        for key in ("token_env", "token_file", "ca_file", "device_id"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(
                    f"{join_path(path, key)}: got {show(value)}, expected text or null"
                )


COMMAND_ACTIONS = ("shell", "event", "forward")


@dataclass(frozen=True)
class LocalCommandSettings:
    """A voice command handled on the device: said after a wake word, nothing is sent."""

    name: str
    """Identifier, also the command detector's file name (as for wake words)."""
    phrase: str | None = None
    """What is said; a detector is trained from it like a wake word's."""
    builtin: str | None = None
    """Instead of a phrase: a word of the built-in speech-commands head (yes, no, up, down,
    left, right, on, off, stop, go)."""
    action: Literal["shell", "event", "forward"] = "event"
    """``shell``: run ``run`` with the details in ``EARSHOT_*`` environment variables;
    ``event``: only emit a ``command`` event; ``forward``: send the utterance to the endpoint."""
    run: str | None = None
    """The shell command of ``action: shell``."""
    min_score: float = field(default=0.5, metadata=in_range(0.01, 0.999))
    """Score the utterance needs for this command to be chosen."""

    def _validate(self, path: str) -> None:
        """Check the name, exactly one of phrase and builtin, and the action's needs.

        Raises
        ------
        ConfigError
            A pattern is broken, or the fields do not fit together.
        """
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(
                f"{join_path(path, 'name')}: got {show(self.name)}, expected 1-40 characters of "
                "lowercase letters a-z, digits, '_' or '-', starting with a letter or digit"
            )
        if (self.phrase is None) == (self.builtin is None):
            raise ConfigError(f"{path or 'command'}: set exactly one of phrase and builtin")
        if self.phrase is not None and not _is_phrase(self.phrase):
            raise ConfigError(
                f"{join_path(path, 'phrase')}: got {show(self.phrase)}, expected 1-"
                f"{_PHRASE_MAX_CHARS} characters of letters, spaces, apostrophes and hyphens"
            )
        if self.builtin is not None and self.builtin not in BUILTIN_COMMAND_WORDS:
            raise ConfigError(
                f"{join_path(path, 'builtin')}: got {show(self.builtin)}, expected one of "
                f"{list(BUILTIN_COMMAND_WORDS)}"
            )
        if (self.action == "shell") != (self.run is not None):
            raise ConfigError(
                f"{join_path(path, 'run')}: a shell command is needed with action: shell, "
                "and only then"
            )


BUILTIN_COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""Words of the shipped base model's speech-commands head."""

EVENT_KINDS = (
    "wake", "command", "transcript", "upload", "error", "device_lost", "device_back", "state",
)  # fmt: skip


@dataclass(frozen=True)
class HookSettings:
    """A shell command per event kind, run with the event's fields in ``EARSHOT_*`` variables."""

    wake: str | None = None
    command: str | None = None
    transcript: str | None = None
    upload: str | None = None
    error: str | None = None
    device_lost: str | None = None
    device_back: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class EventSettings:
    """Where events (JSON lines) go."""

    stdout: bool = True
    """Print every event as a JSON line on standard output."""
    socket: str | None = None
    """Control socket (owner-only) for `earshot status` and event subscribers; None for
    ``$XDG_RUNTIME_DIR/earshot/control.sock``."""
    hooks: HookSettings = field(default_factory=HookSettings)

    def resolved_socket(self) -> Path:
        """The control socket's path."""
        return default_socket_path() if self.socket is None else Path(self.socket).expanduser()


@dataclass(frozen=True)
class PrivacySettings:
    """What is kept on disk about audio."""

    audit_log: str | None = None
    """JSON-lines log of every upload; None for ``$XDG_DATA_HOME/earshot/audit.jsonl``."""
    debug_audio_dir: str | None = None
    """Debugging only: save every captured command utterance as WAV here (owner-only). Null,
    the default, writes no audio to disk."""

    def resolved_audit_log(self) -> Path:
        """The audit log's path."""
        if self.audit_log is None:
            return default_audit_path()
        return Path(self.audit_log).expanduser()


@dataclass(frozen=True)
class Settings:
    """The whole configuration file."""

    audio: AudioSettings = field(default_factory=AudioSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    wake_words: tuple[WakeWordSettings, ...] = (
        WakeWordSettings(name="computer", phrase="computer"),
    )
    """Wake words to listen for; an empty list only meters audio."""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    command: CommandCaptureSettings = field(default_factory=CommandCaptureSettings)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    commands: tuple[LocalCommandSettings, ...] = ()
    """Voice commands handled on the device."""
    events: EventSettings = field(default_factory=EventSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    def wake_word(self, name: str) -> WakeWordSettings:
        """The configured wake word called ``name``.

        Raises
        ------
        ConfigError
            No wake word has that name; the message lists the configured names.
        """
        for wake_word in self.wake_words:
            if wake_word.name == name:
                return wake_word
        names = [wake_word.name for wake_word in self.wake_words]
        if not names:
            raise ConfigError(f"wake word {name!r} is not configured; no wake words are configured")
        hint = difflib.get_close_matches(name, names, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f"wake word {name!r} is not configured; configured wake words are {names}{suggestion}"
        )

    def _validate(self, path: str) -> None:
        """Refuse a name used twice among wake words and commands (their detectors share a folder).

        Raises
        ------
        ConfigError
            A name repeats an earlier one.
        """
        first: dict[str, str] = {}
        named = [(f"wake_words[{i}]", w.name) for i, w in enumerate(self.wake_words)]
        named += [(f"commands[{i}]", c.name) for i, c in enumerate(self.commands)]
        for where, name in named:
            if name in first:
                raise ConfigError(
                    f"{join_path(path, where + '.name')}: got {show(name)}, "
                    f"already used by {first[name]}"
                )
            first[name] = where

    def command_named(self, name: str) -> LocalCommandSettings:
        """The configured local command called ``name``.

        Raises
        ------
        ConfigError
            No command has that name.
        """
        for command in self.commands:
            if command.name == name:
                return command
        names = [c.name for c in self.commands]
        raise ConfigError(f"command {name!r} is not configured; configured commands are {names}")


def default_config_path() -> Path:
    """The shipped default config: beside the source tree, or installed under share/earshot."""
    return shipped_config_file("earshot.yaml")


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/earshot/earshot.yaml`` (``~/.config/earshot/earshot.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "earshot" / "earshot.yaml"


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a config file; None means the user's file if present, else the default.

    Raises
    ------
    ConfigError
        Unreadable file, invalid YAML, or a value that breaks the schema.
    """
    if path is None:
        path = user_config_path() if user_config_path().is_file() else default_config_path()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from err
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        # PyYAML lets through the ValueError of an integer literal longer than Python converts
        # (4300 digits) and the RecursionError of nesting deeper than the interpreter's stack.
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    try:
        return parse_settings({} if document is None else document, base_dir=path.absolute().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def parse_settings(document: Any, base_dir: Path | None = None) -> Settings:
    """Validate a parsed YAML document (or CLI overrides) into `Settings`.

    Parameters
    ----------
    document
        The parsed YAML: a mapping of sections.
    base_dir
        Directory that relative file paths (recordings, model paths) are resolved against: the
        config file's directory. None leaves them relative; ``~`` is expanded either way.

    Raises
    ------
    ConfigError
        A value that breaks the schema.
    """
    return _resolve_paths(build(Settings, document, ""), base_dir)


def _resolve_paths(settings: Settings, base_dir: Path | None) -> Settings:
    def resolve(text: str) -> str:
        path = Path(text).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return str(path)

    def resolve_optional(text: str | None) -> str | None:
        return None if text is None else resolve(text)

    wake_words = tuple(
        replace(wake_word, recordings=tuple(resolve(r) for r in wake_word.recordings))
        for wake_word in settings.wake_words
    )
    models = replace(
        settings.models,
        directory=resolve_optional(settings.models.directory),
        base=resolve_optional(settings.models.base),
    )
    endpoint = replace(
        settings.endpoint,
        token_file=resolve_optional(settings.endpoint.token_file),
        ca_file=resolve_optional(settings.endpoint.ca_file),
    )
    events = replace(settings.events, socket=resolve_optional(settings.events.socket))
    privacy = replace(
        settings.privacy,
        audit_log=resolve_optional(settings.privacy.audit_log),
        debug_audio_dir=resolve_optional(settings.privacy.debug_audio_dir),
    )
    return replace(
        settings, wake_words=wake_words, models=models, endpoint=endpoint, events=events,
        privacy=privacy,
    )  # fmt: skip
