"""ShuffleNetV2 (Ma et al. 2018) in 2D and 3D.

The 2D network has torchvision's exact parameter names (`conv1.0`, `stage2.0.branch1.2`, ..., `conv5.0`, `fc`)
so torchvision's ImageNet weights load key for key; the 3D network has the same blocks with 3D convolutions,
so 2D weights inflate onto it tensor by tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from radfuse.models.base import FeatureBackbone

STAGE_OUT_CHANNELS = {
    "shufflenet_v2_x0_5": (24, 48, 96, 192, 1024),
    "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
}
STAGE_REPEATS = (4, 8, 4)


def _layers(spatial_dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, *spatial = x.shape
    x = x.view(batch, groups, channels // groups, *spatial).transpose(1, 2)
    return x.reshape(batch, channels, *spatial)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or duplicate (stride 2) channels, transform one half, concat, shuffle."""

    def __init__(self, inp: int, oup: int, stride: int, spatial_dims: int) -> None:
        super().__init__()
        conv, norm, _ = _layers(spatial_dims)
        self.stride = stride
        half = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                conv(inp, inp, 3, stride, 1, bias=False, groups=inp), norm(inp),
                conv(inp, half, 1, 1, 0, bias=False), norm(half), nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            conv(inp if stride > 1 else half, half, 1, 1, 0, bias=False), norm(half), nn.ReLU(inplace=True),
            conv(half, half, 3, stride, 1, bias=False, groups=half), norm(half),
            conv(half, half, 1, 1, 0, bias=False), norm(half), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(FeatureBackbone):
    stage_names = ("stage2", "stage3", "stage4", "conv5")

    def __init__(self, arch: str, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        conv, norm, pool = _layers(spatial_dims)
        widths = STAGE_OUT_CHANNELS[arch]
        self.spatial_dims = spatial_dims
        self.stage_channels = widths[1:]
        self.conv1 = nn.Sequential(conv(in_channels, widths[0], 3, 2, 1, bias=False), norm(widths[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = pool(kernel_size=3, stride=2, padding=1)
        inp = widths[0]
        for name, repeats, oup in zip(("stage2", "stage3", "stage4"), STAGE_REPEATS, widths[1:4]):
            units = [InvertedResidual(inp, oup, 2, spatial_dims)]
            units += [InvertedResidual(oup, oup, 1, spatial_dims) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            inp = oup
        self.conv5 = nn.Sequential(conv(inp, widths[-1], 1, 1, 0, bias=False), norm(widths[-1]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[-1], num_classes)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv1(x))
