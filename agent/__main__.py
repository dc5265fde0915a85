"""``python -m agent`` and the ``earshot`` command: import the command line and run it.

Ctrl-C while the command line's modules are still loading ends with `EXIT_INTERRUPTED`, as it
does once a command runs, instead of a traceback.
"""

import sys

from agent import EXIT_INTERRUPTED


def run() -> int:
    """The ``earshot`` console command: its exit code."""
    try:
        from agent.cli.main import main
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return main()


if __name__ == "__main__":
    sys.exit(run())
