"""Figures drawn without touching matplotlib's process-wide state.

radfuse never calls `matplotlib.use`: a notebook or an application that imports radfuse keeps its own backend.
Every report figure is a `matplotlib.figure.Figure` on an Agg canvas (`new_figure`), unknown to pyplot, so it
needs no backend, is never shown by an interactive backend and is freed with its last reference. SHAP's plots
draw through pyplot; `pyplot_draws_on` makes one such figure pyplot's current figure for the duration of the
call and detaches it afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(**kwargs: Any) -> Figure:
    """`Figure(**kwargs)` on an Agg canvas: what `pyplot.figure` gives under the Agg backend (so `fig.canvas.draw`
    and `get_renderer` work), without pyplot."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def new_subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
                 **subplot_kw: Any) -> tuple[Figure, Any]:
    """`pyplot.subplots` without pyplot: the figure and its axes."""
    fig = new_figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplot_kw)


@contextlib.contextmanager
def pyplot_draws_on(fig: Figure) -> Iterator[Figure]:
    """Inside the block `fig` is pyplot's current figure (for libraries that draw with `plt.gca()`, such as SHAP's
    plots with show=False); after it pyplot no longer knows the figure. pyplot's backend is never resolved or
    switched for this, and the figure that was current before is current again."""
    import matplotlib.pyplot as plt
    from matplotlib import _pylab_helpers
    from matplotlib.backend_bases import FigureManagerBase

    manager = FigureManagerBase(fig.canvas, max(plt.get_fignums(), default=0) + 1)
    _pylab_helpers.Gcf.set_active(manager)
    try:
        yield fig
    finally:
        _pylab_helpers.Gcf.destroy(manager)
        fig.canvas.manager = None
