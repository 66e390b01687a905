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
