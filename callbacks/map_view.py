"""The map: a section, a whole slab plane, or (for single-cell datasets) the UMAP, drawn by the render route.

* :func:`map_figure_step` builds the full figure when the frame changes (dataset, slab plane, section) and
  otherwise returns a :class:`dash.Patch` that swaps only the picture (colour, gene, range, term, zoom, size).
* ``relayoutData`` (zoom, pan, reset, in every shape Plotly emits) becomes the viewport store.
* The plot area's pixel size comes from the browser (``assets/viewer.js``), so pictures match the screen.
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, no_update

from core.context import ViewerContext
from core.outlines import view_outlines
from core.scope import scale_bar_corner
from components import ids
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES
from components.figures import layout_image_of, message_figure, picture_figure, polygons_visibility_patch, view_patch
from components.layout import notice_children
from callbacks.view import PLACE, view_inputs, view_of, view_states
from core.state import ViewState
from core.viewport import Window, fit_aspect, scale_bar, window_from_relayout

log = logging.getLogger(__name__)

def map_title(state: ViewState, context: ViewerContext, gene2: str | None = None) -> str:
    """Line above the map: what is drawn, how many cells, coloured by what (``gene2``: a two-gene picture's
    second gene)."""
    entry = context.catalog.get(state.dataset)
    if entry is None:
        return ""
    if not entry.spatial and entry.embedding(state.embedding) is not None:
        where, n_cells = f"{entry.name} UMAP of {state.embedding}", entry.embedding(state.embedding).n_cells
    elif not entry.spatial:
        where, n_cells = f"{entry.name} UMAP", entry.n_cells
    elif state.section and state.section in entry.sections:
        where, n_cells = f"Section {state.section}", entry.sections[state.section].n_cells
    else:
        plane = entry.plane(state.slab_plane) if state.slab_plane else None
        where, n_cells = f"Slab plane {state.slab_plane}", plane.n_cells if plane else 0
    if state.color_by == COLOR_BY_TWO_GENES and gene2:
        colour = f"{state.gene} (magenta) and {gene2} (green)"
    elif state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
        colour = f"{state.gene} expression" if state.gene else "gene expression"
    elif state.color_by == COLOR_BY_REGION:
        colour = "region"
    else:
        colour = state.color_by
    text = f"{where} · {n_cells:,} cells · coloured by {colour}"
    if state.term:
        text += f" · highlighting {state.term_level} {state.term}"
    return text


def frame_key(state: ViewState) -> str:
    """Key of what the map's figure is drawn for: a new key needs a new figure, the same key a Patch."""
    return f"{state.dataset}|{state.slab_plane}|{state.section}|{state.embedding}"


def map_figure_step(
    drawn_frame: str | None,
    state: ViewState,
    size: dict | None,
    polygons_on: bool,
    context: ViewerContext,
    extra: dict | None = None,
) -> tuple[Any, str, list, Any]:
    """The map's figure (full or Patch), its title and its notices, for the inputs of one callback run.

    Parameters
    ----------
    drawn_frame : str or None
        :func:`frame_key` of the figure on screen (None: none yet). Another frame gets a full figure; the same
        frame gets a Patch that swaps the picture only.
    state : ViewState
        The view to draw.
    size : dict or None
        ``{"width_px", "height_px"}`` of the plot area.
    polygons_on : bool
        Region outlines visible (the slab plane's, cut to the tissue of the section or plane shown, with a key).
    extra : dict, optional
        Picture parameters of the selection highlight and the two-gene colouring (``ViewerContext.picture_image``).

    Returns
    -------
    (figure or Patch, str, list, str or no_update)
        Figure, title, notices, and the new frame key (``no_update`` for a Patch).
    """
    entry = context.catalog.get(state.dataset)
    if entry is None:
        text = "Choose a dataset" if context.catalog.datasets else "The store holds no dataset"
        return message_figure(text), "", [], None
    if entry.spatial and not state.section and not state.slab_plane:
        return message_figure("Choose a slab plane and a section"), "", [], None
    if state.embedding and entry.embedding(state.embedding) is None:  # a dataset switch not yet through
        state = state.replace(embedding=None)
    frame = context.frame(state)
    window = state.viewport or frame
    ranged = state.color_by == COLOR_BY_GENE or entry.is_numeric(state.color_by)  # drawn over a colour range
    notices: list[str] = []
    image = None
    try:
        image = layout_image_of(context.picture_url(
            dataset=entry.name,
            section=state.section if entry.spatial else None,
            slab_plane=state.slab_plane if entry.spatial else None,
            color_by=state.color_by or entry.default_color_by(),
            gene=state.gene,
            term=(state.term_level, state.term) if state.term else None,
            window=window,
            frame=frame,
            size=size,
            vmin=state.vmin if ranged else None,
            vmax=state.vmax if ranged else None,
            extra=extra,
            embedding=None if entry.spatial else state.embedding,
        ), y_down=entry.spatial)
    except Exception as exc:  # a bad value must give a notice, never a blank panel
        log.exception("map picture for %s failed", state)
        notices.append(f"The map could not be drawn: {exc}")
    if image is None and not notices:
        notices.append("Nothing to draw in this view: double-click the map to see the whole section.")
    title = map_title(state, context, gene2=(extra or {}).get("gene2"))
    key = frame_key(state)
    # the scale bar goes where the plot shows no cells: Plotly widens one axis to the plot's aspect, so look there
    shown = fit_aspect(window, int((size or {}).get("width_px") or 0), int((size or {}).get("height_px") or 0))
    corner = scale_bar_corner(context, state, shown, scale_bar(shown)[1]) if entry.spatial else "lower left"
    if key != drawn_frame:
        polygons = None
        if entry.spatial and state.slab_plane:
            polygons = view_outlines(context, entry.name, state.slab_plane, state.section or None)
        figure = picture_figure(
            frame=frame,
            window=window,
            image=image,
            y_down=entry.spatial,
            axis_titles=("x (mm)", "y (mm)") if entry.spatial else ("UMAP 1", "UMAP 2"),
            polygons=polygons,
            show_polygons=polygons_on,
            with_scale_bar=entry.spatial,
            scale_bar_corner=corner,
            shown=shown,
            uirevision="map",
        )
        return figure, title, notice_children(notices), key
    patch = view_patch(window, image, y_down=entry.spatial, with_scale_bar=entry.spatial, scale_bar_corner=corner,
                       shown=shown)
    return patch, title, notice_children(notices), no_update


