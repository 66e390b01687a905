"""Deep half of the extract stage: a trained checkpoint or pretrained weights -> deep_<layer>.parquet.

The crops are the training crops (the train run's own data config for a checkpoint), served deterministically
by the datamodule's predict loader: every ROI of the manifest, all cohorts, no augmentation, fixed order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.data.crops import CropConfig
from radfuse.data.datamodule import RadfuseDataModule
from radfuse.extract.deep import InputNormalized, extract_embeddings
from radfuse.stages.common import crop_config, load_cohort


def run_deep(cfg: DictConfig, folder: Path) -> Path:
    """Embed every ROI from `extract.deep.layer`; return the table's path."""
    deep = cfg.extract.deep
    cohort = load_cohort(cfg)
    sources = {"checkpoint": _from_checkpoint, "weights": _from_weights}
    if deep.source not in sources:
        raise ValueError(f"extract.deep.source={deep.source!r}: use checkpoint, weights or null")
    model, crop = sources[deep.source](cfg, len(cohort.classes))
    model = model.to(deep.device)
    datamodule = RadfuseDataModule(cohort.frame, cohort.splits, crop, cfg.paths.cache, cohort.classes,
                                   batch_size=int(deep.batch_size), num_workers=int(cfg.data.num_workers),
                                   augment=False)
    print(f"[radfuse] extract: deep embeddings ({deep.source}, layer {deep.layer}, tta={deep.tta}) of "
          f"{len(cohort.frame)} ROIs", flush=True)
    table = extract_embeddings(model, datamodule.predict_dataloader(), layer=deep.layer, tta=bool(deep.tta),
                               device=deep.device)
    return artifacts.write_parquet(folder / artifacts.deep_table_name(deep.layer), table)


def _from_checkpoint(cfg: DictConfig, _num_classes: int) -> tuple[InputNormalized, CropConfig]:
    from radfuse.models.module import load_classifier

    deep = cfg.extract.deep
    path = Path(deep.checkpoint) if deep.checkpoint else \
        artifacts.train_dir(cfg.paths.out, deep.train_run) / "best.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: train first (python train.py), point "
                                "extract.deep.checkpoint at a .ckpt, use extract.deep.source=weights, or "
                                "extract.deep.source=null for radiomics only")
    train_config = path.parent / artifacts.CONFIG_FILE
    # the crops the network was trained on, not whatever the extract config says
    data = OmegaConf.load(train_config).data if train_config.is_file() else cfg.data
    classifier = load_classifier(str(path))
    return InputNormalized(classifier.backbone, classifier.input_mean, classifier.input_std), crop_config(data)


def _from_weights(cfg: DictConfig, num_classes: int) -> tuple[InputNormalized, CropConfig]:
    from radfuse.models import create_backbone

    weights = cfg.extract.deep.weights
    crop = crop_config(cfg.data)
    backbone = create_backbone(weights.arch, crop.spatial_dims, crop.in_channels, num_classes,
                               weights=weights.file, weights_format=weights.format, strict=bool(weights.strict))
    shape = (1, -1) + (1,) * crop.spatial_dims
    mean = None if weights.input_mean is None else torch.tensor(list(weights.input_mean)).view(shape)
    std = None if weights.input_std is None else torch.tensor(list(weights.input_std)).view(shape)
    return InputNormalized(backbone, mean, std), crop
