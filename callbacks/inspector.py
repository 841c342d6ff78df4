"""Cell inspection: hovering or clicking the map or the UMAP shows the nearest cell.

The figures set ``hoveranywhere``/``clickanywhere``, so ``hoverData``/``clickData`` carry the cursor's data
position (``xvals``/``yvals``) anywhere in the plot; :func:`nearest_cell_info` asks the atlas for the nearest cell
(a KD-tree per section) and reads its label, section, region, every taxonomy level and the current gene's value.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from dash import Input, Output, ctx, no_update

from core.context import ViewerContext
from callbacks.view import PLACE, embedding_of, place_of, view_states
from components import ids
from components.panels import inspect_children
from core.viewport import Window

log = logging.getLogger(__name__)

#: A cell further than this share of the view's width from the cursor is not "under" it.
MAX_DISTANCE_OF_VIEW = 0.03


def event_position(event: dict | None) -> tuple[float, float] | None:
    """Data position of a ``hoverData``/``clickData`` event: the cursor (``xvals``/``yvals``), else the first
    point's ``x``/``y``; None when the event carries neither."""
    if not event:
        return None
    xs, ys = event.get("xvals"), event.get("yvals")
    try:
        if xs and ys:
            x, y = float(xs[0]), float(ys[0])
        else:
            points = event.get("points") or []
            if not points:
                return None
            x, y = float(points[0]["x"]), float(points[0]["y"])
    except (TypeError, ValueError, KeyError):
        return None
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return x, y


def nearest_cell_info(
    context: ViewerContext,
    dataset: str,
    x: float,
    y: float,
    *,
    section: str | None = None,
    slab_plane: str | None = None,
    gene: str | None = None,
    max_distance: float | None = None,
    embedding: str | None = None,
) -> dict | None:
    """Facts about the cell nearest to ``(x, y)``, or None when there is none within ``max_distance``.

    Returns
    -------
    dict or None
        ``{"cell_label", "dataset", "section", "region", "x", "y", "levels": [(level, name, colour)],
        "gene": (symbol, value or None) or None, "row": int}``.
    """
    atlas = context.atlas
    where = {"section": section} if section else ({"slab_plane": slab_plane} if slab_plane else (
        {"embedding": embedding} if embedding else {}))
    row = atlas.nearest_cell(dataset, x, y, **where)
    if row is None:
        return None
    cells = atlas.cells(dataset, **where)
    cell_x, cell_y = float(cells["x"].iat[row]), float(cells["y"].iat[row])
    if max_distance is not None and math.hypot(cell_x - x, cell_y - y) > max_distance:
        return None
    taxonomy = atlas.taxonomy(dataset)
    levels = []
    for level in taxonomy.levels:
        if level not in cells:
            continue
        column = cells[level]
        code = int(np.asarray(column.cat.codes)[row])
        if code < 0:
            levels.append((level, "unassigned", "#c8c8c8"))
            continue
        colors = atlas.colors(dataset, level)
        levels.append((level, str(column.cat.categories[code]), colors[code] if code < len(colors) else "#c8c8c8"))
    info: dict[str, Any] = {
        "row": int(row),
        "cell_label": str(cells["cell_label"].iat[row]),
        "dataset": dataset,
        "section": str(cells["brain_section_label"].iat[row]) if "brain_section_label" in cells else None,
        "region": str(cells["region"].iat[row]) if "region" in cells else None,
        "species": str(cells["species"].iat[row]) if "species" in cells else None,
        "x": cell_x,
        "y": cell_y,
        "levels": levels,
        "gene": None,
    }
    if gene:
        try:
            values = atlas.gene(dataset, gene, **where)
            value = float(values[row])
            info["gene"] = (context.lookups.gene_symbol(dataset, gene), None if math.isnan(value) else value)
        except KeyError:
            info["gene"] = None
    return info


#: Names a cell's level may hold that are no term to highlight.
UNNAMED = ("unassigned", "Adjacent")


def clicked_cell(graph: str, event: dict | None, entry: Any, slab_plane: str | None, section: str | None,
                 context: ViewerContext, embedding: str | None = None) -> dict | None:
    """:func:`nearest_cell_info` of the cell clicked on the map or the UMAP (``graph``) of ``entry``'s view, or
    None for a click away from every cell (on the UMAP, further than :data:`MAX_DISTANCE_OF_VIEW` of its width).

    The UMAP shows :meth:`ViewerContext.umap_dataset` (a spatial dataset's single-cell dataset), the map the
    dataset's place: the section, else the slab plane, or a single-cell dataset's neighborhood UMAP."""
    position = event_position(event)
    if position is None:
        return None
    if graph == ids.UMAP_GRAPH:
        target = context.umap_dataset(entry.name)
        where: dict = {}
    else:
        target = entry.name
        where = ({"section": section} if section else {"slab_plane": slab_plane}) if entry.spatial else (
            {"embedding": embedding} if entry.embedding(embedding) is not None else {})
    if target is None or context.catalog.get(target) is None:
        return None
    frame = context.frame_of_dataset(target) if graph == ids.UMAP_GRAPH else None
    max_distance = MAX_DISTANCE_OF_VIEW * frame.width if frame is not None else None
    return nearest_cell_info(context, target, *position, max_distance=max_distance, **where)


def inspect_step(
    trigger: str | None,
    map_event: dict | None,
    umap_event: dict | None,
    dataset: str | None,
    slab_plane: str | None,
    section: str | None,
    gene: str | None,
    viewport: dict | None,
    context: ViewerContext,
    embedding: str | None = None,
) -> Any:
    """Inspector content for the latest hover or click on the map or the UMAP."""
    entry = context.catalog.get(dataset)
    if entry is None:
        return no_update
    on_umap = trigger == ids.UMAP_GRAPH
    event = umap_event if on_umap else map_event
    position = event_position(event)
    if position is None:
        return no_update
    if on_umap:
        target = context.umap_dataset(dataset)
        if target is None:
            return no_update
        where: dict = {}
        frame = context.frame_of_dataset(target)
        window = frame
    else:
        target = entry.name
        where = {"section": section, "slab_plane": None if section else slab_plane} if entry.spatial else (
            {"embedding": embedding} if entry.embedding(embedding) is not None else {})
        frame = context.frame(_state(entry.name, slab_plane, section, where.get("embedding")))
        window = Window.from_dict(viewport) or frame
    target_entry = context.catalog.get(target)
    gene_for_target = gene if target_entry is not None and target_entry.has_genes else None
    try:
        if gene_for_target:
            context.lookups.gene_symbol(target, gene_for_target)
    except KeyError:
        gene_for_target = None
    max_distance = MAX_DISTANCE_OF_VIEW * window.width if window is not None else None
    info = nearest_cell_info(context, target, *position, gene=gene_for_target, max_distance=max_distance, **where)
    if info is None:
        return inspect_children(None, message="No cell under the cursor.")
    info["show_dataset"] = on_umap
    return inspect_children(info)


def _state(dataset, slab_plane, section, embedding=None):
    from core.state import ViewState

    return ViewState(dataset=dataset, slab_plane=slab_plane, section=section, embedding=embedding)


def register(app: Any, context: ViewerContext) -> dict:
    """Register the cell inspector on ``app``; returns name -> callback function."""

    @app.callback(
        Output(ids.INSPECT, "children"),
        inputs=dict(map_hover=Input(ids.MAP_GRAPH, "hoverData"), map_click=Input(ids.MAP_GRAPH, "clickData"),
                    umap_hover=Input(ids.UMAP_GRAPH, "hoverData"), umap_click=Input(ids.UMAP_GRAPH, "clickData")),
        state=dict(view=view_states(*PLACE, ids.GENE, ids.VIEWPORT)),
        prevent_initial_call=True,
    )
    def inspect_cell(map_hover, map_click, umap_hover, umap_click, view):
        trigger = ctx.triggered_id
        prop = ctx.triggered[0]["prop_id"] if ctx.triggered else ""
        map_event = map_click if prop.endswith("clickData") else map_hover
        umap_event = umap_click if prop.endswith("clickData") else umap_hover
        # the gene box's gene is shown whatever the colouring, so a value can be read while colouring by level
        return inspect_step(trigger, map_event, umap_event, *place_of(view), view[ids.GENE], view[ids.VIEWPORT],
                            context, embedding=embedding_of(view))

    return {"inspect_cell": inspect_cell}
