"""Weights load key for key from every supported layout; inflation, channel adaptation and refusals."""

from __future__ import annotations

import pytest
import torch

from radfuse.models import create_backbone
from radfuse.models.weight_formats import WeightsError, detect_format
from radfuse.models.weights import inflate, load_weights
from tests.models.conftest import random_state

RADIMAGENET_INDEX = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def _assert_loaded(model, expected: dict[str, torch.Tensor], skip_prefix: str = "fc.") -> None:
    state = model.state_dict()
    compared = 0
    for key, value in expected.items():
        if key.startswith(skip_prefix) or key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
        compared += 1
    assert compared > 50


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "shufflenet_v2_x1_0"])
def test_torchvision_round_trip(tmp_path, torchvision_shapes, name):
    state = random_state(torchvision_shapes[name])
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = create_backbone(name, 2, 3, 1000)
    report = load_weights(model, path)
    assert report.weights_format == "torchvision"
    assert report.fraction == 1.0 and not report.missing and not report.unexpected
    _assert_loaded(model, state, skip_prefix="-")  # the 1000-class head too


@pytest.mark.parametrize("wrapper", ["state_dict+module.", "model+backbone.", "model_state_dict+model."])
def test_wrapped_state_dicts(tmp_path, torchvision_shapes, wrapper):
    key, prefix = wrapper.split("+")
    state = random_state(torchvision_shapes["resnet18"], seed=1)
    torch.save({key: {prefix + k: v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    model = create_backbone("resnet18", 2, 3, num_classes=3)  # a new head: fc is left at random init
    report = load_weights(model, tmp_path / "w.pth")
    assert report.head_skipped == ["fc.weight", "fc.bias"]
    _assert_loaded(model, state)


def test_radimagenet_sequential_layout(tmp_path, torchvision_shapes):
    state = random_state(torchvision_shapes["resnet50"], seed=2)
    sequential = {}
    for key, value in state.items():
        child, _, rest = key.partition(".")
        if child != "fc":  # RadImageNet's release has no classification head
            sequential[f"backbone.{RADIMAGENET_INDEX[child]}.{rest}"] = value
    torch.save(sequential, tmp_path / "RadImageNet-ResNet50.pt")
    assert detect_format(sequential) == "radimagenet"
    model = create_backbone("resnet50", 2, 3, 3)
    report = load_weights(model, tmp_path / "RadImageNet-ResNet50.pt")
    assert report.fraction == 1.0 and report.missing == ["fc.weight", "fc.bias"]
    _assert_loaded(model, state)


def _as_medicalnet_3d(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """MedicalNet's 3D ResNet: cubic kernels, one input channel, no fc, no BN counters (old PyTorch)."""
    out = {}
    for key, shape in shapes.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if len(shape) == 4:
            shape = [shape[0], 1 if key == "conv1.weight" else shape[1], shape[2], shape[2], shape[3]]
        out[key] = shape
    return out


def test_medicalnet_layout(tmp_path, torchvision_shapes):
    state = random_state(_as_medicalnet_3d(torchvision_shapes["resnet18"]), seed=3)
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.conv_seg.0.weight"] = torch.randn(32, 512, 3, 3, 3)  # segmentation head, discarded
    torch.save({"state_dict": wrapped}, tmp_path / "resnet_18_23dataset.pth")
    model = create_backbone("resnet18", spatial_dims=3, in_channels=1, num_classes=2)
    report = load_weights(model, tmp_path / "resnet_18_23dataset.pth")
    assert report.weights_format == "medicalnet" and report.fraction == 1.0
    assert not report.unexpected
    _assert_loaded(model, state)


def test_lightning_checkpoint_round_trip(tmp_path):
    import lightning as L

    from radfuse.models.module import RadfuseClassifier
    from tests.models.tiny_data import TinyDataModule

    data = TinyDataModule(n_train=8, n_val=4, batch_size=4)
    trained = RadfuseClassifier("shufflenet_v2_x0_5", 2, 1, 3, class_counts=data.class_counts)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(trained, data)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    model = create_backbone("shufflenet_v2_x0_5", 2, 1, 3)
    report = load_weights(model, tmp_path / "run.ckpt")
    assert report.weights_format == "lightning" and report.fraction == 1.0
    _assert_loaded(model, trained.backbone.state_dict(), skip_prefix="-")


def _eval_with_random_weights(name, spatial_dims, in_channels, seed=0):
    torch.manual_seed(seed)
    model = create_backbone(name, spatial_dims, in_channels, 4)
    # random BN statistics, so the test also covers the inflated/adapted BatchNorm path
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_inflated_3d_net_reproduces_2d_logits_on_depth_constant_input(tmp_path, name):
    net2d = _eval_with_random_weights(name, 2, 3)
    torch.save(net2d.state_dict(), tmp_path / "w2d.pth")
    net3d = create_backbone(name, spatial_dims=3, in_channels=3, num_classes=4,
                            weights=tmp_path / "w2d.pth", inflate_mode="center").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net3d(x.unsqueeze(2).repeat(1, 1, 8, 1, 1)), net2d(x), rtol=1e-4, atol=1e-5)


def test_mean_inflation_reproduces_2d_conv_away_from_depth_borders():
    torch.manual_seed(0)
    conv2d = torch.nn.Conv2d(3, 5, 7, stride=2, padding=3, bias=False)
    conv3d = torch.nn.Conv3d(3, 5, 7, stride=2, padding=3, bias=False)
    conv3d.weight.data = inflate(conv2d.weight.data, depth=7, mode="mean")
    torch.testing.assert_close(conv3d.weight.sum(dim=2), conv2d.weight)  # I3D: weights sum back to 2D
    x = torch.randn(1, 3, 16, 16)
    out3d = conv3d(x.unsqueeze(2).repeat(1, 1, 20, 1, 1))
    out2d = conv2d(x)
    for depth in range(2, out3d.shape[2] - 2):  # slices whose 7-deep window lies inside the volume
        torch.testing.assert_close(out3d[:, :, depth], out2d, rtol=1e-4, atol=1e-5)


def test_rgb_weights_adapted_to_grey_input(tmp_path):
    net_rgb = _eval_with_random_weights("resnet18", 2, 3)
    torch.save(net_rgb.state_dict(), tmp_path / "rgb.pth")
    net_grey = create_backbone("resnet18", 2, 1, 4, weights=tmp_path / "rgb.pth").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net_grey(x), net_rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_partial_load_refused_unless_not_strict(tmp_path, torchvision_shapes):
    torch.save(random_state(torchvision_shapes["resnet18"]), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match="strict=false"):
        create_backbone("resnet34", 2, 3, 3, weights=tmp_path / "r18.pth")
    model = create_backbone("resnet18", 2, 3, 3)  # wrong family entirely
    torch.save(random_state(torchvision_shapes["shufflenet_v2_x1_0"]), tmp_path / "shuffle.pth")
    with pytest.raises(WeightsError, match="0.0%"):
        load_weights(model, tmp_path / "shuffle.pth")
    report = load_weights(create_backbone("resnet34", 2, 3, 3), tmp_path / "r18.pth", strict=False)
    # resnet18 has 2 blocks per stage, resnet34 3/4/6/3: only the shared blocks and the stem load
    assert 0.4 < report.fraction < 0.9 and report.missing


class Pickled:
    """An arbitrary class: torch.load(weights_only=True) must refuse to import and build it."""


def test_missing_and_unsafe_files_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="model.weights"):
        load_weights(create_backbone("resnet18"), tmp_path / "nope.pth")
    torch.save({"state_dict": Pickled()}, tmp_path / "pickled.pth")  # unpickling would run our code
    with pytest.raises(WeightsError, match="weights_only"):
        load_weights(create_backbone("resnet18"), tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match="weights_format"):
        torch.save(create_backbone("resnet18").state_dict(), tmp_path / "ok.pth")
        load_weights(create_backbone("resnet18"), tmp_path / "ok.pth", weights_format="keras")