def first_map(state: ViewState, context: ViewerContext) -> tuple[dict, str, str] | None:
    """``(figure, title, frame key)`` of the map for the page's layout, so the page carries its first picture
    (at :data:`core.context.DEFAULT_SIZE_PX` until the browser reports the plot area's size), or None when the
    callbacks must draw it: no place to show, a notice to give, a picture that needs the selection highlight or
    the second gene, or another view of the map card."""
    entry = context.catalog.get(state.dataset)
    if (entry is None or state.selection is not None or state.color_by == COLOR_BY_TWO_GENES
            or state.map_view != "map"):
        return None
    figure, title, notices, key = map_figure_step(None, state, None, True, context)
    if not key or notices or not (figure.get("layout") or {}).get("images"):
        return None
    return figure, title, key


def viewport_step(relayout: dict | None, current: dict | None, state: ViewState, context: ViewerContext) -> Any:
    """The viewport store after a ``relayoutData`` event (``no_update`` when the view did not move)."""
    frame = context.frame(state)
    if frame is None:
        return no_update
    new = window_from_relayout(relayout, Window.from_dict(current), frame)
    if new is None:
        return no_update
    if new == frame:
        return None if current is not None else no_update
    old = Window.from_dict(current)
    if old is not None and all(abs(a - b) <= 1e-9 * max(1.0, abs(a)) for a, b in zip(new, old)):
        return no_update
    return new.to_dict()


def register(app: Any, context: ViewerContext) -> dict:
    """Register the map callbacks on ``app``; returns name -> callback function."""

    @app.callback(
        Output(ids.MAP_GRAPH, "figure"),
        Output(ids.MAP_TITLE, "children"),
        Output(ids.NOTICE_MAP, "children"),
        Output(ids.MAP_FRAME, "data"),
        inputs=dict(view=view_inputs(*PLACE, ids.COLOR_BY, ids.GENE, ids.TERM, ids.GENE_VMIN, ids.GENE_VMAX,
                                     ids.VIEWPORT),
                    size=Input(ids.MAP_SIZE, "data"), highlight=Input(ids.MAP_HIGHLIGHT, "data"),
                    two_genes=Input(ids.TWO_GENES, "data")),
        state=dict(polygons=State(ids.POLYGONS, "value"), drawn_frame=State(ids.MAP_FRAME, "data")),
    )
    def draw_map(view, size, highlight, two_genes, polygons, drawn_frame):
        extra = {**(highlight or {}), **(two_genes or {})}
        return map_figure_step(drawn_frame, view_of(view), size, bool(polygons), context, extra=extra)

    @app.callback(
        Output(ids.VIEWPORT, "data", allow_duplicate=True),
        inputs=dict(relayout=Input(ids.MAP_GRAPH, "relayoutData")),
        state=dict(current=State(ids.VIEWPORT, "data"), view=view_states(*PLACE)),
        prevent_initial_call=True,
    )
    def follow_zoom(relayout, current, view):
        return viewport_step(relayout, current, view_of(view), context)

    @app.callback(
        Output(ids.MAP_GRAPH, "figure", allow_duplicate=True),
        inputs=dict(value=Input(ids.POLYGONS, "value")),
        state=dict(view=view_states(*PLACE)),
        prevent_initial_call=True,
    )
    def toggle_polygons(value, view):
        state = view_of(view)
        return polygons_step(bool(value), state.dataset, state.slab_plane, context, section=state.section)

    app.clientside_callback(
        f"function (figure) {{ return window.atlasViewer.watchSize('{ids.MAP_GRAPH}', '{ids.MAP_SIZE}'); }}",
        Output(ids.MAP_SIZE, "data"),
        Input(ids.MAP_GRAPH, "figure"),
    )
    return {"draw_map": draw_map, "follow_zoom": follow_zoom, "toggle_polygons": toggle_polygons}


def polygons_step(visible: bool, dataset: str | None, slab_plane: str | None, context: ViewerContext,
                  section: str | None = None) -> Any:
    """Patch showing or hiding the region outlines (and their key) of the section, or whole slab plane, shown."""
    entry = context.catalog.get(dataset)
    plane = entry.plane(slab_plane) if entry is not None and slab_plane else None
    if plane is None or not plane.has_polygons:
        return no_update
    from components.figures import polygon_traces

    n_outlines = len(polygon_traces(view_outlines(context, entry.name, slab_plane, section or None), visible=visible))
    if n_outlines == 0:
        return no_update
    return polygons_visibility_patch(1 + n_outlines, visible)
