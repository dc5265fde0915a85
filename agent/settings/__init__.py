"""earshot's settings: the one place YAML is read, validated into frozen dataclasses.

Every message names the field path, the value received and what is allowed, e.g.
``audio.block_ms: got 5, expected an integer in [10, 1000]``. Lower layers never see YAML: they
take the typed values as keyword arguments. Paths to files in a config file are relative to that
file's directory.

- `agent.settings.loading`: `load_settings` (the YAML file) and `parse_settings` (a parsed
  document or CLI overrides), and the resolving of file paths;
- `agent.settings.sections`: `Settings` and the dataclasses of its sections;
- `agent.settings.words`: the ``wake_words`` and ``commands`` sections;
- `agent.settings.endpoint`: the ``endpoint`` section, and the rule that audio leaves this machine
  only over https;
- `agent.settings.locations`: the XDG paths of the config file, data, enrollment and the socket;
- `agent.settings.schema`: the generic validator the dataclasses are checked with.

This module only re-exports the public names, so ``from agent.settings import X`` is the way in.
The package may import `agent.paths` and `kernels.errors`, and nothing else of the project.
"""

from agent.settings.endpoint import (
    ENDPOINT_KINDS,
    EndpointSettings,
    endpoint_url_parts,
    is_loopback_host,
)
from agent.settings.loading import load_settings, parse_settings
from agent.settings.locations import (
    data_dir,
    default_audit_path,
    default_config_path,
    default_model_dir,
    default_socket_path,
    enrollment_dir,
    runtime_dir,
    user_config_path,
)
from agent.settings.sections import (
    EVENT_KINDS,
    AudioSettings,
    CommandCaptureSettings,
    DetectionSettings,
    EventSettings,
    HookSettings,
    LearningSettings,
    LoggingSettings,
    ModelSettings,
    PrivacySettings,
    Settings,
)
from agent.settings.words import (
    BUILTIN_COMMAND_WORDS,
    COMMAND_ACTIONS,
    DEFAULT_FALSE_ACCEPTS_PER_HOUR,
    RESERVED_NAMES,
    LocalCommandSettings,
    WakeWordSettings,
)

__all__ = [
    "BUILTIN_COMMAND_WORDS",
    "COMMAND_ACTIONS",
    "DEFAULT_FALSE_ACCEPTS_PER_HOUR",
    "ENDPOINT_KINDS",
    "EVENT_KINDS",
    "RESERVED_NAMES",
    "AudioSettings",
    "CommandCaptureSettings",
    "DetectionSettings",
    "EndpointSettings",
    "EventSettings",
    "HookSettings",
    "LearningSettings",
    "LocalCommandSettings",
    "LoggingSettings",
    "ModelSettings",
    "PrivacySettings",
    "Settings",
    "WakeWordSettings",
    "data_dir",
    "default_audit_path",
    "default_config_path",
    "default_model_dir",
    "default_socket_path",
    "endpoint_url_parts",
    "enrollment_dir",
    "is_loopback_host",
    "load_settings",
    "parse_settings",
    "runtime_dir",
    "user_config_path",
]
