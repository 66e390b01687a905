"""Fixtures of the builder tests: a checker that runs the manifest validator on what a builder wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from radfuse.data.manifest import read_manifest
from radfuse.data.problems import errors
from radfuse.data.validate import validate_manifest


@pytest.fixture
def assert_valid():
    def check(manifest: Path, classes=None, folds: int = 1):
        frame = read_manifest(manifest)
        problems = validate_manifest(frame, classes=classes, n_folds=folds, manifest_file=str(manifest))
        assert not errors(problems), "\n".join(map(str, errors(problems)))
        return frame

    return check
