"""Backbone registry: `create_backbone(name, spatial_dims, in_channels, num_classes, weights)`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from radfuse.models.base import FeatureBackbone
from radfuse.models.resnet import RadfuseResNet
from radfuse.models.shufflenet import ShuffleNetV2
from radfuse.models.shufflenet_v1 import SHUFFLENET_V1_ARCHS, ShuffleNetV1

BACKBONES: dict[str, Callable[..., FeatureBackbone]] = {
    "resnet18": partial(RadfuseResNet, "resnet18"),
    "resnet34": partial(RadfuseResNet, "resnet34"),
    "resnet50": partial(RadfuseResNet, "resnet50"),
    "shufflenet_v2_x0_5": partial(ShuffleNetV2, "shufflenet_v2_x0_5"),
    "shufflenet_v2_x1_0": partial(ShuffleNetV2, "shufflenet_v2_x1_0"),
    **{name: partial(ShuffleNetV1, **kwargs) for name, kwargs in SHUFFLENET_V1_ARCHS.items()},
}


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(  # noqa: PLR0913 - the registry signature of the issue
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 2,
    weights: str | Path | None = None,
    weights_format: str = "auto",
    strict: bool = True,
    inflate_mode: str = "mean",
) -> FeatureBackbone:
    """Build a backbone; with `weights`, load them from a local file (see `radfuse.models.weights`)."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; choose one of {available_backbones()}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    model = BACKBONES[name](spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
    if weights is not None:
        from radfuse.models.weights import load_weights

        load_weights(model, weights, weights_format=weights_format, strict=strict, inflate_mode=inflate_mode)
    return model
