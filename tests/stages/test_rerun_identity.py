"""Bit-identical reruns (issue 16): prepare, train and extract run twice with the same seed on this machine (CPU,
one thread), each run into its own output folder with its own caches, give byte-identical files. Only what names
the output folder (config.yaml, and COMPLETE.json, which hashes it) and the wall time in metrics.json differ.
Slow: two chains of real stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from radfuse.stages.study import with_study_groups
from tests.data.cohort_factory import make_tiny_cohort

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3", "data.size=32"]


def _compose(stage: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(stage, overrides=with_study_groups(stage, overrides, CONF))


def _chain(manifest: Path, out: Path) -> None:
    from radfuse.stages import extract, prepare, train

    common = [f"data.manifest={manifest}", f"paths.out={out}", *DATA]
    prepare.run(_compose("prepare", common))
    train.run(_compose("train", [*common, "debug=tiny", "model.arch=shufflenet_v2_x0_5", "trainer.max_epochs=2",
                                 "run=r"]))
    extract.run(_compose("extract", [*common, "radiomics=fast", "extract.progress=false",
                                     "extract.deep.source=checkpoint", "extract.deep.train_run=r"]))


def _files(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and "hydra" not in p.parts}


@pytest.mark.slow
def test_prepare_train_and_extract_rerun_byte_identical(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=16)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run in ("a", "b"):
            _chain(manifest, tmp_path / run)
    finally:
        torch.set_num_threads(previous)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == sorted(b)
    folder_named = {"prepare/config.yaml", "train/r/config.yaml", "extract/default/config.yaml",
                    "train/r/COMPLETE.json", "extract/default/COMPLETE.json", "train/r/metrics.json"}
    differ = [name for name in a if name not in folder_named and a[name].read_bytes() != b[name].read_bytes()]
    assert differ == []
    for name in ("splits.json", "prepare/provenance.json", "train/r/best.ckpt", "train/r/last.ckpt",
                 "train/r/logs/version_0/metrics.csv", "extract/default/radiomics.parquet",
                 "extract/default/deep_penultimate.parquet", "extract/default/provenance.json"):
        assert name in a  # the files that matter are among those compared
    assert len([n for n in a if n.startswith("cache/crops-")]) == 16
    first, second = (json.loads(f["train/r/metrics.json"].read_text()) for f in (a, b))
    assert first.pop("train_seconds") >= 0 and second.pop("train_seconds") >= 0 and first == second
    assert (tmp_path / "a" / "train/r/config.yaml").read_text().replace(str(tmp_path / "a"), "OUT") == \
        (tmp_path / "b" / "train/r/config.yaml").read_text().replace(str(tmp_path / "b"), "OUT")
