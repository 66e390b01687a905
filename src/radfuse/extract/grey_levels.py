"""How many grey levels each ROI gets after discretisation, per image type, and a refusal when texture is empty.

Texture features (GLCM, GLRLM, GLSZM, GLDM, NGTDM) and the histogram features of first order are computed on the
discretised ROI. A bin width meant for HU (25) applied to a z-scored image (values about -3..3) puts nearly
every voxel of an ROI into one or two bins: Uniformity is then 1, GLCM Contrast 0, and the "texture" columns
carry volume or nothing (measured on the demo with the old liu2025 preset: median Uniformity 1.0; on a real CT
43 of 107 features constant). PyRadiomics computes such features without a word. radfuse counts the grey levels
of every ROI and image type as PyRadiomics' own `binImage` makes them (a diagnostics column
`diagnostics_radfuse_grey_levels_<image>`), prints a summary, and refuses a run in which most ROIs of an image
type get fewer than a handful of levels, naming the setting and a fix.

The count is taken inside `RadiomicsFeatureExtractor.computeFeatures` (radfuse.extract.extractor, a subclass of
the extractor, so nothing of PyRadiomics is patched), on the exact image, mask and settings the feature classes
receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # imported where a summary is made: radiomics workers only count
    import pandas as pd

GREY_LEVELS_PREFIX = "diagnostics_radfuse_grey_levels_"
MIN_GREY_LEVELS = 5      # "a handful": fewer levels leave GLCM/GLRLM/GLSZM next to meaningless
MAX_FRACTION_BELOW = 0.5  # refuse when more than half of the ROIs of an image type are below MIN_GREY_LEVELS


def count_grey_levels(image_array: np.ndarray, mask_array: np.ndarray, settings: Mapping[str, Any]) -> int:
    """Distinct grey levels inside the mask after PyRadiomics' discretisation (binWidth or binCount)."""
    from radiomics import imageoperations

    inside = np.asarray(mask_array) > 0
    if not inside.any():
        return 0
    binned, _ = imageoperations.binImage(np.asarray(image_array), inside, **dict(settings))
    return int(len(np.unique(binned[inside])))


SUMMARY_COLUMNS = ("n_rois", "median", "min", "p05", "fraction_below")


@dataclass
class GreyLevelSummary:
    """Per image type (PyRadiomics' output name): ROI count, median and minimum levels, share below the minimum.

    `rows` {image: {column: value}} (SUMMARY_COLUMNS); `table` is the same as a DataFrame (index image), made on
    first use: a radiomics run writes its summary without importing pandas."""

    rows: dict[str, dict[str, float]]

    @property
    def table(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame.from_dict(self.rows, orient="index", columns=list(SUMMARY_COLUMNS)).rename_axis("image")

    def lines(self) -> list[str]:
        return [f"{image}: median {row['median']:.0f} grey levels (min {row['min']:.0f}), "
                f"{row['fraction_below']:.0%} of {row['n_rois']:.0f} ROIs below {MIN_GREY_LEVELS}"
                for image, row in self.rows.items()]

    def degenerate_rows(self, max_fraction: float = MAX_FRACTION_BELOW) -> dict[str, dict[str, float]]:
        return {image: row for image, row in self.rows.items() if row["fraction_below"] > max_fraction}

    def degenerate(self, max_fraction: float = MAX_FRACTION_BELOW) -> pd.DataFrame:
        table = self.table
        return table[table["fraction_below"] > max_fraction]


def summarise_grey_levels(diagnostics: pd.DataFrame | list[Mapping[str, Any]],
                          min_levels: int = MIN_GREY_LEVELS) -> GreyLevelSummary:
    """Summary of the `diagnostics_radfuse_grey_levels_*` entries of a diagnostics table (one row per ROI: a
    DataFrame or a list of per-ROI dicts); an entry that is absent or not a number is left out, as pandas'
    `to_numeric(errors="coerce").dropna()` would."""
    records = diagnostics.to_dict(orient="records") if hasattr(diagnostics, "to_dict") else list(diagnostics)
    columns = dict.fromkeys(k for record in records for k in record if str(k).startswith(GREY_LEVELS_PREFIX))
    rows = {}
    for column in columns:
        levels = np.array([v for v in (_number(r.get(column)) for r in records) if v is not None], dtype=float)
        if len(levels):
            rows[column.removeprefix(GREY_LEVELS_PREFIX)] = {
                "n_rois": len(levels), "median": float(np.median(levels)), "min": float(levels.min()),
                "p05": float(np.quantile(levels, 0.05)), "fraction_below": float((levels < min_levels).mean())}
    return GreyLevelSummary(rows)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: pandas drops it


def grey_level_refusal(summary: GreyLevelSummary, params_name: str, settings: Mapping[str, Any],
                       max_fraction: float = MAX_FRACTION_BELOW) -> str | None:
    """The refusal message when most ROIs of some image type get fewer than a handful of levels, else None."""
    bad = summary.degenerate_rows(max_fraction)
    if not bad:
        return None
    how = (f"binCount={settings['binCount']}" if "binCount" in settings
           else f"binWidth={settings.get('binWidth', 25)} (PyRadiomics' default 25 when unset)")
    scale = (f" on images z-scored by `normalize: true` (normalizeScale={settings.get('normalizeScale', 1)}, so "
             "grey values span a few units)" if settings.get("normalize") else "")
    images = ", ".join(f"{image} (median {row['median']:.0f} levels, {row['fraction_below']:.0%} of ROIs below "
                       f"{MIN_GREY_LEVELS})" for image, row in bad.items())
    return (f"radiomics preset {params_name}: discretisation with {how}{scale} leaves most ROIs with fewer than "
            f"{MIN_GREY_LEVELS} grey levels in {images}. Texture and histogram features computed that way carry "
            "no texture (Uniformity near 1, GLCM Contrast near 0). Fix the preset's setting: a bin width matched "
            "to the image's value range (about 25 HU for raw CT), or `binCount: 32` for normalised or filtered "
            "images; or drop that image type. To keep the features anyway, set "
            "extract.grey_levels.refuse=false (the summary is still printed and stored).")
