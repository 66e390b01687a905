"""ShuffleNet V1 (Zhang et al. 2018): widths of Table 1, the channel shuffle, one unit's size, 2D/3D, training.

Expected numbers are worked out by hand from the paper (Table 1, Sec. 3.2), not read from radfuse's code.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from radfuse.models import available_backbones, create_backbone
from radfuse.models.module import RadfuseClassifier
from radfuse.models.shufflenet import channel_shuffle
from radfuse.models.shufflenet_v1 import ShuffleUnit
from tests.models.tiny_data import TinyDataModule

# Table 1 of Zhang et al. 2018 (ShuffleNet 1x): output channels of Stage2 / Stage3 / Stage4 per group count g.
PAPER_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                8: (384, 768, 1536)}
# 0.5x: half of each width, rounded to a multiple of 4 g (so that the bottleneck, a quarter, splits into g groups);
# 1: 72, 2: 100 -> 104 (multiple of 8), 3: 120, 4: 136 -> 144 (multiple of 16), 8: 192.
HALF_WIDTHS = {1: 72, 2: 104, 3: 120, 4: 144, 8: 192}


def _expected_layers(name: str) -> dict[str, int]:
    groups = int(name.split("_g")[1].split("_")[0])
    stage2 = HALF_WIDTHS[groups] if name.endswith("_x0_5") else PAPER_WIDTHS[groups][0]
    return {"stage2": stage2, "stage3": 2 * stage2, "stage4": 4 * stage2}


V1_NAMES = [f"shufflenet_v1_g{g}" for g in PAPER_WIDTHS] + [f"shufflenet_v1_g{g}_x0_5" for g in PAPER_WIDTHS]


def test_every_group_setting_and_width_is_registered():
    assert set(V1_NAMES) <= set(available_backbones())
    assert sorted(n for n in available_backbones() if n.startswith("shufflenet_v1")) == sorted(V1_NAMES)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", V1_NAMES)
def test_output_shapes_at_32_px(name, spatial_dims):
    model = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, num_classes=2).eval()
    x = torch.randn(2, 1, *([32] * spatial_dims))
    expected = _expected_layers(name)
    assert model.feature_layers == expected
    assert model.num_features == expected["stage4"]
    with torch.no_grad():
        assert model(x).shape == (2, 2)
        assert model.forward_features(x).shape == (2, expected["stage4"])
        for layer, width in expected.items():
            assert model.features(x, layer).shape == (2, width)
        # total stride 32 (stem conv, max pool, one stride-2 unit per stage): 32 px -> one cell per axis
        assert model.stage_maps(x)[0].shape == (2, expected["stage4"], *([1] * spatial_dims))


def test_paper_widths_for_1x_g3_are_table_1():
    model = create_backbone("shufflenet_v1_g3", 2, 3, 1000)
    assert model.conv1[0].out_channels == 24  # Conv1: 24 channels, 3x3, stride 2
    assert [len(getattr(model, s)) for s in ("stage2", "stage3", "stage4")] == [4, 8, 4]  # repeats 1+3, 1+7, 1+3
    assert model.stage2[0].gconv1.groups == 1  # "we do not apply group convolution on the first pointwise layer"
    assert model.stage2[1].gconv1.groups == 3 and model.stage3[0].gconv1.groups == 3
    assert model.stage3[2].gconv1.out_channels == 480 // 4  # bottleneck = 1/4 of the output channels


def test_channel_shuffle_hand_worked_example():
    # 6 channels in g = 2 groups [0 1 2 | 3 4 5]: reshape (2, 3), transpose to (3, 2), flatten -> 0 3 1 4 2 5
    x = torch.arange(6.0).view(1, 6, 1, 1).expand(1, 6, 2, 2)
    assert channel_shuffle(x, 2)[0, :, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    # g = 3 groups [0 1 | 2 3 | 4 5]: reshape (3, 2), transpose to (2, 3), flatten -> 0 2 4 1 3 5
    assert channel_shuffle(x, 3)[0, :, 1, 1].tolist() == [0, 2, 4, 1, 3, 5]
    # 3D: the permutation acts on channels only; every voxel keeps its value
    volume = torch.arange(12.0).view(1, 6, 1, 1, 2)
    shuffled = channel_shuffle(volume, 2)
    assert shuffled[0, :, 0, 0, 1].tolist() == [1, 7, 3, 9, 5, 11]


def test_shuffle_lets_every_group_see_every_input_group():
    """Without the shuffle, a change in input group 0 would reach output group 0 only (two grouped 1x1 convs).

    96 channels, g = 4: bottleneck 24 = 4 groups of 6, and 6 >= g, so the shuffle spreads every group over all 4.
    """
    torch.manual_seed(0)
    unit = ShuffleUnit(96, 96, stride=1, groups=4, spatial_dims=2).eval()
    x = torch.rand(1, 96, 4, 4)
    bumped = x.clone()
    bumped[:, :24] += 1.0  # input group 0 of 4 (24 channels)
    with torch.no_grad():
        change = (unit.branch(bumped) - unit.branch(x)).abs().flatten(2).sum(-1)[0]  # [96]
        unshuffled = unit.bn3(unit.gconv2(unit.bn2(unit.dwconv(torch.relu(unit.bn1(unit.gconv1(bumped)))))))
        plain = unit.bn3(unit.gconv2(unit.bn2(unit.dwconv(torch.relu(unit.bn1(unit.gconv1(x)))))))
    assert all(change[k * 24:(k + 1) * 24].sum() > 0 for k in range(4))
    # the same unit with the shuffle left out keeps the change inside group 0
    assert (unshuffled - plain)[:, 24:].abs().max() == 0 and (unshuffled - plain)[:, :24].abs().max() > 0


@pytest.mark.parametrize("spatial_dims,kernel_cells", [(2, 9), (3, 27)])
def test_parameter_count_of_one_unit(spatial_dims, kernel_cells):
    # Stage3 unit of 1x g=3, stride 1: 480 -> 480, bottleneck 120.
    #   GConv1 480*120/3 = 19200; BN 2*120; DWConv 120*kernel; BN 2*120; GConv2 120*480/3 = 19200; BN 2*480
    unit = ShuffleUnit(480, 480, stride=1, groups=3, spatial_dims=spatial_dims)
    expected = 19200 + 240 + 120 * kernel_cells + 240 + 19200 + 960
    assert sum(p.numel() for p in unit.parameters()) == expected
    # First unit of Stage2 (stride 2, ungrouped GConv1): 24 -> 240 = 24 (pooled shortcut) + 216, bottleneck 60.
    #   GConv1 24*60 = 1440; BN 120; DWConv 60*kernel; BN 120; GConv2 60*216/3 = 4320; BN 2*216; pool: none
    first = ShuffleUnit(24, 240, stride=2, groups=3, spatial_dims=spatial_dims, first_pointwise_groups=1)
    assert sum(p.numel() for p in first.parameters()) == 1440 + 120 + 60 * kernel_cells + 120 + 4320 + 432


def test_strided_unit_concatenates_the_pooled_input():
    unit = ShuffleUnit(24, 240, stride=2, groups=3, spatial_dims=2, first_pointwise_groups=1).eval()
    x = torch.rand(2, 24, 8, 8)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (2, 240, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(x, 3, 2, 1)  # 3x3 average pool, stride 2 (Fig. 2c)
    torch.testing.assert_close(out[:, :24], pooled)
    assert (out >= 0).all()  # ReLU after the concatenation


def test_feature_layers_are_usable_by_extraction():
    from radfuse.extract.deep import embed

    model = create_backbone("shufflenet_v1_g3_x0_5", 3, 1, 2).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    for layer, width in model.feature_layers.items():
        assert embed(model, x, layer).shape == (2, width)
    with pytest.raises(KeyError, match="stage2"):
        model.features(x, "conv5")  # V1 has no conv5: the error lists the valid names


@pytest.mark.parametrize("name,millions", [("shufflenet_v1_g3", 1.9), ("shufflenet_v1_g8", 2.4),
                                           ("shufflenet_v1_g3_x0_5", 0.7), ("shufflenet_v1_g8_x0_5", 1.0)])
def test_imagenet_sizes_match_the_published_parameter_counts(name, millions):
    # #Params of the ImageNet models (3 x 224 x 224, 1000 classes) in Megvii's ShuffleNet-Series README
    model = create_backbone(name, 2, 3, 1000)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)


def test_width_multiplier_scales_the_network():
    small = create_backbone("shufflenet_v1_g8_x0_5", 2, 3, 1000)
    full = create_backbone("shufflenet_v1_g8", 2, 3, 1000)
    n_small, n_full = (sum(p.numel() for p in m.parameters()) for m in (small, full))
    assert small.conv1[0].out_channels == 16  # 12 rounded up to a multiple of g = 8
    assert 0.2 < n_small / n_full < 0.5  # 1x1 convs dominate: about a quarter of the parameters, plus the head


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fast_dev_run_trains_through_the_lightning_module(tmp_path, spatial_dims):
    data = TinyDataModule(spatial_dims=spatial_dims, size=32 if spatial_dims == 2 else 16, num_classes=2,
                          n_train=8, n_val=4, batch_size=4)
    model = RadfuseClassifier("shufflenet_v1_g3_x0_5", spatial_dims, 1, 2, class_counts=data.class_counts,
                              optimizer=partial(torch.optim.Adam, lr=1e-3))
    before = model.backbone.stage3[0].gconv2.weight.clone()
    trainer = L.Trainer(fast_dev_run=True, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, data)
    assert not torch.equal(before, model.backbone.stage3[0].gconv2.weight)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


# ---------------------------------------------------------------------------------------------- Megvii weights
class _MegviiUnit(torch.nn.Module):
    """Megvii ShuffleNet-Series' V1 block as its code reads (names, order): the shuffle sits after the depthwise
    conv and reshapes channels as (C/g, g) -> (g, C/g), the inverse of the paper's permutation."""

    def __init__(self, inp: int, oup: int, group: int, first_group: bool, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        mid, out = oup // 4, oup - inp if stride == 2 else oup
        self.stride, self.group = stride, group
        first_groups = 1 if first_group else group
        self.branch_main_1 = nn.Sequential(nn.Conv2d(inp, mid, 1, 1, 0, groups=first_groups, bias=False),
                                           nn.BatchNorm2d(mid), nn.ReLU(),
                                           nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, out, 1, 1, 0, groups=group, bias=False), nn.BatchNorm2d(out))
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch_main_1(x)
        if self.group > 1:
            b, c, h, w = y.shape
            y = y.reshape(b, c // self.group, self.group, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)
        y = self.branch_main_2(y)
        return torch.relu(x + y) if self.stride == 1 else torch.cat((self.branch_proj(x), torch.relu(y)), 1)


class _MegviiNet(torch.nn.Module):
    def __init__(self, widths: tuple[int, ...], group: int) -> None:
        super().__init__()
        nn = torch.nn
        self.first_conv = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                        nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, inp = [], widths[0]
        for stage, (repeats, oup) in enumerate(zip((4, 8, 4), widths[1:])):
            for i in range(repeats):
                units.append(_MegviiUnit(inp, oup, group, stage == 0 and i == 0, 2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.classifier = nn.Sequential(nn.Linear(inp, 1000, bias=False))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.maxpool(self.first_conv(x))).mean((2, 3))


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random conv kernels (fan-in scaled) and BatchNorm statistics, so that a wrong reordering shows."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if tensor.ndim > 1:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) / tensor[0].numel() ** 0.5)
        elif name.endswith(("running_var", "weight")):
            tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
        else:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("name,widths,group", [("shufflenet_v1_g3", (24, 240, 480, 960), 3),
                                               ("shufflenet_v1_g3_x0_5", (12, 120, 240, 480), 3)])
def test_megvii_checkpoint_loads_and_computes_the_same_features(tmp_path, name, widths, group):
    reference = _MegviiNet(widths, group).eval()
    _randomize(reference, 1)
    path = tmp_path / "snetv1.pth.tar"  # Megvii saves {'state_dict': DataParallel(model).state_dict()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model = create_backbone(name, 2, 3, 1000, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(x)
        assert 0.01 < expected.abs().mean() < 100  # activations of a sane size, so closeness means something
        torch.testing.assert_close(model.forward_features(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.fc.weight, reference.classifier[0].weight)
    model3d = create_backbone(name, 3, 1, 2, weights=path)  # inflated to 3D, grey input, new head: loads too
    assert model3d.stage4[3].dwconv.weight.shape[2:] == (3, 3, 3)


def test_megvii_g8_is_refused_with_the_reason(tmp_path):
    # Stage2 bottleneck of 1.0x g=8: 96 channels, 8 groups of 12. Megvii sends input group 0 (channels 0-11) to
    # groups c mod 8 = 0..7, 0..3 (2 2 2 2 1 1 1 1); the paper to (8 b) // 12 = 0 0 1 2 2 3 4 4 5 6 6 7 (2 1 2 1 ...):
    # no within-group reordering turns one into the other
    path = tmp_path / "snetv1_g8_1.0x.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _MegviiNet((24, 384, 768, 1536), 8).state_dict().items()}},
               path)
    from radfuse.models.weight_formats import WeightsError

    with pytest.raises(WeightsError, match="cannot be loaded exactly"):
        create_backbone("shufflenet_v1_g8", 2, 3, 1000, weights=path)
