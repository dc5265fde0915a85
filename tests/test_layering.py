"""The layering rule on the source, module by module; no import cycles anywhere.

The project is a stack of rooms (sub-packages), each allowed to import only the rooms below it:

    kernels <- dsp <- models.{paths, speech, nn, base, wake, enroll}
            <- agent.{paths, settings, capture|egress|control, enroll, daemon, cli|bench}

Rooms on one rung (capture, egress and control; cli and bench) do not import each other. The rule
walks the AST of every module, imports inside functions and ``TYPE_CHECKING`` blocks included, so
a lazy import cannot hide an upward arrow or a cycle, and keeping it costs nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("kernels", "dsp", "models", "agent")
RUNGS: tuple[tuple[str, ...], ...] = (
    ("kernels",),
    ("dsp",),
    ("models", "models.paths"),
    ("models.speech",),
    ("models.nn",),
    ("models.base",),
    ("models.wake",),
    ("models.enroll",),
    ("agent", "agent.paths"),
    ("agent.settings", "agent.private_files"),
    ("agent.capture", "agent.egress", "agent.control", "agent.wyoming_service"),
    ("agent.enroll", "agent.learning"),
    ("agent.daemon",),
    ("agent.learning.improve",),
    ("agent.fleet",),
    ("agent.cli", "agent.bench"),
    ("agent.__main__",),
)
"""Rooms from the bottom up; a module may import its own room and any room on a lower rung."""
RANK = {room: rung for rung, rooms in enumerate(RUNGS) for room in rooms}
KERNELS_ALLOWED = {"numpy", "wgpu"}
BENCH_ONLY = {"onnx", "onnxruntime"}
"""Read by the ONNX importer and run by two benchmarks as a peer, imported lazily (inside
functions) by them alone."""
ONNX_USERS = {
    REPO / "agent" / "bench" / "engine.py",
    REPO / "agent" / "bench" / "embedding.py",
    REPO / "models" / "nn" / "onnx_import.py",
}


def module_name(path: Path, root: Path) -> str:
    """``agent/daemon/loop.py`` -> ``agent.daemon.loop``; a package's ``__init__`` is itself."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, importer: str) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import in ``tree``, relative ones resolved."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import name`` may name a module of pkg; the graph keeps what exists.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.extend((name, id(node) in top_level) for name in names)
    return found


def module_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Every module of ``packages`` under ``root`` and the project modules it imports."""
    paths = {
        module_name(path, root): path for pkg in packages for path in (root / pkg).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {m for m, _ in imports(tree, name) if m in paths and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room(module: str) -> str:
    """The room a module lives in: its longest prefix named in `RUNGS`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANK:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} lives in no room of RUNGS; add its sub-package there")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a room from a lower rung, or between two rooms on one rung."""
    wrong = []
    for importer, imported in sorted(graph.items()):
        here = room(importer)
        for target in sorted(imported):
            there = room(target)
            if there != here and RANK[there] >= RANK[here]:
                wrong.append(f"{importer} imports {target} ({here} may not import {there})")
    return wrong


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph(REPO, PACKAGES)


def test_no_module_imports_a_room_above_its_own_or_beside_it(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_no_import_cycle_between_modules(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_nothing_outside_the_cli_imports_the_cli(graph: dict[str, set[str]]) -> None:
    cli = {"agent.cli", "agent.__main__"}
    outside = {m: deps for m, deps in graph.items() if room(m) not in cli}
    assert [m for m, deps in outside.items() if any(room(d) == "agent.cli" for d in deps)] == []


def test_a_planted_cycle_and_an_upward_import_are_caught(tmp_path: Path) -> None:
    # Two modules that import each other, one of them lazily, plus a daemon module reaching up
    # into the CLI: the same walk that checks the project must report both.
    (tmp_path / "agent" / "daemon").mkdir(parents=True)
    (tmp_path / "agent" / "cli").mkdir()
    for package in ("agent", "agent/daemon", "agent/cli"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "agent" / "daemon" / "loop.py").write_text("from agent.cli import wake\n")
    (tmp_path / "agent" / "cli" / "wake.py").write_text(
        "def load():\n    from agent.daemon.loop import run\n"
    )
    planted = module_graph(tmp_path, ["agent"])
    assert cycles(planted) == [["agent.cli.wake", "agent.daemon.loop"]]
    assert (
        "agent.daemon.loop imports agent.cli.wake (agent.daemon may not import agent.cli)"
        in upward_imports(planted)
    )


def test_kernels_import_only_numpy_wgpu_and_the_standard_library() -> None:
    allowed = KERNELS_ALLOWED | set(sys.stdlib_module_names) | {"kernels"}
    for path in sorted((REPO / "kernels").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, _ in imports(tree, module_name(path, REPO)):
            assert name.split(".")[0] in allowed, f"{path.relative_to(REPO)} imports {name}"


def test_onnx_is_imported_lazily_by_the_importer_and_benchmarks_only() -> None:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for name, at_top in imports(tree, module_name(path, REPO)):
                if name.split(".")[0] not in BENCH_ONLY:
                    continue
                where = path.relative_to(REPO)
                assert path in ONNX_USERS, f"{where} imports the importer-only {name}"
                assert not at_top, f"{where} imports {name} at module level; import it lazily"


TRAINING_ONLY = {"scipy", "librosa", "matplotlib", "tqdm", "numba", "onnx", "onnxruntime"}


def _loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(sorted(sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(ast.literal_eval(out))


def test_the_detection_path_loads_no_training_or_plotting_library() -> None:
    # The daemon imports the CLI, the streaming detector and wake-word models; none of them may
    # pull in the training stack (scipy, librosa), plotting or progress bars.
    loaded = _loaded_by("import agent.cli.main, agent.daemon.loop, agent.daemon.detectors")
    tops = {m.split(".")[0] for m in loaded}
    assert not tops & TRAINING_ONLY, f"detection path imports {sorted(tops & TRAINING_ONLY)}"


def test_the_daemon_starts_without_any_cli_module() -> None:
    loaded = _loaded_by("import agent.daemon.loop, agent.daemon.detectors")
    assert sorted(m for m in loaded if m.startswith("agent.cli")) == []
