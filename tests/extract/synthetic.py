"""Tiny synthetic CT-like cohorts for extraction tests: textured blocks with spherical ROIs, a second reader's
mask (the ROI grown by one voxel on one side), and optional broken rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

SIZE = (24, 28, 28)  # z, y, x


def _scan(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.indices(SIZE)
    centre = np.array(SIZE) / 2 + rng.uniform(-2, 2, 3)
    distance = np.sqrt(((np.stack([z, y, x], -1) - centre) ** 2).sum(-1))
    inside = distance <= radius
    image = rng.normal(0, 40, SIZE) + np.where(inside, 300 + 100 * rng.random(), -50)
    return np.round(image).astype(np.int16), inside.astype(np.uint8)


def _write(array: np.ndarray, path: Path) -> str:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 1.5))
    image.SetOrigin((-10.0, 5.0, 30.0))
    sitk.WriteImage(image, str(path))
    return path.name


def make_cohort(folder: Path, n_cases: int = 6, seed: int = 0, mask2: bool = True,
                empty_cases: tuple[int, ...] = (), missing_cases: tuple[int, ...] = ()) -> Path:
    """Write images, masks (label 2 in a multi-label map for even cases) and manifest.csv; return the manifest."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_cases):
        image, roi = _scan(rng, radius=rng.uniform(5, 8))
        label = 2 if i % 2 == 0 else 1
        mask = roi * label
        if label == 2:
            mask[:3] = 1  # another structure with another label: mask_label must pick the ROI
        if i in empty_cases:
            mask[mask == label] = 0
        second = np.roll(roi, 1, axis=2) | roi
        row = {"case_id": f"c{i:02d}", "patient_id": f"p{i // 2:02d}",
               "image": _write(image, folder / f"c{i:02d}_ct.nii.gz"),
               "mask": _write(mask.astype(np.uint8), folder / f"c{i:02d}_mask.nii.gz"),
               "mask_label": label, "label": str(i % 2), "site": "A", "cohort": "train"}
        if mask2:
            row["mask2"] = _write((second * label).astype(np.uint8), folder / f"c{i:02d}_mask2.nii.gz")
        if i in missing_cases:
            row["image"] = f"missing_{i}.nii.gz"
        rows.append(row)
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
