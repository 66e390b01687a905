"""Tiny on-disk cohorts for data tests: small CT-like volumes with a bright box ROI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk


def write_volume(path: Path, array_zyx: np.ndarray, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
                 direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def box_case(folder: Path, name: str, seed: int, shape=(16, 24, 24), label_value: int = 1) -> tuple[Path, Path]:
    """A noisy volume (HU) with a bright box; the mask labels the box with `label_value`."""
    rng = np.random.default_rng(seed)
    image = rng.normal(40, 20, size=shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    z, y, x = (s // 4 for s in shape)
    mask[z:3 * z, y:3 * y, x:3 * x] = label_value
    image[mask > 0] += 300
    return write_volume(folder / f"{name}_ct.nii.gz", image), write_volume(folder / f"{name}_mask.nii.gz", mask)


def make_tiny_cohort(folder: Path, n_patients: int = 20, classes=("0", "1"), seed: int = 0,
                     cohort: bool = True) -> Path:
    """Manifest of `n_patients` one-ROI patients, labels alternating, cohorts train/internal/external."""
    rows = []
    for i in range(n_patients):
        image, mask = box_case(folder / "images", f"p{i:03d}", seed + i)
        row = {"case_id": f"c{i:03d}", "patient_id": f"p{i:03d}", "image": str(image.relative_to(folder)),
               "mask": str(mask.relative_to(folder)), "label": classes[i % len(classes)],
               "site": "A" if i % 3 else "B", "age": 60 + i, "sex": "F" if i % 2 else "M"}
        if cohort:
            row["cohort"] = "external" if i >= n_patients - 2 else None
        rows.append(row)
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
