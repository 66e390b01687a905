"""Training throughput of every backbone (2D and 3D) and the data-loader stall fraction with and without the cache.

    python bench/train_throughput.py [--threads 2] [--batch 16] [--size2d 64] [--size3d 32] [--steps 5]
                                     [--manifest PATH | (demo cohort under --out)] [--skip-stall]

Images/s = batch * timed steps / their wall time (forward, backward, AdamW step; after one warm-up step), on
synthetic tensors so the model alone is measured. Stall fraction = time waiting for the next batch / (waiting +
compute) over one pass of the training loader, ResNet-18 2D as the model, with the on-disk crop cache filled
beforehand ("cache") and without any cache ("no cache": every crop recomputed from the NIfTI files). On a CUDA
machine every model is also timed with bf16 autocast and channels_last, and GPU utilisation is sampled.
Prints a Markdown table (copy it into bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from radfuse.models import available_backbones, create_backbone  # noqa: E402


def gpu_utilisation() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
        return f"{out[0]} %" if out else "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def time_model(name: str, dims: int, size: int, batch: int, steps: int, device: str, bf16: bool = False,
               channels_last: bool = False) -> tuple[float, str]:
    model = create_backbone(name, dims, 3, 3).to(device)
    x = torch.randn(batch, 3, *([size] * dims), device=device)
    y = torch.randint(0, 3, (batch,), device=device)
    if channels_last:
        memory_format = torch.channels_last if dims == 2 else torch.channels_last_3d
        model, x = model.to(memory_format=memory_format), x.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocator, cuDNN autotuning
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    util = "n/a"
    for i in range(steps):
        step()
        if device.startswith("cuda") and i == steps // 2:
            util = gpu_utilisation()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start), util


def stall_fraction(datamodule, steps: int, device: str) -> tuple[float, float]:
    """(stall fraction, images/s) over at most `steps` batches of the training loader."""
    model = create_backbone("resnet18", datamodule.spatial_dims, datamodule.in_channels, datamodule.num_classes)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    waiting = computing = 0.0
    images = 0
    loader = iter(datamodule.train_dataloader())
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            batch = next(loader)
        except StopIteration:
            break
        t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(batch["image"].to(device)), batch["label"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        waiting, computing, images = waiting + t1 - t0, computing + time.perf_counter() - t1, images + len(batch["label"])
    return waiting / (waiting + computing), images / (waiting + computing)


def demo_datamodule(manifest: str | None, out: Path, cache: bool, batch: int, size: int):
    from radfuse.data.crops import CropConfig
    from radfuse.data.datamodule import RadfuseDataModule
    from radfuse.data.manifest import read_manifest
    from radfuse.data.splits import load_or_make_splits

    if manifest is None:
        from radfuse.data.demo import make_cohort

        manifest = out / "demo_cohort" / "manifest.csv"
        if not manifest.exists():
            make_cohort(manifest.parent, n_patients=270, seed=0)
    frame = read_manifest(manifest)
    splits = load_or_make_splits(frame, out / "splits.json", seed=0)
    crop = CropConfig(mode="2d", size=size, channels=3)
    dm = RadfuseDataModule(frame, splits, crop, out / "cache" if cache else None, ["0", "1", "2"],
                           batch_size=batch, num_workers=0)
    dm.prepare_data()  # fills the cache (no-op without one): the stall is measured on a warm cache
    return dm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size2d", type=int, default=64)
    parser.add_argument("--size3d", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "radfuse-bench-train")
    parser.add_argument("--skip-stall", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = [("fp32", False, False)] + ([("bf16", True, False), ("bf16+channels_last", True, True)]
                                           if device == "cuda" else [])
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}, device {device}, "
          f"batch {args.batch}, 2D {args.size2d} px, 3D {args.size3d}^3 voxels\n")
    print("| backbone | dims | precision | images/s | GPU util |\n|---|---|---|---|---|")
    for name in available_backbones():
        for dims, size in ((2, args.size2d), (3, args.size3d)):
            for label, bf16, channels_last in variants:
                rate, util = time_model(name, dims, size, args.batch, args.steps, device, bf16, channels_last)
                print(f"| {name} | {dims}D | {label} | {rate:.1f} | {util} |", flush=True)
    if args.skip_stall:
        return
    print("\n| loader | stall fraction | images/s (ResNet-18 2D, loader + step) |\n|---|---|---|")
    for cache in (True, False):
        dm = demo_datamodule(args.manifest, args.out, cache, args.batch, args.size2d)
        stall, rate = stall_fraction(dm, steps=8, device=device)
        print(f"| {'cache' if cache else 'no cache'} | {stall:.2f} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
