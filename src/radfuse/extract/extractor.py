"""radfuse's PyRadiomics extractor: PyRadiomics' `execute`, with the grey levels counted and cheaper provenance.

A subclass of `RadiomicsFeatureExtractor`, so nothing of PyRadiomics is patched for other users of the process:

- `computeFeatures` also reports the grey levels of every image type (`grey_levels.count_grey_levels`, key
  `diagnostics_radfuse_grey_levels_<image>`);
- `loadImage` hands PyRadiomics' own GeneralInfo to `FastProvenance`, which writes the same diagnostics with
  cheaper primitives (`provenance`).
"""

from __future__ import annotations

from typing import Any, Mapping

import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radfuse.extract.grey_levels import GREY_LEVELS_PREFIX, count_grey_levels
from radfuse.extract.provenance import FastProvenance


class RadfuseExtractor(RadiomicsFeatureExtractor):
    """PyRadiomics' extractor; feature values exactly PyRadiomics' (module doc)."""

    def loadImage(self, ImageFilePath, MaskFilePath, generalInfo=None, **kwargs):  # noqa: N802, N803, ANN001, ANN201
        provenance = FastProvenance(generalInfo) if generalInfo is not None else None
        return RadiomicsFeatureExtractor.loadImage(ImageFilePath, MaskFilePath, provenance, **kwargs)

    def computeFeatures(self, image, mask, imageTypeName, **kwargs):  # noqa: N802, N803, ANN001, ANN201
        features = super().computeFeatures(image, mask, imageTypeName, **kwargs)
        if features:  # an image type with texture / first-order features at all
            count = count_grey_levels(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(mask), kwargs)
            features[f"{GREY_LEVELS_PREFIX}{imageTypeName}"] = str(count)
        return features


def radfuse_extractor(params: Mapping[str, Any]) -> RadfuseExtractor:
    return RadfuseExtractor(dict(params))
