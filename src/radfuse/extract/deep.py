"""Deep embeddings of every ROI from a named layer of a backbone: `deep_<layer>.parquet` keyed by case_id.

The model is anything with radfuse's backbone interface: `forward_features(x)` (pooled penultimate embedding)
and `features(x, layer)` (pooled output of a named stage). A layer is `penultimate`, one of the backbone's stages
(`feature_layers`), or any other name of the backbone's `named_modules()` (e.g. `layer3.1.conv2`): that module's
output on its first call in `forward_features`, global-average pooled to one value per channel. Inference runs in
`torch.inference_mode` with the model in eval mode (BatchNorm running statistics, no dropout), so an ROI's
embedding does not depend on the batch it came in; flip test-time augmentation averages the embedding of the
crop and of its left-right mirror.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from radfuse.artifacts import DEEP_PREFIX, KEY_COLUMN

PENULTIMATE = "penultimate"
N_EXAMPLES = 8  # module names shown in the error for an unknown layer


class UnknownLayer(ValueError):
    """`extract.deep.layer` names no stage or module of the backbone (or one the embedding pass never runs)."""


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


def backbone_of(model: nn.Module) -> nn.Module:
    """The network whose module names `layer` refers to (the backbone behind an InputNormalized)."""
    return model.backbone if isinstance(model, InputNormalized) else model


def stage_layers(model: nn.Module) -> list[str]:
    """The backbone's named stages (`feature_layers`, else `stage_names`), served by its own `features`."""
    backbone = backbone_of(model)
    layers = getattr(backbone, "feature_layers", None)
    return list(layers) if layers is not None else list(getattr(backbone, "stage_names", ()))


def check_layer(model: nn.Module, layer: str) -> None:
    """Refuse a layer that is neither `penultimate`, a stage, nor a module name, listing the valid names."""
    if layer == PENULTIMATE or layer in stage_layers(model):
        return
    names = [n for n, _ in backbone_of(model).named_modules() if n]
    if layer in names:
        return
    raise UnknownLayer(f"extract.deep.layer={layer!r} is not a layer of this backbone. "
                       f"{_layer_choices(model)}{_close_to(layer, names)}")


def _layer_choices(model: nn.Module) -> str:
    stages = stage_layers(model)
    names = [n for n, _ in backbone_of(model).named_modules() if n and n not in stages]
    inner = [n for n in names if "." in n and n.split(".")[0] in stages] or names
    step = max(1, len(inner) // N_EXAMPLES)
    examples = inner[step // 2::step][:N_EXAMPLES]
    return (f"Use {PENULTIMATE!r} (pooled last stage), a stage: {stages}, or any of model.named_modules(), "
            f"e.g. {', '.join(examples)} ({len(names)} modules).")


def _close_to(layer: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(layer, names, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


class _Captured(Exception):
    """Raised by the forward hook once the wanted module has run: nothing after it needs computing."""


def module_output(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of the backbone's module `layer` on its first call in `forward_features(x)`, pooled to [B, C]."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output)
        raise _Captured

    handle = backbone_of(model).get_submodule(layer).register_forward_hook(hook)
    try:
        model.forward_features(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise UnknownLayer(f"extract.deep.layer={layer!r} is a module that the embedding pass (forward_features) "
                           f"never runs, e.g. the classification head. {_layer_choices(model)}")
    out = captured[0]
    if not isinstance(out, torch.Tensor):
        raise UnknownLayer(f"extract.deep.layer={layer!r} returns {type(out).__name__}, not one tensor: pick a "
                           "module that outputs a feature map")
    return out.flatten(2).mean(-1) if out.dim() > 2 else out  # global average pool over every spatial axis


def embed(model: nn.Module, x: torch.Tensor, layer: str = PENULTIMATE, tta: bool = False) -> torch.Tensor:
    """[B, D] embedding of a batch from `layer` (`penultimate` = `forward_features`, a stage = `features`, any
    other module name = that module's pooled output), optionally flip-averaged."""
    def one(batch: torch.Tensor) -> torch.Tensor:
        if layer == PENULTIMATE:
            out = model.forward_features(batch)
        elif layer in stage_layers(model):
            out = model.features(batch, layer)
        else:
            out = module_output(model, batch, layer)
        return out.flatten(1)

    if not tta:
        return one(x)
    return (one(x) + one(torch.flip(x, dims=(-1,)))) / 2  # last axis: left-right in radfuse's crops


def extract_embeddings(model: nn.Module, dataloader: Iterable[Mapping], layer: str = PENULTIMATE,
                       tta: bool = False, device: str | torch.device | None = None) -> pd.DataFrame:
    """One row per ROI: `case_id`, `deep__<layer>_0` ... `deep__<layer>_<D-1>` (float32), in loader order."""
    check_layer(model, layer)
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
