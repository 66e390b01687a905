import os
import stat

import pandas as pd
import pytest

from radfuse.artifacts import atomic_path, write_json, write_parquet


def test_atomic_writes_leave_no_partial_file_and_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "table.parquet"
    write_parquet(target, pd.DataFrame({"case_id": ["a"], "x": [1.0]}))
    assert pd.read_parquet(target).shape == (1, 2)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "m.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert (tmp_path / "m.json").read_text().strip().startswith("{")  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "sub"]  # no temporary left behind


def test_files_follow_the_umask_at_write_time_and_the_umask_is_never_flipped(tmp_path):
    """Permissions are those the process's umask gives a new file when it is written (not a umask read once at
    import), and radfuse never sets the umask itself: flipping it, even briefly, is process-wide and races with
    other threads creating files."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import os, stat, sys\n"
        "calls = []\n"
        "real = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "from radfuse.artifacts import write_text\n"
        "real(0o027)\n"
        "path = write_text(sys.argv[1], 'x')\n"
        "print(oct(stat.S_IMODE(path.stat().st_mode)), calls)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.txt")], capture_output=True, text=True,
                          env={"PYTHONPATH": str(root / "src"), "PATH": ""}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0o640", "[]"]


def test_artefact_names_are_defined_only_in_artifacts():
    """Every file name a run writes or reads is a constant of radfuse.artifacts, spelled nowhere else as a whole
    string literal, and no other module defines a constant of the same name (RAD_PREFIX lived twice)."""
    import ast
    from pathlib import Path

    import radfuse.artifacts as artifacts

    package = Path(artifacts.__file__).parent
    constants = {k: v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, str)}
    file_names = {v for v in constants.values() if "." in v}
    allowed = {("score.py", "predictions.parquet")}  # the scored cohort's table (score's own folder, same name)
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "artifacts.py":
            continue
        name = path.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in file_names and (name, node.value) not in allowed:
                found.append(f"{name}:{node.lineno} spells {node.value!r}")
            if isinstance(node, ast.Assign) and node.col_offset == 0:
                found += [f"{name}:{node.lineno} redefines {t.id}" for t in node.targets
                          if isinstance(t, ast.Name) and t.id in constants]
    assert not found, found
    assert not hasattr(artifacts, "cache_dir")  # the crop cache's folder is radfuse.data.datamodule.crop_cache_dir
