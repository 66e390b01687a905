"""Optional connected-component splitting: one labelled region of a mask becomes one ROI per component."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radfuse.artifacts import write_csv
from radfuse.data import io
from radfuse.data.manifest import CASE_ID, IMAGE, MASK, MASK_LABEL


def expand_components(frame: pd.DataFrame, out_dir: str | Path, min_voxels: int = 10) -> pd.DataFrame:
    """Rows whose ROI has several components become one row per component (`<case_id>_cc<k>`, largest first).

    The component label maps are written under `out_dir` (never beside the user's data, which may be read-only);
    rows with a single component are kept unchanged.
    """
    out_dir = Path(out_dir)
    rows = []
    for _, row in frame.iterrows():
        label = None if pd.isna(row.get(MASK_LABEL)) else int(row[MASK_LABEL])
        mask = io.align_mask(io.read_image(row[MASK]), io.read_image(row[IMAGE]))
        components = io.split_components(io.select_label(mask, label), min_voxels=min_voxels)
        count = len(io.mask_labels(components))
        if count <= 1:
            rows.append(row.to_dict())
            continue
        path = io.write_image(components, out_dir / f"{row[CASE_ID]}_components.nii.gz")
        for k in range(1, count + 1):
            rows.append({**row.to_dict(), CASE_ID: f"{row[CASE_ID]}_cc{k}", MASK: str(path), MASK_LABEL: k})
    expanded = pd.DataFrame(rows, columns=frame.columns if MASK_LABEL in frame.columns
                            else [*frame.columns, MASK_LABEL])
    expanded.attrs = dict(frame.attrs)
    write_csv(out_dir / "manifest.csv", expanded)
    return expanded
