"""Benchmarks behind ``earshot bench SUITE``: each prints measured figures, never asserts them.

One module per suite, named after it; each has ``main(argv) -> int`` and runs as
``python -m agent.bench.SUITE``. May import anything below the CLI; nothing imports it.
"""
