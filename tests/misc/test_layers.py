"""The package's layering (issue 17): no import runs from a lower layer up to a higher one.

Layers, low to high: artifacts / run_lock (shared names and file rules) < data < models, fuse, evaluate < extract
(uses models) < stages (the only code that reads Hydra configs) < the command-line apps at the top (predict, score,
export, init). The test reads every module's imports (top-level and inside functions) with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "radfuse"
LAYERS = {"artifacts": 0, "run_lock": 0, "data": 1, "models": 2, "fuse": 2, "evaluate": 2, "extract": 3,
          "stages": 4, "predict": 5, "score": 5, "export": 5, "init": 5, "__init__": 0, "__main__": 5}


def _layer(parts: tuple[str, ...]) -> int | None:
    name = parts[0].removesuffix(".py") if parts else ""
    return LAYERS.get(name)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "radfuse" or n.startswith("radfuse.")]


def test_no_import_reaches_up_a_layer():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        own = _layer(parts)
        assert own is not None, f"{path}: add its package to LAYERS"
        for name in _imports(path):
            target = _layer(tuple(name.split(".")[1:2]))
            if target is not None and target > own:
                violations.append(f"{'/'.join(parts)} imports {name}")
    assert not violations, violations
