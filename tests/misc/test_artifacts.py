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
