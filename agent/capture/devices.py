"""Audio input devices as PortAudio sees them: listing, choosing one, enumerating again.

``earshot devices`` lists them, ``audio.device`` in the config (or ``--device``) names one by
index or name, and the microphone source opens what `find_input_device` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels.errors import AudioError
from kernels.native_stderr import quiet_native_stderr


class NoInputDeviceError(AudioError):
    """The machine has no audio input device at all (no microphone, no sound server)."""


@dataclass(frozen=True)
class InputDevice:
    """An audio input device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    default_samplerate_hz: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, in PortAudio's order."""
    with quiet_native_stderr("audio devices"):  # importing sounddevice starts PortAudio's probe
        import sounddevice as sd

        try:
            default_input = sd.default.device[0]
            devices = sd.query_devices()
            host_apis = sd.query_hostapis()
        except sd.PortAudioError as err:
            raise AudioError(f"cannot query audio devices: {err}") from err
    return [
        InputDevice(
            index=i,
            name=d["name"],
            host_api=host_apis[d["hostapi"]]["name"],
            max_input_channels=d["max_input_channels"],
            default_samplerate_hz=float(d["default_samplerate"]),
            is_default=(i == default_input),
        )
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again (after a hot-plug or a sound-server restart)."""
    import sounddevice as sd

    with quiet_native_stderr("audio devices"):
        sd._terminate()
        sd._initialize()


def _describe(devices: list[InputDevice]) -> str:
    if not devices:
        return "no input devices are available"
    return "available input devices: " + "; ".join(f"[{d.index}] {d.name}" for d in devices)


def find_input_device(spec: str | int | None) -> InputDevice:
    """Resolve a device by index, by name (exact, then case-insensitive substring), or the default.

    Raises
    ------
    AudioError
        No such device, an ambiguous name, or no input devices at all; the message lists the
        available devices.
    """
    devices = list_input_devices()
    if not devices:
        raise NoInputDeviceError("no audio input device found (no microphone or sound server)")
    if spec is None or spec == "":
        default = [d for d in devices if d.is_default]
        return default[0] if default else devices[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        matches = [d for d in devices if d.index == int(spec)]
    else:
        matches = [d for d in devices if d.name == spec] or [
            d for d in devices if spec.lower() in d.name.lower()
        ]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several input devices" if matches else "is not an input device"
    raise AudioError(f"audio.device: {spec!r} {problem}; {_describe(matches or devices)}")
