"""Grad-CAM panels for the report: one crop, the heat map of the CNN(s) that scored it, a colour bar and a title.

`CamPanel` is what the fuse stage hands the report (radfuse.models.cam makes them): the crop the CNN saw, the map,
and which CNN made it. The report adds what only it knows (the case's cohort, true class, the shown model's
predicted probability, whether case ids may be printed) and draws the figure with `cam_figure`. Drawn with the
matplotlib object API (no pyplot state, no backend switch), so importing this module changes no global.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from radfuse.evaluate.canvas import new_figure

HEAT_CMAP = "jet"
HEAT_ALPHA = 0.4
COLORBAR_LABEL = "Grad-CAM (0 = no evidence, 1 = peak)"


@dataclass
class CamPanel:
    """One case's Grad-CAM. `heat` is in [0, 1] at the crop's resolution; `cnn` says which network(s) made it and
    why those (e.g. the fold CNN whose out-of-fold score the model used); `target` is the class whose evidence is
    mapped; `block` the feature block this CNN feeds (None: it feeds none of the report's models)."""

    case_id: str
    image: np.ndarray  # the crop as the CNN saw it: [C, H, W] or [C, D, H, W]
    heat: np.ndarray   # [H, W] or [D, H, W]
    cnn: str
    target: str
    layer: str
    block: str | None = None


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Three orthogonal mid-slices of a [D, H, W] volume."""
    d, h, w = volume.shape
    return [volume[d // 2], volume[:, h // 2], volume[:, :, w // 2]]


def cam_figure(image: np.ndarray, heat: np.ndarray, title: str = "") -> Figure:
    """A grey crop (channel 0) with its heat map on top and a colour bar; 3D crops as three mid-slices. `title`
    lines are wrapped to the figure's width."""
    grey = image[0] if image.ndim in (3, 4) else image
    panels = mid_slices(grey) if grey.ndim == 3 else [grey]
    heats = mid_slices(heat) if heat.ndim == 3 else [heat]
    width = 2.6 * len(panels) + 1.0
    fig = new_figure(figsize=(width, 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel, hot in zip(axes, panels, heats):
        ax.imshow(panel, cmap="gray")
        ax.imshow(hot, cmap=HEAT_CMAP, alpha=HEAT_ALPHA, vmin=0, vmax=1)
        ax.set_axis_off()
    # the bar shows the colours at full opacity: the overlay's alpha would wash them out against white
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), HEAT_CMAP), ax=list(axes), fraction=0.05, pad=0.02)
    bar.set_label(COLORBAR_LABEL, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    if title:
        lines = [part for line in title.splitlines() for part in textwrap.wrap(line, int(17 * width)) or [""]]
        fig.suptitle("\n".join(lines), fontsize=7, ha="left", x=0.02)
    return fig
