"""Deep embeddings through the stage: a RadfuseClassifier checkpoint and pretrained weights, on real crops of a
tiny synthetic cohort. Embeddings equal the backbone's own forward_features (after the classifier's input
normalisation) and do not depend on the batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from radfuse.models import create_backbone
from radfuse.models.module import RadfuseClassifier
from radfuse.stages import extract as stage
from tests.extract.synthetic import make_cohort

CONF = Path(__file__).resolve().parents[2] / "conf"
torch.set_num_threads(1)


def _cfg(out: Path, manifest: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("extract", overrides=[
            f"paths.out={out}", f"data.manifest={manifest}", "extract.progress=false", "data.classes=[0,1]",
            "~data.clinical", "data.split.n_folds=2", "data.size=32", "data.channels=1", "data.mode=2d",
            "radiomics=fast", *overrides])


def _checkpoint(path: Path) -> RadfuseClassifier:
    torch.manual_seed(0)
    model = RadfuseClassifier(arch="resnet18", spatial_dims=2, in_channels=1, num_classes=2, classes=["0", "1"],
                              class_weights=None, input_mean=[0.25], input_std=[2.0])
    with torch.no_grad():  # running statistics as after training, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": __import__("lightning").__version__}, path)
    return model.eval()


def test_checkpoint_embeddings_equal_forward_features_for_any_batch_size(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=6, mask2=False)
    checkpoint = tmp_path / "model.ckpt"
    model = _checkpoint(checkpoint)
    tables = []
    for batch_size in (1, 4):
        cfg = _cfg(tmp_path / "out", manifest, "extract.deep.source=checkpoint",
                   f"extract.deep.checkpoint={checkpoint}", f"extract.deep.batch_size={batch_size}",
                   f"run=b{batch_size}")
        summary = stage.run(cfg)
        tables.append(pd.read_parquet(summary["deep"]))
    assert tables[0].shape == (6, 1 + 512) and list(tables[0]["case_id"]) == [f"c{i:02d}" for i in range(6)]
    np.testing.assert_allclose(tables[0].iloc[:, 1:], tables[1].iloc[:, 1:], atol=1e-5)

    from radfuse.data.datamodule import cached_dataset, manifest_items
    from radfuse.stages.common import crop_config, load_cohort

    cohort = load_cohort(cfg)
    items = manifest_items(cohort.frame, cohort.classes)
    crops = torch.stack([cached_dataset(items, crop_config(cfg.data), None)[i]["image"] for i in range(6)])
    with torch.no_grad():
        expected = model.backbone.forward_features((crops - 0.25) / 2.0).numpy()
    np.testing.assert_allclose(tables[0].iloc[:, 1:].to_numpy(), expected, atol=1e-5)


def test_pretrained_weights_source_and_named_layer(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=4, mask2=False)
    backbone = create_backbone("resnet18", 2, 1, 2)
    weights = tmp_path / "weights.pth"
    torch.save(backbone.state_dict(), weights)
    summary = stage.run(_cfg(tmp_path / "out", manifest, "extract.deep.source=weights",
                             f"extract.deep.weights.file={weights}", "extract.deep.weights.arch=resnet18",
                             "extract.deep.layer=layer3"))
    table = pd.read_parquet(summary["deep"])
    assert Path(summary["deep"]).name == "deep_layer3.parquet"
    assert table.shape == (4, 1 + backbone.feature_layers["layer3"])
    assert table.columns[1] == "deep__layer3_0" and np.isfinite(table.iloc[:, 1:].to_numpy()).all()


def test_missing_checkpoint_says_what_to_do(tmp_path):
    manifest = make_cohort(tmp_path / "data", n_cases=4, mask2=False)
    with pytest.raises(FileNotFoundError, match="train first"):
        stage.run(_cfg(tmp_path / "out", manifest, "extract.deep.source=checkpoint"))
