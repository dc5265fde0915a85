"""What a command leaves behind on the device: its shell action, and a debug copy of its audio.

A local command whose action is ``shell`` runs its line with ``/bin/sh -c``, detached (its own
session, no input), with the command's event in its environment
(`agent.control.events.hook_environment`, which leaves out the endpoint's secrets); the daemon
never waits for it. With
``privacy.debug_audio_dir`` set, the audio of each command that was not streamed while spoken is
written there, whole, as a private WAV file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np

from agent.control.events import hook_environment
from agent.paths import PRIVATE_DIR, PRIVATE_FILE
from dsp.constants import SAMPLE_RATE_HZ


class ShellActions:
    """The shell actions local commands have started; finished ones are forgotten."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, run: str, event: dict[str, object], withheld: Collection[str] = ()) -> None:
        """Start ``run`` with ``event`` in its environment, and return without waiting.

        The variables named in ``withheld`` (the endpoint's secrets) are left out of it.
        """
        self._running = [p for p in self._running if p.poll() is None]
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        env = hook_environment(event, line, withheld)
        self._running.append(
            subprocess.Popen(
                ["/bin/sh", "-c", run], env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        )


def save_debug_audio(utterance: np.ndarray, directory: Path, number: int) -> Path:
    """Write a command's audio into ``directory`` (made private if new) and return its path.

    The name holds the local time and ``number``, which tells apart commands saved within one
    second.
    """
    import soundfile

    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    path = directory / f"command-{time.strftime('%Y%m%dT%H%M%S')}-{number}.wav"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as f:
        soundfile.write(f, utterance, SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
    return path
