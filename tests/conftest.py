"""Shared fixtures. Real data live in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir(name: str) -> Path:
    """Return ../shared/data/<name>; skip when absent, fail when RADFUSE_REQUIRE_SHARED_DATA=1 (CI)."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        if os.environ.get("RADFUSE_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{folder} is required (RADFUSE_REQUIRE_SHARED_DATA=1) but missing")
        pytest.skip(f"{folder} not present")
    return folder


@pytest.fixture(scope="session")
def spine_ct() -> Path:
    return shared_data_dir("spine-ct")


@pytest.fixture(scope="session")
def pyradiomics_reference() -> Path:
    return shared_data_dir("pyradiomics-reference")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Two test processes share two cores: one torch thread each keeps them from oversubscribing."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
