"""The demo cohort is made by prepare (or by a config that says demo), never silently in a user's extract run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from radfuse.data import demo
from radfuse.stages.common import manifest_path
from radfuse.stages.study import with_study_groups

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def _data(stage: str, out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(stage, overrides=with_study_groups(stage, [f"paths.out={out}", *overrides], CONF)).data


@pytest.fixture
def made(monkeypatch):
    """Record demo-cohort generations instead of making one (the real one takes a minute)."""
    calls = []
    monkeypatch.setattr(demo, "make_cohort", lambda folder, **kwargs: calls.append(Path(folder)))
    return calls


@pytest.mark.parametrize("stage", ["train", "extract", "fuse"])
def test_a_stage_without_manifest_stops_and_names_the_fix(tmp_path, made, stage):
    data = _data(stage, tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        manifest_path(data)
    message = str(error.value)
    assert str(tmp_path / "demo_cohort" / "manifest.csv") in message
    assert "data.manifest=" in message and "python -m radfuse.stages.prepare" in message
    assert made == [] and not (tmp_path / "demo_cohort").exists()


def test_prepare_and_the_demo_preset_make_the_missing_demo_cohort(tmp_path, made):
    assert manifest_path(_data("prepare", tmp_path), make_demo=True) == tmp_path / "demo_cohort" / "manifest.csv"
    for stage in ("train", "extract", "fuse"):
        manifest_path(_data(stage, tmp_path, "experiment=demo"))
    assert made == [tmp_path / "demo_cohort"] * 4


def test_an_existing_demo_cohort_is_read_by_every_stage(tmp_path, made):
    (tmp_path / "demo_cohort").mkdir()
    (tmp_path / "demo_cohort" / "manifest.csv").write_text("case_id\n", encoding="utf-8")
    assert manifest_path(_data("extract", tmp_path)) == tmp_path / "demo_cohort" / "manifest.csv"
    assert made == []


def test_extract_run_without_manifest_exits_with_the_message(tmp_path):
    """The user's path: `python extract.py` with no manifest and no prepare run before it."""
    done = subprocess.run([sys.executable, "extract.py", f"paths.out={tmp_path}", "extract.deep.source=null",
                           "extract.deep.crossfit.train_runs=null"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no manifest" in done.stderr and "python -m radfuse.stages.prepare" in done.stderr
    assert not (tmp_path / "demo_cohort").exists()
