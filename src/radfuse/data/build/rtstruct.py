"""RTSTRUCT (read with rt-utils): each structure's contours rasterised onto the referenced CT series' grid.

rt-utils fills each contour polygon per slice of its own slice order (ascending along the slice normal); the slices
are matched back to SimpleITK's order by SOPInstanceUID, so the mask lies on the grid every stage reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radfuse.data.build.dicom_objects import RTSTRUCT, build_dicom_objects, series_uids


def rasterise_rtstruct(rt_path: Path, image_dir: Path, image: sitk.Image) -> dict[str, np.ndarray]:
    """{structure name: bool array (z, y, x)} on `image`'s grid."""
    from rt_utils import RTStructBuilder

    rtstruct = RTStructBuilder.create_from(dicom_series_path=str(image_dir), rt_struct_path=str(rt_path))
    position = {str(ds.SOPInstanceUID): k for k, ds in enumerate(rtstruct.series_data)}
    order = [position[uid] for uid in series_uids(image_dir)]
    out = {}
    for name in rtstruct.get_roi_names():
        rows_cols_slices = rtstruct.get_roi_mask_by_name(name)
        out[name] = np.ascontiguousarray(np.transpose(rows_cols_slices, (2, 0, 1))[order])
    return out


def build_rtstruct(root: str | Path, mask_dir: str | Path, select=None):
    return build_dicom_objects(root, RTSTRUCT, rasterise_rtstruct, mask_dir, select)
