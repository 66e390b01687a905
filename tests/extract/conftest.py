"""Extraction tests share 2 cores with everyone: one BLAS/OpenMP thread each (as radfuse's workers run)."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield
