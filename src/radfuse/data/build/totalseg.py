"""TotalSegmentator output: per-structure files (`segmentations/vertebrae_L1.nii.gz`, ...) or the multi-label file
(`--ml`: one label map whose header names each label). Both become one ROI per structure, named `L1`, `T12`, ...

Label names come from the file's header when present (recent TotalSegmentator versions write it); otherwise from
TotalSegmentator's `total` class map (labels.TOTALSEG_LABELS). Only the structures matching `select` are kept
(default: every vertebra); the per-structure files of the other 100-odd classes are not even opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from radfuse.data.build.common import Build, is_mask_file, rois_of_mask, wanted
from radfuse.data.build.folder import IMAGE_PATTERNS, find_image, mask_files, patient_dirs
from radfuse.data.build.labels import TOTALSEG_LABELS, file_stem, header_label_map

DEFAULT_SELECT = ("vertebrae_*",)
SEGMENTATION_PATTERNS = ("segmentations/*.nii.gz", "segmentations.nii.gz", "*.nii.gz", "*.nii")


def build_totalseg(root: str | Path, image_patterns: Sequence[str] = IMAGE_PATTERNS,
                   mask_patterns: Sequence[str] = SEGMENTATION_PATTERNS,
                   select: Sequence[str] | None = DEFAULT_SELECT) -> Build:
    build = Build()
    for patient_dir in patient_dirs(Path(root), image_patterns):
        patient = patient_dir.name
        image = find_image(patient_dir, image_patterns)
        if image is None:
            build.skip(patient, patient_dir, f"no image: nothing matches {list(image_patterns)}; set --image")
            continue
        masks = [m for m in mask_files(patient_dir, mask_patterns, exclude=image) if _worth_reading(m, patient_dir, select)]
        if not masks:
            build.skip(patient, patient_dir, f"no TotalSegmentator output matching {list(select or ['*'])} under "
                                             f"{list(mask_patterns)}; set --masks / --rois")
            continue
        before = len(build.rois)
        for mask in masks:
            rois_of_mask(build, patient, image, mask, TOTALSEG_LABELS, select)
        if len(build.rois) == before:
            build.skip(patient, patient_dir, f"no structure matching {list(select or ['*'])} holds a voxel")
    return build


def _worth_reading(mask: Path, patient_dir: Path, select: Sequence[str] | None) -> bool:
    """A file beside the image (the multi-label file) is always read; a per-structure file of the `segmentations/`
    folder only when its name is wanted or its header names labels."""
    return is_mask_file(mask) and (mask.parent == patient_dir or wanted(file_stem(mask), select)
                                   or bool(header_label_map(mask)))
