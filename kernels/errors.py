"""earshot's exception family.

It lives in the bottom layer so that every layer (kernels <- dsp <- models <- agent) can raise
its own member without importing a higher layer. Messages name the field or file, the value
received and what is allowed.
"""


class EarshotError(Exception):
    """Base of every error earshot raises on purpose; the CLI prints these without a traceback."""

    exit_code: int = 1


class ConfigError(EarshotError):
    """A configuration file or command-line value is invalid."""

    exit_code = 2


class AudioError(EarshotError):
    """An audio file or device cannot be read, or its contents are unusable."""

    exit_code = 3


class DeviceError(EarshotError):
    """No usable compute adapter, or a shader failed to compile or validate."""

    exit_code = 4


class ModelError(EarshotError):
    """A model file is missing, corrupt, or does not match the live front end."""

    exit_code = 5
