"""Crop-cache safety: a damaged entry is named, discarded and recomputed; entries appear whole or not at all."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from radfuse.data import crops as crops_module
from radfuse.data.crops import CropConfig
from radfuse.data.datamodule import cached_dataset, crop_cache_dir, manifest_items
from radfuse.data.manifest import read_manifest
from tests.data.cohort_factory import make_tiny_cohort

CROP = CropConfig(mode="2d", size=32)


@pytest.fixture()
def items(tmp_path):
    return manifest_items(read_manifest(make_tiny_cohort(tmp_path / "cohort", n_patients=3)), ["0", "1"])


def _entries(cache_root) -> list:
    return sorted(crop_cache_dir(cache_root, CROP).glob("*.pt"))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_entry_is_named_discarded_and_recomputed(tmp_path, items, caplog, damage):
    cache = tmp_path / "cache"
    first = [cached_dataset(items, CROP, cache)[i] for i in range(len(items))]
    entries = _entries(cache)
    assert len(entries) == len(items)
    victim = next(p for p in entries if torch.equal(torch.load(p, weights_only=True)["image"], first[1]["image"]))
    data = victim.read_bytes()
    victim.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 64}[damage])

    with caplog.at_level(logging.WARNING, logger="radfuse.data.crops"):
        again = [cached_dataset(items, CROP, cache)[i] for i in range(len(items))]
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) for a, b in zip(first, again))
    messages = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert messages == [f"crop cache entry {victim} for case {items[1]['case_id']} is damaged; recomputing"]
    assert torch.equal(torch.load(victim, weights_only=True)["image"], first[1]["image"])  # rewritten whole

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radfuse.data.crops"):
        cached_dataset(items, CROP, cache)[1]
    assert not caplog.records  # the rewritten entry reads back


def test_entries_are_written_beside_their_target_and_renamed(tmp_path, items, monkeypatch):
    """The temporary file lives in the cache folder itself (a rename there is atomic on any file system), and an
    interrupted write leaves no entry behind."""
    cache = tmp_path / "cache"
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(crops_module.os, "replace",
                        lambda src, dst: renames.append((os.path.dirname(src), os.path.dirname(dst)))
                        or real_replace(src, dst))
    cached_dataset(items, CROP, cache)[0]
    folder = str(crop_cache_dir(cache, CROP))
    assert renames == [(folder, folder)]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crops_module.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        cached_dataset(items, CROP, cache)[1]
    assert len(_entries(cache)) == 1 and not [p for p in crop_cache_dir(cache, CROP).iterdir()
                                              if p.suffix != ".pt"]
