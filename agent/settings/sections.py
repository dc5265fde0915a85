"""The sections of the config file as frozen dataclasses, and `Settings`, the whole file.

Each dataclass is one section's schema for `agent.settings.schema.build`: its fields, their types,
defaults and ranges (``field(metadata=in_range(...))``), and a ``_validate(path)`` for what spans
several fields. Here are ``audio``, ``logging``, ``detection``, ``models``, ``command``,
``events`` (with its ``hooks``), ``privacy``, ``learning`` and ``fleet``; ``wake_words`` and
``commands`` live in `agent.settings.words`, ``endpoint`` in `agent.settings.endpoint`. Settings
that name a place default to the XDG locations of `agent.settings.locations`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.settings.endpoint import EndpointSettings
from agent.settings.locations import (
    data_dir,
    default_audit_path,
    default_feedback_dir,
    default_model_dir,
    default_socket_path,
)
from agent.settings.schema import in_range, join_path, show
from agent.settings.words import LocalCommandSettings, WakeWordSettings
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


@dataclass(frozen=True)
class DetectionSettings:
    """How wake words are detected."""

    backend: Literal["auto", "numpy", "wgpu"] = "auto"
    """Where the base network runs: ``wgpu``, ``numpy``, or ``auto`` (wgpu on a real GPU, numpy
    otherwise); see `kernels.runtime.resolve_backend`."""


BASE_NAMES = ("speech_embedding", "dscnn")
"""The shipped bases ``models.base`` may name (`models.base.loading.BASES`); anything else is a
path."""


@dataclass(frozen=True)
class ModelSettings:
    """Where models are read from and written to."""

    directory: str | None = None
    """Where trained wake-word detectors are stored; None for `default_model_dir`."""
    base: str | None = None
    """The base every wake word, command and enrollment is trained on: ``speech_embedding`` (the
    imported embedding, trained on real speech; the default when None), ``dscnn`` (earshot's own,
    trained on synthetic speech), or the path of a base file (``earshot train base`` or ``earshot
    model import``). Changing it means retraining: ``earshot train`` says so."""

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
class LearningSettings:
    """What the device may keep to learn from its user; nothing unless ``enabled``."""

    enabled: bool = False
    """Keep audio the user marks (`earshot feedback`): false alarms and misses. Off: nothing is
    kept, and feedback says so."""
    directory: str | None = None
    """Where kept audio lives (owner-only); None for ``$XDG_DATA_HOME/earshot/feedback``."""
    max_mb: float = field(default=50.0, metadata=in_range(1, 10_000))
    """Most megabytes kept; the oldest clips go first."""
    max_age_days: float = field(default=90.0, metadata=in_range(1, 3650))
    """Clips older than this are deleted."""
    missed_s: float = field(default=3.0, metadata=in_range(1.0, 10.0))
    """Seconds of the latest audio kept when the user reports a miss."""

    def resolved_directory(self) -> Path:
        """The feedback folder's path."""
        if self.directory is None:
            return default_feedback_dir()
        return Path(self.directory).expanduser()


