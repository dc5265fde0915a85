"""The running agent: one asyncio loop from capture to the privacy gate, and its models.

`loop` (the `Daemon` and its tasks), `analysis` (the detect stage's worker), `session` (the state
of one wake word's command), `command_capture` (end-pointing from voice activity), `outbox` (the
forward stage's hand-over to the gate), `local_commands` (commands handled on the device),
`actions` (their shell actions) and `detectors` (the one place the agent builds its detectors
from the settings). May import the capture, egress, control and enroll stages, settings and
models; never the CLI.
"""
