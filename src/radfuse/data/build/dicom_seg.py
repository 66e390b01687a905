"""DICOM-SEG (read with highdicom): each segment, by its label, onto the referenced CT series' grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radfuse.data.build.dicom_objects import SEG, build_dicom_objects, series_uids


def rasterise_seg(seg_path: Path, image_dir: Path, image: sitk.Image) -> dict[str, np.ndarray]:
    """{segment label: bool array (z, y, x)} in the slice order SimpleITK reads `image_dir`."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    uids = series_uids(image_dir)
    out = {}
    for number in seg.segment_numbers:
        label = str(seg.get_segment_description(number).segment_label)
        frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number],
                                                  combine_segments=True, assert_missing_frames_are_empty=True)
        array = np.asarray(frames) > 0
        if array.shape != sitk.GetArrayViewFromImage(image).shape:
            raise ValueError(f"segment {label} has shape {array.shape}, the series {image.GetSize()[::-1]}")
        out[label if label not in out else f"{label}_{number}"] = array
    return out


def build_dicom_seg(root: str | Path, mask_dir: str | Path, select=None):
    return build_dicom_objects(root, SEG, rasterise_seg, mask_dir, select)
