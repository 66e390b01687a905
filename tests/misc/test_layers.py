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


# Program entry points that hand a command to a higher layer, each named with its function and the reason: the
# import is inside that function only, so importing the module never loads the higher layer.
ENTRY_POINTS = {
    ("data/validate.py", "study_main"): "`python -m radfuse.data.validate --config-dir STUDY` runs the study's "
                                        "pre-flight, which composes the stages' Hydra configs (stages.preflight)",
}


def _imports(path: Path, allowed_functions: set[str] = frozenset()) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(inner) for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef) and node.name in allowed_functions for inner in ast.walk(node)}
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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
        allowed = {function for (module, function) in ENTRY_POINTS if module == "/".join(parts)}
        for name in _imports(path, allowed):
            target = _layer(tuple(name.split(".")[1:2]))
            if target is not None and target > own:
                violations.append(f"{'/'.join(parts)} imports {name}")
    assert not violations, violations


def test_every_entry_point_exception_names_a_function_that_exists():
    for module, function in ENTRY_POINTS:
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        assert function in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, (module, function)
