"""The UMAP panel beside a spatial dataset: its single-cell dataset (``info.umap_dataset``) drawn by datashader,
coloured by the same level or gene as the map, with the highlighted term linked.

For a single-cell dataset (WMB-10X) the UMAP is the main picture (``callbacks.map_view``) and this panel hides.
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, no_update

from core.context import ViewerContext
from callbacks.view import view_inputs, view_states
from components import ids
from core.catalog import COLOR_BY_GENE
from components.figures import layout_image_of, message_figure, picture_figure, view_patch
from components.layout import notice_children
from core.viewport import Window, window_from_relayout

log = logging.getLogger(__name__)


def _term(term: dict | None) -> tuple[str, str] | None:
    if term and term.get("level") and term.get("name"):
        return str(term["level"]), str(term["name"])
    return None


def umap_figure_step(
    drawn_frame: str | None,
    dataset: str | None,
    color_by: str | None,
    gene: str | None,
    term: dict | None,
    viewport: dict | None,
    size: dict | None,
    context: ViewerContext,
    linked: dict | None = None,
) -> tuple[Any, str, list, bool]:
    """The UMAP panel for one callback run: ``(figure or Patch, title, notices, panel hidden, frame key)``.

    ``drawn_frame`` names the UMAP dataset the figure on screen shows; another one gets a full figure.

    The viewport store remembers which UMAP it belongs to (``{"dataset", "x0", ...}``); a window of another
    UMAP is ignored. ``linked`` holds the selection highlight's picture parameters (``selection``,
    ``clusters``).
    """
    entry = context.catalog.get(dataset)
    if entry is None:
        return message_figure("No dataset"), "UMAP", [], True, None
    if not entry.spatial:
        return no_update, "", [], True, no_update  # the UMAP is the main picture
    target = context.umap_dataset(dataset)
    if target is None:
        text = f"No single-cell UMAP shares the taxonomy of {dataset}."
        return message_figure(text), "UMAP", [], False, None
    umap_color, umap_gene, notice = context.umap_color_by(target, color_by or "", gene)
    frame = context.frame_of_dataset(target)
    window = None
    if viewport and viewport.get("dataset") == target:
        window = Window.from_dict(viewport)
    window = window or frame
    highlight = _term(term)
    if highlight is not None and not context.lookups.term_exists(target, *highlight):
        highlight = None
    notices = [notice] if notice else []
    try:
        image = layout_image_of(context.picture_url(
            dataset=target, section=None, slab_plane=None, color_by=umap_color, gene=umap_gene, term=highlight,
            window=window, frame=frame, size=size, vmin=None, vmax=None, extra=linked,
        ), y_down=False)
    except Exception as exc:
        log.exception("UMAP picture for %s failed", target)
        image = None
        notices.append(f"The UMAP could not be drawn: {exc}")
    colour = f"{umap_gene} expression" if umap_color == COLOR_BY_GENE else umap_color
    target_entry = context.catalog.get(target)
    title = f"UMAP of {target} · {target_entry.n_cells:,} cells · {colour}"
    if drawn_frame != target:
        figure = picture_figure(frame=frame, window=window, image=image, y_down=False,
                                axis_titles=("UMAP 1", "UMAP 2"), with_scale_bar=False, uirevision="umap")
        return figure, title, notice_children(notices), False, target
    patch = view_patch(window, image, y_down=False, with_scale_bar=False)
    return patch, title, notice_children(notices), False, no_update


def first_umap(dataset: str | None, color_by: str | None, gene: str | None, term: dict | None,
               context: ViewerContext) -> tuple[dict, str, str] | None:
    """``(figure, title, frame key)`` of the UMAP panel for the page's layout (see
    :func:`callbacks.map_view.first_map`), or None when the callbacks must draw it."""
    figure, title, notices, hidden, key = umap_figure_step(None, dataset, color_by, gene, term, None, None, context)
    if hidden or notices or not isinstance(key, str) or not (figure.get("layout") or {}).get("images"):
        return None
    return figure, title, key


def umap_viewport_step(relayout: dict | None, current: dict | None, dataset: str | None,
                       context: ViewerContext) -> Any:
    """The UMAP viewport store after a ``relayoutData`` event."""
    target = context.umap_dataset(dataset)
    entry = context.catalog.get(dataset)
    if target is None or entry is None or not entry.spatial:
        return no_update
    frame = context.frame_of_dataset(target)
    old = Window.from_dict(current) if current and current.get("dataset") == target else None
    new = window_from_relayout(relayout, old, frame)
    if new is None or new == old:
        return no_update
    if new == frame:
        return None if current is not None else no_update
    return {"dataset": target, **new.to_dict()}


def register(app: Any, context: ViewerContext) -> dict:
    """Register the UMAP panel callbacks on ``app``; returns name -> callback function."""

    @app.callback(
        Output(ids.UMAP_GRAPH, "figure"),
        Output(ids.UMAP_TITLE, "children"),
        Output(ids.NOTICE_UMAP, "children"),
        Output(ids.UMAP_PANEL, "hidden"),
        Output(ids.UMAP_FRAME, "data"),
        inputs=dict(view=view_inputs(ids.DATASET, ids.COLOR_BY, ids.GENE, ids.TERM),
                    viewport=Input(ids.UMAP_VIEWPORT, "data"), size=Input(ids.UMAP_SIZE, "data"),
                    highlight=Input(ids.UMAP_HIGHLIGHT, "data")),
        state=dict(drawn_frame=State(ids.UMAP_FRAME, "data")),
    )
    def draw_umap(view, viewport, size, highlight, drawn_frame):
        return umap_figure_step(drawn_frame, view[ids.DATASET], view[ids.COLOR_BY], view[ids.GENE], view[ids.TERM],
                                viewport, size, context, linked=highlight)

    @app.callback(
        Output(ids.UMAP_VIEWPORT, "data"),
        inputs=dict(relayout=Input(ids.UMAP_GRAPH, "relayoutData")),
        state=dict(current=State(ids.UMAP_VIEWPORT, "data"), view=view_states(ids.DATASET)),
        prevent_initial_call=True,
    )
    def follow_umap_zoom(relayout, current, view):
        return umap_viewport_step(relayout, current, view[ids.DATASET], context)

    app.clientside_callback(
        f"function (figure) {{ return window.atlasViewer.watchSize('{ids.UMAP_GRAPH}', '{ids.UMAP_SIZE}'); }}",
        Output(ids.UMAP_SIZE, "data"),
        Input(ids.UMAP_GRAPH, "figure"),
    )
    return {"draw_umap": draw_umap, "follow_umap_zoom": follow_umap_zoom}
