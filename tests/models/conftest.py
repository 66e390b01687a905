"""Fixtures for the model tests: one thread, tiny reference state dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "torchvision-state-dict-shapes.json"



@pytest.fixture(scope="session")
def torchvision_shapes() -> dict[str, dict[str, list[int]]]:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not present")
    return json.loads(REFERENCE.read_text())


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the given names and shapes (BatchNorm variances kept positive)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state
