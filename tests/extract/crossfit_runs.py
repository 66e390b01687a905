"""Cross-fit train runs as train.py leaves them, without training: random fold classifiers with their config.yaml,
metrics.json and COMPLETE.json, and the extract config of a tiny 2-fold cohort (tests of extract and fuse)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from radfuse.artifacts import mark_complete
from tests.extract.synthetic import make_cohort

CONF = Path(__file__).resolve().parents[2] / "conf"


def extract_cfg(out: Path, manifest: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("extract", overrides=[
            f"paths.out={out}", f"data.manifest={manifest}", "extract.progress=false", "data.classes=[0,1]",
            "~data.clinical", "data.split.n_folds=2", "data.size=32", "data.channels=1", "data.mode=2d",
            "radiomics=fast", "extract.deep.source=null", *overrides])


def fold_run(out: Path, name: str, fold: int | None, cfg, epochs: int = 5, last_epoch: int | None = None,
             callbacks: dict | None = None) -> torch.nn.Module:
    """A train run folder as train.py leaves it: last.ckpt of a (random) classifier saved at `last_epoch` (default:
    the final one), metrics.json of an `epochs`-epoch run, config.yaml with data.fold (and `callbacks`)."""
    from radfuse.models.module import RadfuseClassifier

    torch.manual_seed(17 + (fold or 0))
    model = RadfuseClassifier(arch="resnet18", spatial_dims=2, in_channels=1, num_classes=2, classes=["0", "1"],
                              class_weights=None, input_mean=[0.1], input_std=[1.5])
    run_dir = out / "train" / name
    run_dir.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "epoch": epochs - 1 if last_epoch is None else last_epoch,
                "pytorch-lightning_version": __import__("lightning").__version__}, run_dir / "last.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({"epochs_completed": epochs, "validated_on": f"CV fold {fold}"}))
    data = OmegaConf.to_container(cfg.data, resolve=True)
    OmegaConf.save({"data": {**data, "fold": fold}, "callbacks": callbacks or {}}, run_dir / "config.yaml")
    mark_complete(run_dir, "train")  # written last, as the train stage does
    return model.eval()


def small_cohort(tmp_path: Path) -> Path:
    manifest = make_cohort(tmp_path / "data", n_cases=10, mask2=False)
    frame = pd.read_csv(manifest)
    frame.loc[frame["patient_id"] == "p04", "cohort"] = "external"
    frame.to_csv(manifest, index=False)
    return manifest
