"""Deep embeddings: batch-size independent, equal to the backbone's own forward_features, layers, flip TTA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from radfuse.extract.deep import InputNormalized, extract_embeddings

torch.set_num_threads(1)


class TinyBackbone(nn.Module):
    """The backbone interface (forward_features, features(x, layer)) on a two-stage conv net with BatchNorm."""

    stage_names = ("layer1", "layer2")

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.layer2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU())

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        x = self.layer1(x)
        return x.mean((2, 3)) if layer == "layer1" else self.layer2(x).mean((2, 3))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x, "layer2")


def _loader(images: torch.Tensor, batch_size: int):
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        yield {"image": chunk, "case_id": [f"c{start + i}" for i in range(len(chunk))],
               "label": torch.zeros(len(chunk), dtype=torch.long)}


@pytest.fixture()
def model_and_images():
    torch.manual_seed(0)
    model = TinyBackbone()
    with torch.no_grad():  # non-trivial running statistics, as after training
        model.layer1[1].running_mean.uniform_(-0.5, 0.5)
        model.layer1[1].running_var.uniform_(0.5, 2.0)
    return model, torch.randn(10, 1, 16, 16)


def test_embeddings_identical_across_batch_sizes_and_equal_to_forward_features(model_and_images):
    model, images = model_and_images
    model.train()  # extraction must switch to eval (BatchNorm running stats, no dropout) and switch back
    tables = [extract_embeddings(model, _loader(images, b)) for b in (1, 3, 10)]
    assert model.training
    for table in tables[1:]:
        pd.testing.assert_series_equal(table["case_id"], tables[0]["case_id"])
        np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), tables[0].iloc[:, 1:].to_numpy(), atol=1e-5)
    model.eval()
    with torch.no_grad():
        expected = model.forward_features(images).numpy()
    np.testing.assert_allclose(tables[0].iloc[:, 1:].to_numpy(), expected, atol=1e-6)
    assert list(tables[0].columns) == ["case_id"] + [f"deep__penultimate_{i}" for i in range(6)]


def test_named_layer_and_flip_tta(model_and_images):
    model, images = model_and_images
    model.eval()
    table = extract_embeddings(model, _loader(images, 4), layer="layer1")
    assert list(table.columns[1:3]) == ["deep__layer1_0", "deep__layer1_1"] and table.shape == (10, 5)
    tta = extract_embeddings(model, _loader(images, 4), tta=True)
    with torch.no_grad():
        expected = (model.forward_features(images) + model.forward_features(images.flip(-1))) / 2
    np.testing.assert_allclose(tta.iloc[:, 1:].to_numpy(), expected.numpy(), atol=1e-6)
    assert not np.allclose(tta.iloc[:, 1:].to_numpy(), extract_embeddings(model, _loader(images, 4)).iloc[:, 1:])


def test_input_normalisation_is_applied_like_the_classifier(model_and_images):
    model, images = model_and_images
    wrapped = InputNormalized(model, torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(2.0).view(1, 1, 1, 1))
    table = extract_embeddings(wrapped, _loader(images, 5))
    model.eval()
    with torch.no_grad():
        expected = model.forward_features((images - 0.5) / 2.0).numpy()
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), expected, atol=1e-6)


def test_duplicate_case_ids_are_refused(model_and_images):
    model, images = model_and_images
    batches = [{"image": images[:2], "case_id": ["a", "a"]}]
    with pytest.raises(ValueError, match="more than once"):
        extract_embeddings(model, batches)


# --- embeddings from any named module of a real backbone (random init, 32 px) --------------------------------------

# (backbone, spatial dims, a sub-module name, the stage whose output that module's output is)
SUB_MODULES = [("resnet18", 2, "layer3.1", "layer3"), ("resnet18", 3, "layer3.1", "layer3"),
               ("shufflenet_v2_x0_5", 2, "stage3.7", "stage3"), ("shufflenet_v2_x0_5", 3, "stage3.7", "stage3")]
# (backbone, a convolution deep inside a block): the embedding width is that convolution's out_channels
SUB_CONVS = [("resnet18", "layer3.1.conv2"), ("resnet50", "layer3.3.conv3"),
             ("shufflenet_v2_x0_5", "stage3.1.branch2.5"), ("shufflenet_v2_x0_5", "stage2.0.branch1.2")]


def _backbone_and_images(name: str, spatial_dims: int):
    from radfuse.models import create_backbone

    torch.manual_seed(0)
    model = create_backbone(name, spatial_dims, 1, 2).eval()
    return model, torch.randn(3, 1, *(32,) * spatial_dims)


@pytest.mark.parametrize(("name", "dims", "module", "stage"), SUB_MODULES)
def test_a_sub_block_gives_the_pooled_output_of_that_module(name, dims, module, stage):
    model, images = _backbone_and_images(name, dims)
    table = extract_embeddings(model, _loader(images, 2), layer=module)
    with torch.no_grad():  # the last unit of a stage computes the stage's output
        expected = model.features(images, stage).numpy()
    assert list(table.columns[1:3]) == [f"deep__{module}_0", f"deep__{module}_1"]
    assert table.shape == (3, 1 + model.feature_layers[stage])
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(("name", "module"), SUB_CONVS)
def test_a_convolution_inside_a_block_gives_its_channel_count(name, module):
    model, images = _backbone_and_images(name, 2)
    wrapped = InputNormalized(model)  # names are those of the backbone, not of the wrapper
    table = extract_embeddings(wrapped, _loader(images, 3), layer=module)
    assert table.shape == (3, 1 + model.get_submodule(module).out_channels)
    assert np.isfinite(table.iloc[:, 1:].to_numpy()).all() and table.iloc[:, 1:].std().gt(0).any()


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5"])
def test_an_unknown_layer_lists_the_stages_then_the_module_names(name):
    from radfuse.extract.deep import UnknownLayer

    model, images = _backbone_and_images(name, 2)
    bad = "stage9" if name.startswith("resnet") else "layer3"
    with pytest.raises(UnknownLayer) as err:
        extract_embeddings(InputNormalized(model), _loader(images, 3), layer=bad)
    message = str(err.value)
    assert bad in message and "penultimate" in message and "named_modules()" in message
    stages = list(model.feature_layers)
    positions = [message.index(s) for s in stages]
    assert positions == sorted(positions) and positions[-1] < message.index("named_modules()")
    example = message.split("e.g.")[1]
    assert any(f"{stages[0]}.0" in example or f"{s}." in example for s in stages)


def test_a_module_the_embedding_pass_never_runs_is_refused():
    from radfuse.extract.deep import UnknownLayer

    model, images = _backbone_and_images("resnet18", 2)
    with pytest.raises(UnknownLayer, match="fc"):
        extract_embeddings(model, _loader(images, 3), layer="fc")


@pytest.mark.parametrize(("layer", "expected"), [("penultimate", "deep_penultimate.parquet"),
                                                 ("layer3.1.conv2", "deep_layer3.1.conv2.parquet"),
                                                 ("a/b\\c d", "deep_a_b_c_d.parquet"), ("..", "deep_...parquet")])
def test_the_table_name_is_a_plain_file_name_for_any_module_name(layer, expected):
    from radfuse.artifacts import deep_table_name

    assert deep_table_name(layer) == expected and "/" not in deep_table_name(layer)
