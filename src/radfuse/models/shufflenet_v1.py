"""ShuffleNet V1 (Zhang et al. 2018) in 2D and 3D, beside V2, because Wang 2025's network is V1-style.

A V1 unit is a bottleneck whose two 1x1 convolutions are grouped (g groups) with a channel shuffle between them,
so that every group of the second convolution sees every group of the first (Fig. 2 of the paper; Fig. 4 of Wang
2025). Widths follow Table 1 (stem 24 channels; Stage2 144 / 200 / 240 / 272 / 384 for g = 1 / 2 / 3 / 4 / 8,
doubling per stage; 4 / 8 / 4 units); a width multiplier scales them, rounded to multiples of 4 g so that the
bottleneck (a quarter of a unit's output) splits into g groups. Parameter names are radfuse's own (`conv1`,
`stage2.0.gconv1`, ..., `fc`): there is no torchvision release of V1; `radfuse.models.weight_formats` converts
Megvii's ShuffleNet-Series checkpoints (the reference implementation) onto these names.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from radfuse.models.base import FeatureBackbone
from radfuse.models.shufflenet import _layers, channel_shuffle

STEM_CHANNELS = 24
STAGE2_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # Table 1, ShuffleNet 1x
STAGE_REPEATS = (4, 8, 4)
STAGE_NAMES = ("stage2", "stage3", "stage4")
# registry name -> constructor arguments; 1x for every group setting of Table 1, and 0.5x
SHUFFLENET_V1_ARCHS = {
    **{f"shufflenet_v1_g{g}": {"groups": g, "width_mult": 1.0} for g in STAGE2_CHANNELS},
    **{f"shufflenet_v1_g{g}_x0_5": {"groups": g, "width_mult": 0.5} for g in STAGE2_CHANNELS},
}


class ShortcutPool(nn.Module):
    """3x3 average pool, stride 2, zero padding 1 counted in the mean (PyTorch's default), in 2D or 3D.

    The padding is explicit because `avg_pool3d` refuses inputs smaller than its kernel before padding, which a
    32-voxel 3D crop reaches in Stage3.
    """

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        return pool(F.pad(x, (1, 1) * self.spatial_dims), kernel_size=3, stride=2)


def stage_widths(groups: int, width_mult: float = 1.0) -> tuple[int, int, int, int]:
    """(stem, Stage2, Stage3, Stage4) output channels for `groups` and a width multiplier."""
    if groups not in STAGE2_CHANNELS:
        raise ValueError(f"ShuffleNet V1 groups must be one of {sorted(STAGE2_CHANNELS)}, got {groups}")
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    step = 4 * groups
    stage2 = max(step, int(math.floor(STAGE2_CHANNELS[groups] * width_mult / step + 0.5)) * step)
    stem = groups * math.ceil(STEM_CHANNELS * width_mult / groups)  # stride-2 units need (out - in) % g == 0
    return stem, stage2, 2 * stage2, 4 * stage2


class ShuffleUnit(nn.Module):
    """1x1 GConv -> BN -> ReLU -> shuffle -> 3x3 depthwise conv (stride) -> BN -> 1x1 GConv -> BN, then added to
    the input (stride 1) or concatenated after its 3x3 average pool (stride 2), then ReLU.

    The bottleneck has a quarter of the unit's output channels. `first_pointwise_groups=1` is the paper's first
    unit of Stage2, whose input (the 24-channel stem) is too narrow to group.
    """

    def __init__(self, inp: int, oup: int, stride: int, groups: int, spatial_dims: int,  # noqa: PLR0913
                 first_pointwise_groups: int | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and inp != oup:
            raise ValueError(f"a stride-1 unit adds its input: inp ({inp}) must equal oup ({oup})")
        conv, norm, _ = _layers(spatial_dims)
        mid, out = oup // 4, oup - inp if stride == 2 else oup
        self.stride, self.groups = stride, groups
        self.gconv1 = conv(inp, mid, 1, bias=False, groups=first_pointwise_groups or groups)
        self.bn1 = norm(mid)
        self.dwconv = conv(mid, mid, 3, stride, 1, bias=False, groups=mid)
        self.bn2 = norm(mid)
        self.gconv2 = conv(mid, out, 1, bias=False, groups=groups)
        self.bn3 = norm(out)
        self.shortcut = ShortcutPool(spatial_dims) if stride == 2 else nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the shortcut joins it."""
        y = F.relu(self.bn1(self.gconv1(x)))
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        return self.bn3(self.gconv2(self.bn2(self.dwconv(y))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return F.relu(x + self.branch(x))
        return F.relu(torch.cat((self.shortcut(x), self.branch(x)), dim=1))


class ShuffleNetV1(FeatureBackbone):
    """Stem (3x3 conv stride 2, BN, ReLU, 3x3 max pool stride 2), Stages 2-4 of ShuffleUnits, global pool, `fc`."""

    stage_names = STAGE_NAMES

    def __init__(self, groups: int, spatial_dims: int, in_channels: int, num_classes: int,  # noqa: PLR0913
                 width_mult: float = 1.0) -> None:
        super().__init__()
        conv, norm, pool = _layers(spatial_dims)
        stem, *widths = stage_widths(groups, width_mult)
        self.spatial_dims, self.groups, self.width_mult = spatial_dims, groups, width_mult
        self.stage_channels = tuple(widths)
        self.conv1 = nn.Sequential(conv(in_channels, stem, 3, 2, 1, bias=False), norm(stem), nn.ReLU(inplace=True))
        self.maxpool = pool(kernel_size=3, stride=2, padding=1)
        inp = stem
        for index, (name, repeats, oup) in enumerate(zip(STAGE_NAMES, STAGE_REPEATS, widths)):
            units = [ShuffleUnit(inp, oup, 2, groups, spatial_dims, first_pointwise_groups=1 if index == 0 else None)]
            units += [ShuffleUnit(oup, oup, 1, groups, spatial_dims) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            inp = oup
        self.fc = nn.Linear(inp, num_classes)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))
