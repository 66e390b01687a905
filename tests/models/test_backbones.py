"""Every backbone builds in 2D and 3D, and its declared feature sizes match real outputs."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.resnet import ResNet

from radfuse.models import available_backbones, create_backbone
from tests.models.test_shufflenet_v1 import V1_NAMES

# Widths published for these networks (He et al. 2016; Ma et al. 2018 / torchvision), not read from our code.
EXPECTED_LAYERS = {
    "resnet18": {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
    "resnet34": {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
    "resnet50": {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "shufflenet_v2_x0_5": {"stage2": 48, "stage3": 96, "stage4": 192, "conv5": 1024},
    "shufflenet_v2_x1_0": {"stage2": 116, "stage3": 232, "stage4": 464, "conv5": 1024},
}


def test_registry_lists_every_backbone():
    assert available_backbones() == sorted([*EXPECTED_LAYERS, *V1_NAMES])  # ShuffleNet V1: test_shufflenet_v1.py


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", sorted(EXPECTED_LAYERS))
def test_declared_feature_sizes_match_outputs(name, spatial_dims):
    model = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, num_classes=3).eval()
    size = 32 if spatial_dims == 2 else 16
    x = torch.randn(2, 1, *([size] * spatial_dims))
    assert model.feature_layers == EXPECTED_LAYERS[name]
    assert model.num_features == list(EXPECTED_LAYERS[name].values())[-1]
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        assert model.forward_features(x).shape == (2, model.num_features)
        for layer, width in EXPECTED_LAYERS[name].items():
            assert model.features(x, layer).shape == (2, width)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resnet_forward_equals_monai_forward(spatial_dims):
    model = create_backbone("resnet18", spatial_dims=spatial_dims, in_channels=1, num_classes=4).eval()
    x = torch.randn(2, 1, *([32 if spatial_dims == 2 else 16] * spatial_dims))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ResNet.forward(model, x))


def test_penultimate_features_feed_the_head():
    model = create_backbone("shufflenet_v2_x0_5", 2, 3, 5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        embedding = model.forward_features(x)
        torch.testing.assert_close(model.features(x, "conv5"), embedding)
        torch.testing.assert_close(model.fc(embedding), model(x))


def test_shufflenet_has_torchvision_parameter_names(torchvision_shapes):
    state = create_backbone("shufflenet_v2_x1_0", 2, 3, 1000).state_dict()
    reference = torchvision_shapes["shufflenet_v2_x1_0"]
    assert set(state) == set(reference)
    assert {k: list(v.shape) for k, v in state.items()} == reference


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_has_torchvision_parameter_names(torchvision_shapes, name):
    state = create_backbone(name, 2, 3, 1000).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == torchvision_shapes[name]


def test_unknown_names_are_refused():
    with pytest.raises(KeyError, match="resnet50"):
        create_backbone("resnet51")
    with pytest.raises(KeyError, match="layer1"):
        create_backbone("resnet18").features(torch.randn(1, 3, 32, 32), "stage9")
