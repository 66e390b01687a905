"""`extract.deep.layer` = any named module of the backbone, through the stage and the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from radfuse.models import create_backbone
from radfuse.stages import extract as stage
from tests.extract.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[2]
TINY = ["extract.progress=false", "data.classes=[0,1]", "~data.clinical", "data.split.n_folds=2", "data.size=32",
        "data.channels=1", "data.mode=2d", "radiomics=fast", "extract.deep.source=weights",
        "extract.deep.weights.arch=shufflenet_v2_x0_5"]


def _weights(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(create_backbone("shufflenet_v2_x0_5", 2, 1, 2).state_dict(), path)
    return path


def test_a_shufflenet_sub_block_through_the_stage(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=4, mask2=False)
    layer = "stage3.1.branch2.5"
    overrides = [f"paths.out={tmp_path / 'out'}", f"data.manifest={manifest}", *TINY,
                 f"extract.deep.weights.file={_weights(tmp_path / 'w.pth')}", f"extract.deep.layer={layer}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        summary = stage.run(compose("extract", overrides=overrides))
    assert Path(summary["deep"]).name == f"deep_{layer}.parquet"
    width = create_backbone("shufflenet_v2_x0_5", 2, 1, 2).get_submodule(layer).out_channels
    table = pd.read_parquet(summary["deep"])
    assert table.shape == (4, 1 + width) and table.columns[1] == f"deep__{layer}_0"


def test_an_unknown_layer_on_the_command_line_ends_in_a_message_listing_the_names(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=4, mask2=False)
    command = [sys.executable, "extract.py", f"paths.out={tmp_path / 'out'}", f"data.manifest={manifest}", *TINY,
               f"extract.deep.weights.file={_weights(tmp_path / 'w.pth')}", "extract.deep.layer=layer3"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "extract.deep.layer='layer3'" in result.stderr and "stage3" in result.stderr
    assert "named_modules()" in result.stderr and "Traceback" not in result.stderr
