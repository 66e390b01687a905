"""The demo-facing recipes of README.md and docs/ run as written, tiny (issue 12), the slow half of
tests/misc/test_documented_commands.py: `make demo`'s recipe (run by /bin/sh as make runs it, its `python` appending
only sizes), then, on its outputs and in the docs' order, documented fuse variants, `radfuse score`, `radfuse
export` and `python -m radfuse.evaluate`. Each command is looked up in the docs by its text, so
a command edited there is edited here (or this test fails, naming it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.misc.doc_commands import ROOT, Makefile, argv_of, collect, sized_python, stage_env

pytestmark = pytest.mark.slow

# 84 demo patients: 5 training patients of the rare class 2, one for each of the 5 folds the demo recipe trains
DATA = ["data.demo.n_patients=84", "data.size=32", "data.num_workers=0"]
SIZES = {
    "prepare": DATA,
    "train": [*DATA, "trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2",
              "data.batch_size=4"],
    "extract": [*DATA, "extract.workers=1", "extract.progress=false"],
    "fuse": [*DATA, "report.n_resamples=50", "n_jobs=1", "use_classifiers=[lr]", "classifiers.lr.grid.C=[1.0]",
             "blocks.rad.lasso.n_splits=3", "final.lasso.n_splits=3"],
}
# After `make demo`, in the docs' order (each must be documented exactly so), with the sizes appended.
AFTER_DEMO = [
    ("docs/fuse.md", "python fuse.py final=scale", ["report.enabled=false"]),
    ("docs/fuse.md", "python fuse.py deep_features=embeddings blocks.deep.pca.n_components=0.95",
     ["report.enabled=false", "run=embeddings"]),
    ("README.md", "radfuse score new_manifest.csv --study outputs/fuse/default --out scored/new", []),
    ("README.md", "radfuse export outputs/fuse/default --to study_bundle", []),
    ("README.md", "python -m radfuse.evaluate predictions.parquet --manifest manifest.csv --out report_dir",
     ["--n-resamples", "50"]),
]
SCRIPTS = {"train.py", "extract.py", "fuse.py"}


def documented(page: str, text: str):
    found = [c for c in collect() if c.page == page and c.text == text]
    assert found, f"{page} no longer shows `{text}`: update AFTER_DEMO to the command the page shows"
    return found[0]


def _argv(argv: list[str], sizes: list[str]) -> list[str]:
    """A documented argv as run from a user's folder: `python <script>` from the checkout, `radfuse` = the console
    script's entry point, this checkout's package."""
    if argv[0] == "radfuse":
        return [sys.executable, "-c", "import sys; from radfuse.score import cli; sys.exit(cli())", *argv[1:], *sizes]
    args = argv[1:]
    if args[0] in SCRIPTS:
        stage = args[0].removesuffix(".py")
        own = [s for s in SIZES[stage] if not ("final=scale" in args and s.startswith("final.lasso."))]
        return [sys.executable, str(ROOT / args[0]), *args[1:], *own, *sizes]
    return [sys.executable, *args, *sizes]


def test_make_demo_then_the_documented_fuse_variants_export_score_and_evaluate(tmp_path):
    env = stage_env(RADFUSE_TEST_SIZES=json.dumps(SIZES), RADFUSE_WEIGHTS_DIR=str(tmp_path / "weights"))
    out = tmp_path / "outputs"  # the default paths.out of commands run from tmp_path
    results = Makefile.read().run_recipe("demo", {"BIN": str(sized_python(tmp_path / "bin").parent),
                                                  "DEMO_OUT": str(out)}, ROOT, env)
    log = "\n".join(f"$ {r.args[-1]}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}" for r in results)
    assert all(r.returncode == 0 for r in results), log[-12000:]
    assert (out / "fuse" / "default" / "report.html").is_file()
    assert {f"demo_fold{k}" for k in range(5)} <= {p.name for p in (out / "train").iterdir()}

    # what the user brings for score and evaluate: new cases (the internal cohort, unlabelled) and the files named
    manifest = out / "demo_cohort" / "manifest.csv"
    splits = json.loads((out / "splits.json").read_text(encoding="utf-8"))
    from tests.stages.score_study import held_out_manifest

    held_out_manifest(manifest, tmp_path / "new_manifest.csv", cohorts=("internal",), splits=splits)
    for page, text, sizes in AFTER_DEMO:
        command = documented(page, text)
        if "radfuse.evaluate" in text:
            shutil.copy(out / "fuse" / "default" / "predictions.parquet", tmp_path / "predictions.parquet")
            frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
            frame["cohort"] = frame["patient_id"].map(splits["cohorts"])
            frame.to_csv(tmp_path / "manifest.csv", index=False)
        result = subprocess.run(_argv(argv_of(command), sizes), cwd=tmp_path, env=env, capture_output=True,
                                text=True, encoding="utf-8", errors="replace", timeout=3600)
        assert result.returncode == 0, f"{command.id}: {text}\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    assert (out / "fuse" / "embeddings" / "predictions.parquet").is_file()
    assert (tmp_path / "study_bundle").is_dir()
    scored = pd.read_csv(tmp_path / "scored" / "new" / "predictions.csv")
    assert len(scored) and {"prob__0", "pred", "warnings"} <= set(scored.columns)
    assert any(Path(tmp_path / "report_dir").glob("*.html"))
