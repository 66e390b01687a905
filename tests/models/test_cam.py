"""Grad-CAM: equals the class activation map at the last stage (closed form), any layer, 2D and 3D, PNGs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from radfuse.models import create_backbone
from radfuse.models.cam import grad_cam, save_overlay


@pytest.mark.parametrize("name,spatial_dims", [("resnet18", 2), ("shufflenet_v2_x0_5", 3)])
def test_last_stage_grad_cam_is_the_class_activation_map(name, spatial_dims):
    """With global average pooling and a linear head, d score / d map = w_c / N everywhere, so Grad-CAM at the
    last stage is Zhou et al.'s CAM: ReLU(sum_c w_tc * map_c), up to scale."""
    torch.manual_seed(0)
    model = create_backbone(name, spatial_dims, 1, 10).eval()
    size = 64 if spatial_dims == 2 else 32
    images = torch.randn(2, 1, *([size] * spatial_dims))
    with torch.no_grad():
        final, _ = model.stage_maps(images)
        target = (final.flatten(2).mean(-1) @ model.fc.weight.T).argmax(1)  # the class with most evidence
    heat = grad_cam(model, images, target=target)
    with torch.no_grad():
        cam = F.relu(torch.einsum("bc,bc...->b...", model.fc.weight[target], final)).unsqueeze(1)
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        cam = F.interpolate(cam, size=images.shape[2:], mode=mode, align_corners=False).squeeze(1)
        peak = cam.flatten(1).amax(1)
        assert (peak > 0).any()  # an all-negative class evidence gives an all-zero map (kept at zero)
        cam = cam / peak.clamp_min(1e-12).view(-1, *([1] * spatial_dims))
    assert heat.shape == (2, *([size] * spatial_dims))
    torch.testing.assert_close(heat, cam, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["layer1", "layer3"])
def test_inner_layers_give_maps_in_unit_range(layer):
    model = create_backbone("resnet18", 2, 1, 2)
    heat = grad_cam(model, torch.randn(3, 1, 32, 32), layer)
    assert heat.shape == (3, 32, 32) and model.training  # mode restored
    assert float(heat.min()) >= 0.0 and torch.allclose(heat.flatten(1).amax(1), torch.ones(3))


def test_overlay_png_for_2d_and_3d(tmp_path):
    png2d = save_overlay(torch.randn(3, 32, 32).numpy(), torch.rand(32, 32).numpy(), tmp_path / "a.png")
    png3d = save_overlay(torch.randn(1, 16, 16, 16).numpy(), torch.rand(16, 16, 16).numpy(), tmp_path / "b.png")
    for png in (png2d, png3d):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
