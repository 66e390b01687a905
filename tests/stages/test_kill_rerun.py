"""Kill-safety (issue 16): `kill -9` extract.py and fuse.py at random points, rerun, and the outputs equal those of
an uninterrupted run; an interrupted folder never looks complete. Slow: several real subprocess runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.extract.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["data.classes=[0,1]", "~data.clinical", "data.split.n_folds=2", "extract.progress=false"]
FUSE = ["data.classes=[0,1]", "~data.clinical", "data.split.n_folds=2", "use_classifiers=[lr]", "report.enabled=false",
        "~feature_sets", "+feature_sets={rad:[rad]}", "blocks.rad.combat=null", "cv.n_splits=2"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "disabled"}


def _command(script: str, out: Path, manifest: Path, extra: list[str]) -> list[str]:
    return [sys.executable, script, f"paths.out={out}", f"data.manifest={manifest}", *extra]


def _finish(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _kill_after(command: list[str], delay: float) -> None:
    child = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    time.sleep(delay)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


@pytest.mark.slow
def test_extract_and_fuse_killed_at_random_points_give_the_uninterrupted_outputs(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=12, mask2=True)
    frame = pd.read_csv(manifest)
    frame["label"] = [str(i % 2) for i in range(len(frame))]
    frame.to_csv(manifest, index=False)
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    extract_args = COMMON + ["radiomics=fast", "extract.deep.source=null"]
    _finish(_command("extract.py", clean, manifest, extract_args))
    _finish(_command("fuse.py", clean, manifest, FUSE))

    rng = random.Random(7)
    trials = []
    for stage, args in (("extract.py", extract_args), ("fuse.py", FUSE)):
        for _ in range(3):
            delay = rng.uniform(2.0, 12.0)
            _kill_after(_command(stage, broken, manifest, args), delay)
            folder = broken / ("extract" if stage == "extract.py" else "fuse") / "default"
            marker = folder / "COMPLETE.json"
            trials.append((stage, round(delay, 1), marker.is_file()))
            if marker.is_file():  # the run had finished before the kill: the marker vouches for every file
                recorded = json.loads(marker.read_text(encoding="utf-8"))["files"]
                assert all((folder / name).is_file() for name in recorded)
        _finish(_command(stage, broken, manifest, args))

    for name in ("radiomics.parquet", "icc.parquet", "failures.csv", "grey_levels.csv"):
        pd.testing.assert_frame_equal(_read(broken / "extract" / "default" / name),
                                      _read(clean / "extract" / "default" / name))
    for name in ("predictions.parquet", "cv_results.csv"):
        a, b = _read(broken / "fuse" / "default" / name), _read(clean / "fuse" / "default" / name)
        pd.testing.assert_frame_equal(a.drop(columns=[c for c in a if "time" in c]),
                                      b.drop(columns=[c for c in b if "time" in c]))
    print("kill trials (stage, seconds before kill -9, complete when killed):", trials)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
