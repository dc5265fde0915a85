"""The earshot agent: the daemon and its stages, the command line, settings and benchmarks.

Sub-packages, bottom up (each may import those listed before it, never those after):

- `agent.paths`: where shipped files live; private file modes.
- `agent.settings`: the one place YAML is read, validated into frozen dataclasses.
- `agent.capture`: audio sources (microphone, file, stdin) and the daemon's capture stage.
- `agent.egress`: the privacy gate, the only code that sends audio; its wire format, audit log,
  and a reference receiver.
- `agent.control`: the control socket, the event stream and hooks, the systemd unit, /proc.
- `agent.enroll`: recording and storing the user's enrollment takes.
- `agent.daemon`: the running agent: the loop, its state machine, end-pointing, local commands,
  and `agent.daemon.detectors`, the one module that builds its detectors.
- `agent.cli` and `agent.bench`: the ``earshot`` command and its benchmarks; nothing imports them.

``tests/test_layering.py`` enforces this order and finds any import cycle.
"""

EXIT_INTERRUPTED = 130
"""Exit code of every ``earshot`` command stopped by Ctrl-C (SIGINT), as shells report it."""
