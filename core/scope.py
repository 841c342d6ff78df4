"""What a view covers: its frame and window, its place in the store, its highlighted cells.

Shared by figure export (:mod:`core.figures`) and cell export (:mod:`core.cells`), so both cover the same cells.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.context import ViewerContext
from core.errors import ViewError
from core.state import ViewState, frame_bounds
from core.viewport import Window, padded


# ---------------------------------------------------------------------------------------------- the view
def view_frame(context: ViewerContext, state: ViewState) -> Window:
    """Padded bounds of what the view draws (section, slab plane, or the whole UMAP)."""
    bounds = frame_bounds(context.catalog, state)
    if bounds is None:
        raise ViewError("dataset", f"unknown dataset {state.dataset!r}")
    return padded(bounds)


def view_window(context: ViewerContext, state: ViewState) -> Window:
    """The data window of a view: its viewport clipped to the cells' frame (the whole frame without one).

    Raises
    ------
    ViewError
        Naming ``x0`` when the viewport misses the cells.
    """
    frame = view_frame(context, state)
    if state.viewport is None:
        return frame
    v = state.viewport
    x0, x1 = max(v.x0, frame.x0), min(v.x1, frame.x1)
    y0, y1 = max(v.y0, frame.y0), min(v.y1, frame.y1)
    if not (x0 < x1 and y0 < y1):
        raise ViewError("x0", f"the view x0..x1, y0..y1 misses the cells (they lie in "
                                       f"{frame.x0:.4g}..{frame.x1:.4g}, {frame.y0:.4g}..{frame.y1:.4g})")
    return Window(x0, x1, y0, y1)


def where_of(context: ViewerContext, state: ViewState) -> dict[str, str]:
    """The place of a view as keyword arguments of the atlas's cell methods: ``section`` or ``slab_plane`` of a
    spatial dataset, ``embedding`` (a neighborhood's UMAP) of a single-cell one, empty for a whole UMAP."""
    entry = context.catalog.get(state.dataset)
    if entry is None:
        return {}
    if not entry.spatial:
        return {"embedding": state.embedding} if state.embedding else {}
    if state.section:
        return {"section": state.section}
    return {"slab_plane": state.slab_plane} if state.slab_plane else {}


def highlight_mask(cells: Any, state: ViewState) -> np.ndarray | None:
    """``(n,)`` bool mask of the highlighted term's cells (as the picture route computes it), or None."""
    if not (state.term and state.term_level) or state.term_level not in cells.columns:
        return None
    column = cells[state.term_level]
    if state.term not in column.cat.categories:
        return np.zeros(len(column), dtype=bool)
    return np.asarray(column.cat.codes) == column.cat.categories.get_loc(state.term)


def inside_window(x: np.ndarray, y: np.ndarray, window: Window) -> np.ndarray:
    return (x >= window.x0) & (x <= window.x1) & (y >= window.y0) & (y <= window.y1)




def scale_bar_corner(context: ViewerContext, state: ViewState, window: Window, length: float,
                     height_share: float = 0.1) -> str:
    """The corner of a section's (or slab plane's) map where its scale bar of ``length`` mm goes: the one whose
    box (the bar's width plus its 4 % inset and a margin, ``height_share`` of the height) holds the fewest of the
    view's cells inside ``window``, by the figures' rule (:func:`rendering.figures.emptiest_corner`) on a 64 x 64
    grid of the cells (row 0 at ``window.y0``, the top of a section as drawn)."""
    from rendering.figures import emptiest_corner

    where = where_of(context, state)
    if not where or not (window.width > 0 and window.height > 0):
        return "lower left"
    x, y = context.atlas.xy(state.dataset, **where)
    grid, _, _ = np.histogram2d(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64), bins=64,
                                range=[[window.y0, window.y1], [window.x0, window.x1]])
    return emptiest_corner(grid > 0, length / window.width + 0.1, height_share)
