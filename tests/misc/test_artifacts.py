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
