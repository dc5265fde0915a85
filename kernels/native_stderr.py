"""Keep native libraries' probing chatter off the console.

Enumerating GPU adapters and audio devices loads C libraries that print to file descriptor 2
while they probe: libwayland's "error: XDG_RUNTIME_DIR is invalid or not set in the
environment." when EGL looks for a display, ALSA's "ALSA lib pcm.c:...", JACK's "Cannot connect
to server socket". None of it is an error of earshot's, and Python's ``sys.stderr`` cannot catch
it. `quiet_native_stderr` points descriptor 2 at a temporary file for the duration of a probe,
then logs the known probing lines at DEBUG and writes anything else back to the console
unchanged, so a real failure still shows.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_LOGGER = logging.getLogger(__name__)

PROBE_NOISE = re.compile(
    r"XDG_RUNTIME_DIR|^ALSA lib |^Cannot connect to server|^jack server|^JackShmReadWritePtr"
    r"|^Connection failure|pa_context_connect|^Expression '.*' failed in|^MESA: |^libEGL warning"
    r"|^Home directory not accessible|^W: \[pulseaudio\]|^E: \[pulseaudio\]"
)
"""Lines native libraries print while probing for displays and sound servers."""


@contextmanager
def quiet_native_stderr(what: str) -> Iterator[None]:
    """Capture descriptor 2 while ``what`` (e.g. "GPU adapters") is probed; see the module.

    Parameters
    ----------
    what : str
        Named in the DEBUG log lines, so ``--debug`` shows what printed them.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all (a daemon with stderr closed): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
    kept = []
    for line in text.splitlines():
        if PROBE_NOISE.search(line):
            _LOGGER.debug("%s: %s", what, line)
        elif line.strip():
            kept.append(line)
    if kept:
        print("\n".join(kept), file=sys.stderr)
