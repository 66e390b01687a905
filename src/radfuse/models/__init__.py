"""radfuse.models: backbone registry, 2D/3D ResNet and ShuffleNetV2, weight loading, Lightning module, Grad-CAM."""

from radfuse.models.base import FeatureBackbone
from radfuse.models.registry import BACKBONES, available_backbones, create_backbone

__all__ = ["BACKBONES", "FeatureBackbone", "available_backbones", "create_backbone"]
