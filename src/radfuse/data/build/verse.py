"""The VerSe / BIDS layout: `rawdata/sub-*/[ses-*/]<scan>_ct.nii.gz` with `derivatives/sub-*/[ses-*/]<scan>_seg-vert_msk
.nii.gz`, vertebrae numbered by the VerSe convention (labels.VERSE_LABELS: 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5,
25 L6, 26 sacrum, 28 T13).

The subject (`sub-*`) is the patient, so two scans of one subject (VerSe 2020's `dir-ax` / `dir-sag`) stay in one
fold; each scan's ROIs are named `<scan>_<vertebra>` (`sub-gl003_dir-ax_L1`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from radfuse.data.build.common import Build, BuildError, rois_of_mask
from radfuse.data.build.labels import VERSE_LABELS

CT_SUFFIX = "_ct.nii.gz"
MASK_SUFFIX = "_seg-vert_msk.nii.gz"


def build_verse(root: str | Path, select: Sequence[str] | None = None) -> Build:
    root = Path(root)
    raw, derivatives = root / "rawdata", root / "derivatives"
    if not raw.is_dir() or not derivatives.is_dir():
        raise BuildError(f"{root} is not a VerSe / BIDS tree: it needs rawdata/ and derivatives/ folders (give the "
                         "folder that holds both)")
    masks = {p.name[: -len(MASK_SUFFIX)]: p for p in derivatives.rglob(f"sub-*{MASK_SUFFIX}")}
    build = Build()
    for image in sorted(raw.rglob(f"sub-*{CT_SUFFIX}")):
        scan = image.name[: -len(CT_SUFFIX)]
        patient = scan.split("_")[0]
        mask = masks.pop(scan, None)
        if mask is None:
            build.skip(scan, image, f"no derivatives/.../{scan}{MASK_SUFFIX} beside this scan")
            continue
        rois_of_mask(build, patient, image, mask, VERSE_LABELS, select, scan=scan)
    for scan, mask in sorted(masks.items()):
        build.skip(scan, mask, f"no rawdata/.../{scan}{CT_SUFFIX} for this mask")
    return build
