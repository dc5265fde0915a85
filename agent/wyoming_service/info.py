"""The ``info`` event `earshot wyoming` answers ``describe`` with.

One `wyoming.info.WakeProgram` named "earshot", whose models are the configured wake words: the
name a client asks for in ``detect``, the phrase, the languages, and a version that changes when
the detector is retrained or re-enrolled.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

from wyoming.info import Attribution, Info, WakeModel, WakeProgram

from models.wake.detector import WakeWord

PROGRAM_NAME = "earshot"
"""The wake program's name in ``info``, and its attribution's."""
WAKE_LANGUAGES = ["en"]
"""Languages of every wake word: the detectors are trained on English speech synthesizers."""
ATTRIBUTION = Attribution(name=PROGRAM_NAME, url="")
"""Who made the program and its models (the package names no home page)."""


def package_version() -> str | None:
    """The installed earshot's version (package metadata), None when it is not installed."""
    try:
        return importlib.metadata.version("earshot")
    except importlib.metadata.PackageNotFoundError:
        return None


def model_version(wake: WakeWord) -> str | None:
    """The detector's version: its weights' checksum (12 digits), else the package's version."""
    manifest = wake.model.manifest
    if manifest is not None and manifest.sha256:
        return manifest.sha256[:12]
    return package_version()


def model_description(wake: WakeWord) -> str:
    """One line about a wake word's detector for the client's user interface."""
    check = ", only for the enrolled speaker" if wake.verify_speaker else ""
    return (
        f"wake word {wake.model.phrase!r}, detected on this machine "
        f"(threshold {wake.threshold:.3f}{check})"
    )


def wake_info(wake_words: Sequence[WakeWord]) -> Info:
    """The ``info`` answer: one wake program listing every configured wake word."""
    version = package_version()
    models = [
        WakeModel(
            name=wake.name,
            attribution=ATTRIBUTION,
            installed=True,
            description=model_description(wake),
            version=model_version(wake),
            languages=list(WAKE_LANGUAGES),
            phrase=wake.model.phrase,
        )
        for wake in wake_words
    ]
    program = WakeProgram(
        name=PROGRAM_NAME,
        attribution=ATTRIBUTION,
        installed=True,
        description="Private wake-word detection: the audio is processed on this machine and "
        "never leaves it",
        version=version,
        models=models,
    )
    return Info(wake=[program])
