"""The one interface every radfuse backbone offers (timm-style), whatever its family and dimensionality.

A backbone is a stem followed by named stages; `fc` is the classification head. Subclasses define `_stem(x)`,
`stage_names` and `stage_channels`; everything else (pooled features of any stage, the penultimate embedding,
logits, the feature map Grad-CAM needs) is shared here.
"""

from __future__ import annotations

import torch
from torch import nn


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pool over every spatial axis: [B, C, *S] -> [B, C] (2D and 3D alike)."""
    return x.flatten(2).mean(-1)


class FeatureBackbone(nn.Module):
    """Mixin giving `forward_features`, `features(x, layer)`, `num_features` and `feature_layers`."""

    stage_names: tuple[str, ...] = ()
    stage_channels: tuple[int, ...] = ()
    spatial_dims: int = 2
    fc: nn.Linear

    def _stem(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        """Width of the penultimate (pooled) embedding, e.g. 2048 for ResNet-50."""
        return self.stage_channels[-1]

    @property
    def feature_layers(self) -> dict[str, int]:
        """Named stages whose pooled output `features(x, layer)` returns, with their channel counts."""
        return dict(zip(self.stage_names, self.stage_channels))

    def stage_maps(self, x: torch.Tensor, keep: str | None = None,
                   stop_early: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the stages; return (last map computed, map of stage `keep` or None).

        With `stop_early`, stages after `keep` are skipped (feature extraction does not need them).
        """
        if keep is not None and keep not in self.stage_names:
            raise KeyError(f"unknown layer {keep!r}; this backbone offers {list(self.stage_names)}")
        kept = None
        x = self._stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name == keep:
                kept = x
                # stop early: later stages cost time and nothing needs them
                if stop_early:
                    return x, kept
        return x, kept

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate embedding [B, num_features]."""
        return global_pool(self.stage_maps(x)[0])

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Pooled output of the named stage [B, feature_layers[layer]]."""
        return global_pool(self.stage_maps(x, keep=layer)[1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The classifier on a pooled embedding (`pre_logits`: the embedding itself), as timm's models split it."""
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def head_parameter_names(self) -> set[str]:
        return {f"fc.{name}" for name, _ in self.fc.named_parameters()}
