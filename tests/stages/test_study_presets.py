"""One study preset for every stage (issue 12): `experiment=<name>` composes for prepare, train, extract and fuse,
and the stages agree on the data contract, the radiomics preset and the fuse blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from radfuse.stages.study import StudyPresetError, with_study_groups

CONF = Path(__file__).resolve().parents[2] / "conf"
STAGE_CONFIGS = {"prepare": "prepare", "train": "train", "extract": "extract", "fuse": "fuse"}


def _compose(stage: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(STAGE_CONFIGS[stage], overrides=with_study_groups(stage, list(overrides), CONF))


@pytest.mark.parametrize("preset", ["demo", "liu2025", "wang2025"])
def test_every_stage_composes_the_preset_and_agrees_on_the_data(preset):
    configs = {stage: _compose(stage, f"experiment={preset}") for stage in STAGE_CONFIGS}
    data = {stage: (cfg.data.mode, cfg.data.size, cfg.data.window, cfg.data.margin, tuple(cfg.data.classes),
                    cfg.data.demo.task) for stage, cfg in configs.items()}
    assert len(set(data.values())) == 1, data
    assert configs["fuse"].study.name == preset


def test_liu2025_sets_each_stage():
    train, extract = _compose("train", "experiment=liu2025"), _compose("extract", "experiment=liu2025")
    assert (train.backbone.name, train.model.arch, train.data.aspect) == ("radimagenet", "resnet50", "stretch")
    assert extract.radiomics.setting.binCount == 32 and extract.extract.icc.patients == 30


def test_wang2025_sets_each_stage():
    train, extract, fuse = (_compose(s, "experiment=wang2025") for s in ("train", "extract", "fuse"))
    assert (train.backbone.name, train.data.mode, train.data.window) == ("imagenet", "3d", "bone_w1200_l500")
    assert "LBP3D" in extract.radiomics.imageType
    assert fuse.blocks.rad.combat is None and fuse.blocks.rad.corr.method == "pearson"
    assert list(fuse.use_classifiers) == ["lr"] and list(fuse.data.classes) == ["acute", "chronic"]


def test_a_group_named_on_the_command_line_wins_and_unknown_presets_are_named():
    assert _compose("train", "experiment=liu2025", "backbone=imagenet").backbone.name == "imagenet"
    assert _compose("extract", "experiment=liu2025", "radiomics=fast").radiomics.setting.binWidth == 25
    with pytest.raises(StudyPresetError, match=r"experiment=nope.*presets: \['demo', 'liu2025', 'wang2025'\]"):
        with_study_groups("fuse", ["experiment=nope"], CONF)
