"""The running agent: one asyncio loop from capture to the privacy gate, and its models.

`loop` (the `Daemon`), `session` (the state of one wake word's command), `command_capture`
(end-pointing from voice activity), `local_commands` (commands handled on the device) and
`detectors` (the one place the agent builds its detectors from the settings). May import the
capture, egress, control and enroll stages, settings and models; never the CLI.
"""
