"""`python -m radfuse.init`: a study in one file that every stage composes from, with nothing of the demo in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from radfuse.data.build.__main__ import main as build_main
from radfuse.init import main as init_main
from radfuse.stages import prepare
from radfuse.stages.study import CONF_DIR, STAGES, with_study_groups
from tests.data.build.spine_cases import LUMBAR, write_case

REPO = CONF_DIR.parent


def _compose(stage: str, study_dir: Path, *extra: str):
    overrides = with_study_groups(stage, ["experiment=study", f"hydra.searchpath=[file://{study_dir}]", *extra])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(stage, overrides=overrides)


@pytest.fixture
def built_manifest(spine_ct, tmp_path):
    grades = []
    for p in range(10):  # 5 patients per class: the automatic 8:2 split needs 5 of each
        write_case(spine_ct, tmp_path / "study" / f"P{p}", shift=p, files=("ct", "vertebrae"))
        grades += [{"patient_id": f"P{p}", "roi": name, "label": p % 2, "age": 55 + p} for name in LUMBAR]
    pd.DataFrame(grades).to_csv(tmp_path / "grades.csv", index=False)
    manifest = tmp_path / "built" / "manifest.csv"
    assert build_main(["totalseg", str(tmp_path / "study"), "--out", str(manifest), "--masks", "vertebrae.nii.gz",
                       "--rois", *LUMBAR, "--grades", str(tmp_path / "grades.csv")]) == 0
    return manifest


def test_study_from_a_built_manifest_composes_for_every_stage_with_nothing_of_the_demo(built_manifest, tmp_path,
                                                                                       capsys):
    study = tmp_path / "my_study"
    assert init_main([str(study), "--manifest", str(built_manifest)]) == 0
    printed = capsys.readouterr().out
    assert f"--config-dir {study} experiment=study" in printed and "radfuse.data.validate" in printed
    for stage in STAGES:
        cfg = _compose(stage, study)
        assert dict(cfg.data.clinical) == {"age": "numeric"}, stage  # no age/sex/t_score of the demo
        assert list(cfg.data.classes) == ["0", "1"] and cfg.data.manifest == str(built_manifest.resolve())
        assert cfg.paths.out == str(study.resolve() / "outputs") and cfg.data.demo is None
    fuse = _compose("fuse", study)
    assert fuse.blocks.rad.combat is None and fuse.blocks.rad.icc is None  # one site, no second reader
    assert "fused+clinical" in fuse.feature_sets
    assert _compose("extract", study).extract.deep.crossfit.train_runs == "cv"
    folds = _compose("prepare", study).data.split.n_folds
    assert folds == 4  # 5 patients per class, 80 % of them in training
    prepare.run(_compose("prepare", study))  # validates, splits and fills the crop cache with no other override
    splits = json.loads((study / "outputs" / "splits.json").read_text())
    assert set(splits["cohorts"]) == {f"P{p}" for p in range(10)}


def test_template_study_without_clinical_columns_drops_the_clinical_feature_set(tmp_path, capsys):
    study = tmp_path / "new"
    assert init_main([str(study), "--classes", "acute", "chronic"]) == 0
    assert "fill" in capsys.readouterr().out
    header = (study / "manifest.csv").read_text().strip().split(",")
    assert header[:6] == ["case_id", "patient_id", "image", "mask", "mask_label", "label"]
    assert "`mask_label`" in (study / "MANIFEST.md").read_text(encoding="utf-8")
    fuse = _compose("fuse", study)
    assert fuse.data.clinical is None and list(fuse.data.classes) == ["acute", "chronic"]
    assert "fused+clinical" not in fuse.feature_sets and list(fuse.feature_sets) == ["rad", "deep", "fused"]
    assert list(_compose("fuse", study, "data.clinical={age: numeric}").data.clinical) == ["age"]
    assert init_main([str(study)]) == 2  # never overwrites a study file without --force


def test_entry_script_finds_the_study_through_config_dir(tmp_path):
    study = tmp_path / "s"
    assert init_main([str(study), "--classes", "0", "1"]) == 0
    result = subprocess.run([sys.executable, str(REPO / "extract.py"), "--config-dir", str(study), "experiment=study",
                             "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
    assert result.returncode == 0, result.stderr
    assert "t_score" not in result.stdout and "classes:\n  - '0'" in result.stdout
    assert "featureClass" in result.stdout or "radiomics" in result.stdout  # the study's radiomics=fast group
