"""The layering rule on the source: kernels <- dsp <- models <- agent; nothing imports agent.

Walks the AST of every module in the lower packages, so the rule costs nothing to keep.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What kernels may import besides the standard library and itself.
KERNELS_ALLOWED = {"numpy", "wgpu"}
FORBIDDEN = {
    "kernels": {"agent", "dsp", "models"},
    "dsp": {"agent", "models"},
    "models": {"agent"},
}
# Benchmark-only peers, imported lazily (inside functions) by the kernel benchmark.
BENCH_ONLY = {"onnx", "onnxruntime"}
BENCH_MODULE = REPO / "kernels" / "bench.py"


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for every absolute import in ``tree``."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend((name.split(".")[0], id(node) in top_level) for name in names)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_layers(package: str) -> None:
    for path in _modules(package):
        for name, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            assert name not in FORBIDDEN[package], f"{path.relative_to(REPO)} imports {name}"


def test_kernels_import_only_numpy_wgpu_and_the_standard_library() -> None:
    allowed = KERNELS_ALLOWED | set(sys.stdlib_module_names) | {"kernels"}
    for path in _modules("kernels"):
        for name, at_top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            where = path.relative_to(REPO)
            if name in BENCH_ONLY:
                assert path == BENCH_MODULE, f"{where} imports the benchmark-only {name}"
                assert not at_top, f"{where} imports {name} at module level; import it lazily"
                continue
            assert name in allowed, f"{where} imports {name}"


TRAINING_ONLY = {"scipy", "librosa", "matplotlib", "tqdm", "numba"}


def test_the_detection_path_loads_no_training_or_plotting_library() -> None:
    # The daemon imports the CLI, the streaming detector and wake-word models; none of them may
    # pull in the training stack (scipy, librosa), plotting or progress bars.
    code = (
        "import sys, agent.cli, models.detector, models.wake_model\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out))
    assert not loaded & TRAINING_ONLY, f"detection path imports {sorted(loaded & TRAINING_ONLY)}"
