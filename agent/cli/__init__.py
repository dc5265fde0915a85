"""The ``earshot`` command line: argument parsing and the glue from arguments to the agent.

One module per group of commands (``run``, ``train``/``eval base``, wake words, enrollment,
endpoint tools, control); `agent.cli.main` builds the parser and maps exit codes. May import every
other part of the agent; nothing imports it. ``earshot bench`` loads `agent.bench` by name.
"""
