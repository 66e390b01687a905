"""Crop cache benchmark: one epoch of the uncached transform chain vs the second epoch over cached crops.

    .venv/bin/python bench/crop_cache.py [--manifest M] [--out DIR] [--mode 2d|3d] [--size 64]

Without --manifest the demo cohort is generated under DIR. Prints ROIs/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
from monai.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from radfuse.data.crops import CropConfig  # noqa: E402
from radfuse.data.datamodule import cached_dataset, manifest_items  # noqa: E402
from radfuse.data.manifest import read_manifest  # noqa: E402


def epoch_seconds(dataset) -> float:
    start = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=32, num_workers=0):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest")
    parser.add_argument("--out", default="bench_out/crop_cache")
    parser.add_argument("--mode", default="2d")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--patients", type=int, default=270)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    manifest = Path(args.manifest) if args.manifest else out / "cohort" / "manifest.csv"
    if not manifest.exists():
        from radfuse.data.demo import make_cohort
        make_cohort(manifest.parent, n_patients=args.patients, seed=0)
    items = manifest_items(read_manifest(manifest), ["0", "1", "2"])
    crop = CropConfig(mode=args.mode, size=args.size)
    shutil.rmtree(out / "cache", ignore_errors=True)
    uncached = epoch_seconds(cached_dataset(items, crop, None, augment=True))
    cached = cached_dataset(items, crop, out / "cache", augment=True)
    first = epoch_seconds(cached)
    second = epoch_seconds(cached)
    load_only = epoch_seconds(cached_dataset(items, crop, out / "cache", augment=False))
    n = len(items)
    print(f"ROIs: {n}, crop {crop.mode} {crop.size}px, augmentation on, 1 thread, num_workers=0")
    print(f"uncached epoch: {uncached:.2f} s ({n / uncached:.1f} ROI/s)")
    print(f"cache-filling epoch: {first:.2f} s ({n / first:.1f} ROI/s)")
    print(f"cached second epoch: {second:.2f} s ({n / second:.1f} ROI/s)")
    print(f"cached epoch without augmentation (reading the cache alone): {load_only:.2f} s ({n / load_only:.1f} ROI/s)")
    print(f"speed-up of the second epoch over the uncached chain: {uncached / second:.1f}x")


if __name__ == "__main__":
    main()
