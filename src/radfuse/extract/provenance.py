"""PyRadiomics' provenance diagnostics (image / mask hash, geometry, ROI statistics), same keys and values, cheaper.

On a small ROI PyRadiomics spends about a fifth of `execute` in `GeneralInfo.addImageElements` /
`addMaskElements` (profiled on the demo ROIs with liu2025, ~20 of ~85 ms): `sitk.Hash` (12x slower than hashlib
on the same bytes), a LabelShapeStatistics pass for the bounding box and a connected-component pass over the whole
mask, per call. `FastProvenance` writes the same entries into PyRadiomics' own GeneralInfo: the SHA1 of the pixel
buffer (what `sitk.Hash` hashes), the bounding box and voxel count from the mask array, the component count on
the ROI's bounding box only (no component reaches outside it), and every mean / minimum / maximum by PyRadiomics'
own numpy calls. Vector images (and a label absent from the mask) go to PyRadiomics' code unchanged.
"""

from __future__ import annotations

import hashlib

import numpy as np
import SimpleITK as sitk


def image_sha1(image: sitk.Image) -> str:
    """`sitk.Hash(image)` (SHA1 of the pixel buffer, x fastest) for a scalar image."""
    return hashlib.sha1(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).data).hexdigest()


class FastProvenance:
    """Stands in for `radiomics.generalinfo.GeneralInfo` where `loadImage` adds image and mask elements."""

    def __init__(self, info) -> None:  # noqa: ANN001 - radiomics.generalinfo.GeneralInfo
        self.info = info
        self.prefix = info.generalInfo_prefix

    def addImageElements(self, image: sitk.Image, prefix: str = "original") -> None:  # noqa: N802 - PyRadiomics' name
        if image.GetNumberOfComponentsPerPixel() != 1:
            return self.info.addImageElements(image, prefix)
        out, name = self.info.generalInfo, f"{self.prefix}Image-{prefix}_"
        if prefix == "original":
            out[name + "Hash"] = image_sha1(image)
            out[name + "Dimensionality"] = "%iD" % image.GetDimension()
        out[name + "Spacing"] = image.GetSpacing()
        out[name + "Size"] = image.GetSize()
        values = sitk.GetArrayViewFromImage(image).astype("float")
        out[name + "Mean"] = np.mean(values)
        out[name + "Minimum"] = np.min(values)
        out[name + "Maximum"] = np.max(values)
        return None

    def addMaskElements(self, image: sitk.Image | None, mask: sitk.Image | None, label: int,  # noqa: N802
                        prefix: str = "original") -> None:
        if mask is None:
            return None
        inside = sitk.GetArrayViewFromImage(mask) == label if mask.GetNumberOfComponentsPerPixel() == 1 else None
        if inside is None or not inside.any():
            return self.info.addMaskElements(image, mask, label, prefix)
        out, name = self.info.generalInfo, f"{self.prefix}Mask-{prefix}_"
        if prefix == "original":
            out[name + "Hash"] = image_sha1(mask)
        out[name + "Spacing"] = mask.GetSpacing()
        out[name + "Size"] = mask.GetSize()
        coordinates = np.array(np.where(inside))  # z, y, x as PyRadiomics takes them
        first, last = coordinates.min(axis=1)[::-1], coordinates.max(axis=1)[::-1]
        size = last - first + 1
        out[name + "BoundingBox"] = tuple(int(v) for v in (*first, *size))
        out[name + "VoxelNum"] = int(coordinates.shape[1])
        out[name + "VolumeNum"] = _component_count(inside, first, last)
        center_index = tuple(np.mean(coordinates, axis=1)[::-1])
        out[name + "CenterOfMassIndex"] = center_index
        out[name + "CenterOfMass"] = mask.TransformContinuousIndexToPhysicalPoint(center_index)
        if image is None:
            return None
        targets = sitk.GetArrayViewFromImage(image)[inside].astype("float")
        out[name + "Mean"] = np.mean(targets)
        out[name + "Minimum"] = np.min(targets)
        out[name + "Maximum"] = np.max(targets)
        return None


def _component_count(inside: np.ndarray, first: np.ndarray, last: np.ndarray) -> int:
    """Fully connected (26-neighbour) components of the ROI, counted on its bounding box (x/y/z first / last)."""
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(first[::-1], last[::-1]))
    components = sitk.ConnectedComponentImageFilter()
    components.FullyConnectedOn()
    components.Execute(sitk.GetImageFromArray(inside[box].astype(np.uint8)))
    return int(components.GetObjectCount())
