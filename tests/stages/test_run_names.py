"""Sweep run names (`key=value,key=value`, from train.py's override_dirname) as values of other keys, in the
quoting README.md and docs/ show, through the real command line (bash, as a user types it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.stages.train_helpers import DATA_OVERRIDES, ROOT, run_train_py, tiny_cohort

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUOTED = re.compile(r"""'((?:extract\.deep|report)\.train_run)="([^"]+)"'""")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def documented_lines() -> list[str]:
    """Every command line of the pages' bash blocks that passes a run name in quotes."""
    lines = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if QUOTED.search(line)]
    return lines


def _bash(line: str, *extra: str) -> subprocess.CompletedProcess:
    command = line.split(" #")[0].replace("python ", f"{sys.executable} ", 1)
    return subprocess.run(["bash", "-c", " ".join([command, *extra])], cwd=ROOT, env=ENV, capture_output=True,
                          text=True)


def test_the_docs_pass_sweep_run_names_with_quotes():
    keys = {QUOTED.search(line).group(1) for line in documented_lines()}
    assert keys == {"extract.deep.train_run", "report.train_run"}


@pytest.mark.parametrize("line", documented_lines())
def test_each_documented_quoted_run_name_reaches_its_key(line):
    key, name = QUOTED.search(line).groups()
    assert "=" in name and "," in name
    result = _bash(line, "--cfg", "job")
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load(result.stdout)
    value = config
    for part in key.split("."):
        value = value[part]
    assert value == name


@pytest.mark.slow
def test_a_sweep_run_is_embedded_by_its_quoted_name(tmp_path):
    manifest = tiny_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    trained = run_train_py(manifest, tmp_path, cache, "-m", "debug=tiny", "model.arch=shufflenet_v2_x0_5",
                           "data.margin=2", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = [p.name for p in (tmp_path / "train").iterdir()]
    assert "=" in run and "," in run
    line = next(line for line in documented_lines() if line.startswith("python extract.py"))
    documented_name = QUOTED.search(line).group(2)
    line = line.replace(documented_name, run)  # the same quoting, with this sweep's run name
    tiny = [f"data.manifest={manifest}", f"paths.out={tmp_path}", f"paths.cache={cache}", *DATA_OVERRIDES,
            "radiomics=fast", "extract.progress=false", "extract.deep.layer=stage3"]
    result = _bash(line, *[f"'{o}'" for o in tiny])
    assert result.returncode == 0, result.stderr[-3000:]
    extract_run = re.search(r"\brun=(\S+)", line.split("'", 2)[-1]).group(1)
    folder = tmp_path / "extract" / extract_run
    assert pd.read_parquet(folder / "deep_stage3.parquet").shape[0] == len(pd.read_csv(manifest))
    assert yaml.safe_load((folder / "config.yaml").read_text())["extract"]["deep"]["train_run"] == run
