"""ResNet-18/34/50 in 2D and 3D: MONAI's ResNet with torchvision's stem and `bias_downsample=False`.

With these settings the state dict has torchvision's exact key names and shapes (2D), so ImageNet and
RadImageNet weights load key for key, and MedicalNet's 3D weights load after dropping their `module.` prefix.
"""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck

from radfuse.models.base import FeatureBackbone

_LAYOUTS = {
    "resnet18": (ResNetBlock, [2, 2, 2, 2]),
    "resnet34": (ResNetBlock, [3, 4, 6, 3]),
    "resnet50": (ResNetBottleneck, [3, 4, 6, 3]),
}
_INPLANES = [64, 128, 256, 512]


class RadfuseResNet(FeatureBackbone, ResNet):
    """MONAI ResNet plus the radfuse feature interface; parameter names are MONAI's (= torchvision's)."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, arch: str, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        block, layers = _LAYOUTS[arch]
        ResNet.__init__(
            self, block=block, layers=layers, block_inplanes=_INPLANES, spatial_dims=spatial_dims,
            n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2, num_classes=num_classes,
            bias_downsample=False, shortcut_type="B",
        )
        self.spatial_dims = spatial_dims
        self.stage_channels = tuple(c * block.expansion for c in _INPLANES)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act(self.bn1(self.conv1(x))))

    # MONAI's own forward would be equivalent; ours keeps the one code path used by features and CAM.
    forward = FeatureBackbone.forward