@dataclass(frozen=True)
class FleetSettings:
    """Fleet learning: the coordinator's run (`earshot fleet serve`) and a device's own part.

    A device (`earshot fleet join`) needs ``learning`` on; of this section it reads only the TLS
    CA (``ca_file``), its key (``node_key_file``) and its own differential privacy
    (``local_dp_*``).
    """

    words: tuple[str, ...] = ()
    """Wake words whose heads the fleet averages (configured in ``wake_words``); empty: all."""
    rounds: int = field(default=3, metadata=in_range(1, 1000))
    min_devices: int = field(default=2, metadata=in_range(1, 100_000))
    """Devices a round needs; a round with fewer contributions is not written."""
    round_timeout_s: float = field(default=300.0, metadata=in_range(10, 86_400))
    listen: str = "127.0.0.1:9092"
    """HOST:PORT of the coordinator (Flower's SuperLink); plain TCP only on loopback."""
    directory: str | None = None
    """Where each round's heads are written; None for ``$XDG_DATA_HOME/earshot/fleet``."""
    dp_noise_multiplier: float = field(default=0.0, metadata=in_range(0, 100))
    """Server-side differential privacy: Gaussian noise (times the clipping norm); 0 is off.
    The coordinator clips and noises each device's update, so it sees them unclipped: it bounds
    what the written heads reveal, not what the coordinator learns. Not with
    ``secure_aggregation``."""
    dp_clipping_norm: float = field(default=1.0, metadata=in_range(1e-6, 1e6))
    """... and the norm each device's update is clipped to."""
    secure_aggregation: bool = False
    """Coordinator: secure aggregation (SecAgg+): each device masks its update so that the
    coordinator can read only the sum of a round's updates, never one device's (it still sees
    each device's example count). Needs at least 2 devices a round."""
    local_dp_clipping_norm: float = field(default=0.0, metadata=in_range(0, 1e6))
    """Device: clip its own update (the head it trained minus the head it received) to this L2
    norm, over all the round's arrays, before sending; 0 is off. Bounds how much one round can
    carry of this device's data, whoever reads the update."""
    local_dp_noise_multiplier: float = field(default=0.0, metadata=in_range(0, 100))
    """Device: then add Gaussian noise of standard deviation this times
    ``local_dp_clipping_norm`` to every value sent (which needs a clipping norm); 0 is off. The
    device's own differential privacy: the coordinator never sees its update without noise."""
    ca_file: str | None = None
    """TLS: the CA certificate devices and coordinator trust (needed beyond loopback)."""
    cert_file: str | None = None
    """TLS: the coordinator's certificate ..."""
    key_file: str | None = None
    """... and its key."""
    authorized_keys: tuple[str, ...] = ()
    """Coordinator: node authentication. The public key files (``earshot fleet keygen``) of the
    only devices allowed to join; empty lets any device that trusts ``ca_file`` join. Needs
    TLS."""
    node_key_file: str | None = None
    """Device: its private key (``earshot fleet keygen``), for a coordinator with
    ``authorized_keys``; needs TLS."""

    def resolved_directory(self) -> Path:
        """Where the fleet's heads are written."""
        if self.directory is None:
            return data_dir() / "fleet"
        return Path(self.directory).expanduser()

    def _validate(self, path: str) -> None:
        """Refuse what cannot work together: keys without TLS, SecAgg+ with server-side DP.

        Raises
        ------
        ConfigError
            ``authorized_keys`` or ``node_key_file`` without ``ca_file``; ``secure_aggregation``
            with ``dp_noise_multiplier`` or with ``min_devices`` below 2; a local noise
            multiplier without a local clipping norm; an empty path.
        """
        for key in ("authorized_keys", "node_key_file"):
            if getattr(self, key) and self.ca_file is None:
                raise ConfigError(
                    f"{join_path(path, key)}: node authentication needs TLS; set "
                    f"{join_path(path, 'ca_file')} (and on the coordinator cert_file, key_file)"
                )
        if self.secure_aggregation and self.dp_noise_multiplier > 0:
            raise ConfigError(
                f"{join_path(path, 'dp_noise_multiplier')}: got {self.dp_noise_multiplier}, "
                "expected 0 with secure_aggregation (the coordinator never sees one device's "
                "update to clip it); set local_dp_* on the devices instead"
            )
        if self.secure_aggregation and self.min_devices < 2:
            raise ConfigError(
                f"{join_path(path, 'min_devices')}: got {self.min_devices}, expected at least 2 "
                "with secure_aggregation (the sum of one device's update is that update)"
            )
        if self.local_dp_noise_multiplier > 0 and self.local_dp_clipping_norm == 0:
            raise ConfigError(
                f"{join_path(path, 'local_dp_noise_multiplier')}: got "
                f"{self.local_dp_noise_multiplier}, which needs local_dp_clipping_norm above 0 "
                "(the noise is a multiple of it)"
            )
        paths = [(f"authorized_keys[{i}]", v) for i, v in enumerate(self.authorized_keys)]
        for key, value in [*paths, ("node_key_file", self.node_key_file)]:
            if value is not None and not value.strip():
                raise ConfigError(f"{join_path(path, key)}: got {show(value)}, expected a path")


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
    learning: LearningSettings = field(default_factory=LearningSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)

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
