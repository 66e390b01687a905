"""The documented comparison of two deep tables, parsed from docs/fuse.md and README.md and run through the real
`python fuse.py` command line on a tiny cohort."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.data.cohort_factory import make_tiny_cohort
from tests.fuse.test_stage import _tables

ROOT = Path(__file__).resolve().parents[2]
MARKER = "+block@blocks.deep_imagenet="
TINY = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3", "use_classifiers=[lr]",
        "classifiers.lr.grid.C=[1.0]", "report.enabled=false", "n_jobs=1", "blocks.rad.lasso.n_splits=3",
        "blocks.rad.lasso.n_lambdas=5", "final.lasso.n_splits=3", "final.lasso.n_lambdas=5"]


def documented_commands(page: Path, marker: str) -> list[list[str]]:
    """Every `python fuse.py ...` command of a page's bash blocks that contains `marker`, as argv (shell quoting
    undone by shlex, as bash would; backslash-continued lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line.split(" #")[0]) for line in lines if marker in line and "fuse.py" in line]


def test_the_docs_show_the_second_deep_block_command():
    assert documented_commands(ROOT / "docs" / "fuse.md", MARKER)
    assert documented_commands(ROOT / "README.md", MARKER)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["docs/fuse.md", "README.md"])
def test_the_documented_second_deep_block_runs_as_written(tmp_path, page):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=30)
    out = tmp_path / "out"
    default, imagenet = out / "extract" / "default", out / "extract" / "imagenet"
    default.mkdir(parents=True)
    imagenet.mkdir(parents=True)
    paths = _tables(manifest, default)
    deep = pd.read_parquet(paths["deep"])
    deep.to_parquet(default / "deep_crossfit.parquet")  # the default deep block (deep_features=crossfit)
    for name in ("deep_crossfit.parquet", "deep_penultimate.parquet"):  # the second run's tables
        deep.assign(**{c: deep[c] * 2.0 for c in deep.columns[1:]}).to_parquet(imagenet / name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for argv in documented_commands(ROOT / page, MARKER):
        assert argv[:2] == ["python", "fuse.py"]
        run = f"doc{abs(hash(tuple(argv))) % 10**6}"
        command = [sys.executable, "fuse.py", *argv[2:], f"data.manifest={manifest}", f"paths.out={out}",
                   f"icc_table={paths['icc']}", f"run={run}", *TINY,
                   *(["blocks.deep.pca.n_components=3"] if "deep_features=embeddings" in argv else [])]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stderr[-4000:]}"
        metrics = json.loads((out / "fuse" / run / "metrics.json").read_text())
        sets = {fs for fs, m in metrics["feature_sets"].items() if "deep_imagenet" in m["blocks"]}
        assert sets, f"{shlex.join(argv)}: no feature set uses the second deep block"
        predictions = pd.read_parquet(out / "fuse" / run / "predictions.parquet")
        assert sets <= set(predictions.feature_set)
