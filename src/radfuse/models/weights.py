"""Load a local weights file into a backbone: rename, inflate 2D->3D, adapt the first conv, report, refuse.

Only tensors whose name and (adapted) shape fit are loaded. The report lists matched, adapted, missing,
unexpected and mismatched tensors; a load that fills under `min_fraction` of the backbone (head excluded)
is refused unless `strict=False`, because a silently half-loaded "pretrained" network is worse than none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from radfuse.models.weight_formats import StateDict, WeightsError, read_weights_file, to_state_dict

log = logging.getLogger(__name__)

MIN_FRACTION = 0.9
INFLATE_MODES = ("mean", "center")


@dataclass
class LoadReport:
    source: str = ""
    weights_format: str = ""
    matched: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # inflated to 3D and/or first-conv channels changed
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    head_skipped: list[str] = field(default_factory=list)
    backbone_total: int = 0

    @property
    def fraction(self) -> float:
        loaded = sum(1 for k in self.matched + self.adapted if not _is_head(k) and _counts(k))
        return loaded / self.backbone_total if self.backbone_total else 0.0

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... (+{len(keys) - 6})" if len(keys) > 6 else "")

        lines = [
            f"weights {self.source} (format {self.weights_format}): {self.fraction:.1%} of backbone tensors loaded",
            f"  matched {len(self.matched)}, adapted {len(self.adapted)} [{few(self.adapted)}]",
            f"  missing {len(self.missing)} [{few(self.missing)}]",
            f"  unexpected {len(self.unexpected)} [{few(self.unexpected)}]",
            f"  shape mismatch {len(self.mismatched)} [{few(self.mismatched)}]",
            f"  head left at random init {len(self.head_skipped)} [{few(self.head_skipped)}]",
        ]
        return "\n".join(lines)


def _is_head(key: str) -> bool:
    return key.startswith("fc.")


def _counts(key: str) -> bool:
    # BatchNorm counters are bookkeeping, and old checkpoints (MedicalNet) predate them
    return not key.endswith("num_batches_tracked")


def inflate(weight: torch.Tensor, depth: int, mode: str = "mean") -> torch.Tensor:
    """2D conv kernel [O, I, H, W] -> 3D [O, I, depth, H, W].

    `mean` (I3D): repeat along depth and divide by depth, so a depth-constant input gives the 2D response away
    from the depth borders. `center`: the 2D kernel on the middle slice, zeros elsewhere, so a depth-constant input
    gives exactly the 2D response everywhere (zero padding included).
    """
    if mode == "mean":
        return weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    if mode == "center":
        out = weight.new_zeros(weight.shape[0], weight.shape[1], depth, *weight.shape[2:])
        out[:, :, depth // 2] = weight
        return out
    raise ValueError(f"inflate mode must be one of {INFLATE_MODES}, got {mode!r}")


def adapt_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv input channels: sum the source channels (a grey image fed to every RGB channel gives the same
    response), then share that sum over the target's channels (which carry copies of one grey image)."""
    grey = weight.sum(dim=1, keepdim=True)
    return grey.repeat(1, in_channels, *([1] * (weight.ndim - 2))) / in_channels


def adapt_tensor(source: torch.Tensor, target_shape: torch.Size, inflate_mode: str) -> torch.Tensor | None:
    """Return `source` reshaped to `target_shape` by inflation / channel adaptation, or None if it cannot be."""
    tensor = source
    if tensor.ndim == 4 and len(target_shape) == 5:
        tensor = inflate(tensor, target_shape[2], inflate_mode)
    if tensor.ndim == len(target_shape) >= 3 and tensor.shape[1] != target_shape[1] and tensor.shape[0] == target_shape[0]:
        tensor = adapt_channels(tensor, target_shape[1])
    return tensor if tensor.shape == target_shape else None


def match_state_dict(
    target: StateDict, source: StateDict, inflate_mode: str = "mean"
) -> tuple[StateDict, LoadReport]:
    """Pick, per target tensor, the source tensor of the same name (adapted where needed)."""
    report = LoadReport(unexpected=sorted(set(source) - set(target)))
    loadable: StateDict = {}
    for key, want in target.items():
        if not _is_head(key) and _counts(key):
            report.backbone_total += 1
        if key not in source:
            (report.missing if _counts(key) else []).append(key)
            continue
        have = source[key]
        if have.shape == want.shape:
            loadable[key] = have.to(want.dtype)
            report.matched.append(key)
        elif (adapted := adapt_tensor(have, want.shape, inflate_mode)) is not None:
            loadable[key] = adapted.to(want.dtype)
            report.adapted.append(key)
        else:
            (report.head_skipped if _is_head(key) else report.mismatched).append(key)
    return loadable, report


def load_state_dict_into(
    model: nn.Module, source: StateDict, strict: bool = True, inflate_mode: str = "mean",
    min_fraction: float = MIN_FRACTION, source_name: str = "<state dict>", weights_format: str = "",
) -> LoadReport:
    loadable, report = match_state_dict(model.state_dict(), source, inflate_mode)
    report.source, report.weights_format = source_name, weights_format
    log.info("%s", report.summary())
    if strict and report.fraction < min_fraction:
        raise WeightsError(
            f"{report.summary()}\nrefusing a load that fills {report.fraction:.1%} (< {min_fraction:.0%}) of the "
            f"backbone: check model.arch / model.weights_format match the file, or set model.strict=false to "
            f"accept a partial load"
        )
    model.load_state_dict(loadable, strict=False)
    return report


def load_weights(
    model: nn.Module, path: str | Path, weights_format: str = "auto", strict: bool = True,
    inflate_mode: str = "mean", min_fraction: float = MIN_FRACTION,
) -> LoadReport:
    """Load a local weights file of any supported layout into `model` (see module docstring)."""
    state, fmt = to_state_dict(read_weights_file(path), weights_format)
    return load_state_dict_into(model, state, strict, inflate_mode, min_fraction, str(path), fmt)


__all__ = ["LoadReport", "WeightsError", "adapt_channels", "inflate", "load_state_dict_into", "load_weights"]
