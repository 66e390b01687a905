"""Deep embeddings of every ROI from a named layer of a backbone: `deep_<layer>.parquet` keyed by case_id.

The model is anything with radfuse's backbone interface: `forward_features(x)` (pooled penultimate embedding)
and `features(x, layer)` (pooled output of a named stage). Inference runs in `torch.inference_mode` with the
model in eval mode (BatchNorm running statistics, no dropout), so an ROI's embedding does not depend on the batch
it came in; flip test-time augmentation averages the embedding of the crop and of its left-right mirror.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from radfuse.artifacts import DEEP_PREFIX, KEY_COLUMN

PENULTIMATE = "penultimate"


class InputNormalized(nn.Module):
    """A backbone behind the per-channel input normalisation it was trained with (RadfuseClassifier's buffers)."""

    def __init__(self, backbone: nn.Module, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(1.0 if std is None else std, dtype=torch.float32))

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self._normalized(x))

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        return self.backbone.features(self._normalized(x), layer)


def embed(model: nn.Module, x: torch.Tensor, layer: str = PENULTIMATE, tta: bool = False) -> torch.Tensor:
    """[B, D] embedding of a batch from `layer` (`penultimate` = `forward_features`), optionally flip-averaged."""
    def one(batch: torch.Tensor) -> torch.Tensor:
        out = model.forward_features(batch) if layer == PENULTIMATE else model.features(batch, layer)
        return out.flatten(1)

    if not tta:
        return one(x)
    return (one(x) + one(torch.flip(x, dims=(-1,)))) / 2  # last axis: left-right in radfuse's crops


def extract_embeddings(model: nn.Module, dataloader: Iterable[Mapping], layer: str = PENULTIMATE,
                       tta: bool = False, device: str | torch.device | None = None) -> pd.DataFrame:
    """One row per ROI: `case_id`, `deep__<layer>_0` ... `deep__<layer>_<D-1>` (float32), in loader order."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    case_ids: list[str] = []
    chunks: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for batch in dataloader:
                chunks.append(embed(model, batch["image"].to(device), layer, tta).float().cpu().numpy())
                case_ids.extend(str(c) for c in batch["case_id"])
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("the dataloader yielded no batch: no ROI to embed")
    matrix = np.concatenate(chunks)
    duplicated = pd.Index(case_ids)[pd.Index(case_ids).duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"case ids {duplicated[:5]} appear more than once: case_id must be unique per ROI")
    frame = pd.DataFrame(matrix, columns=[f"{DEEP_PREFIX}{layer}_{i}" for i in range(matrix.shape[1])])
    frame.insert(0, KEY_COLUMN, case_ids)
    return frame
