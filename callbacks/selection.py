"""Box and lasso selections on the map and the UMAP: the selected cells, their count and composition, their
highlight in both views, clearing, and the CSV export link.

* A Plotly ``selectedData`` event (box ``range`` or ``lassoPoints``; the invisible corner trace makes Plotly
  report it over the picture) becomes the selection store: the compacted geometry
  (:mod:`core.selection`) plus the view it was drawn in (``map`` or ``umap``) and that view's
  dataset and section. Only one selection exists at a time; a new one in either view replaces it.
* The cells are found on the server (:func:`data_layer.analysis.cells_in_box` / ``Selection.mask`` over the
  cells' coordinates), so count, composition, marker genes, highlight and export agree.
* Highlight: the selection's own view draws its picture with ``selection=<geometry>`` (cells outside dimmed);
  the other view draws ``clusters=<codes>``: the clusters holding the selection (:func:`data_layer.analysis.
  clusters_of`), which a map and a UMAP share through the taxonomy, not through their cells.
* Clearing: the "Clear selection" button, a double-click on the map or UMAP in box/lasso mode (Plotly's
  deselect), or moving to another section (a map selection belongs to its section).
* The address bar: the selection that belongs to the view on screen is part of its address (``sel_view``,
  ``sel``: :func:`view_selection`, written by ``callbacks.navigation``); an address with a selection restores the
  store (:func:`store_of_view`), set by the navigation callback in the same answer as the section it belongs to,
  so the clearing on a section change never sees one without the other.
"""
from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import numpy as np
from dash import Input, Output, Patch, State, ctx, no_update

from core.context import ViewerContext
from callbacks.view import PLACE, embedding_of, place_of, section_of, view_inputs, view_states
from components import ids
from components.analysis_panels import composition_figure
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION
from components.figures import message_figure
from core.selection import NOTHING_LINKED, encode_codes, selection_from_event, selection_param, selection_where
from core.state import ViewSelection, ViewState

log = logging.getLogger(__name__)

#: A cluster links to the other view when it holds at least this share of the selected cells (drops the odd
#: stray cell of a neighbouring type caught by a large lasso).
LINK_MIN_FRACTION = 0.005
#: Path of the cell export (``core.export``).
EXPORT_CELLS_CSV = "/export/cells.csv"
#: Most genes written with the selected cells from the dot plot.
EXPORT_MAX_GENES = 40


# ---------------------------------------------------------------------------------------------- the selection
def view_frame(view: str, dataset: str | None, slab_plane: str | None, section: str | None,
               context: ViewerContext, embedding: str | None = None) -> dict | None:
    """``{"view", "dataset", "section", "slab_plane"}`` of the map or the UMAP panel as it is now, or None; with
    ``"embedding"`` too for a single-cell dataset's map showing a neighborhood's UMAP (its own coordinates)."""
    entry = context.catalog.get(dataset)
    if entry is None:
        return None
    if view == "umap":
        target = context.umap_dataset(dataset) if entry.spatial else None
        return {"view": "umap", "dataset": target, "section": None, "slab_plane": None} if target else None
    if not entry.spatial:
        frame = {"view": "map", "dataset": entry.name, "section": None, "slab_plane": None}
        return {**frame, "embedding": embedding} if entry.embedding(embedding) is not None else frame
    section = section_of(section)
    return {"view": "map", "dataset": entry.name, "section": section, "slab_plane": None if section else slab_plane}


def selection_step(selected_data: dict | None, view: str, dataset: str | None, slab_plane: str | None,
                   section: str | None, current: dict | None, context: ViewerContext,
                   embedding: str | None = None) -> Any:
    """The selection store after a ``selectedData`` event of the map (``view="map"``) or the UMAP.

    Returns
    -------
    dict, None or no_update
        The new selection (geometry + frame); None when this view's selection was cleared (Plotly's deselect
        sends ``None``); no_update for an event that carries no geometry or clears nothing.
    """
    frame = view_frame(view, dataset, slab_plane, section, context, embedding)
    if frame is None:
        return no_update
    if not selected_data:
        return None if current and current.get("view") == view else no_update
    geometry = selection_from_event(selected_data)
    if geometry is None:
        return no_update
    selection = {**frame, **geometry}
    return no_update if selection == current else selection


def applies(selection: dict | None, dataset: str | None, slab_plane: str | None, section: str | None,
            context: ViewerContext, embedding: str | None = None) -> bool:
    """True when ``selection`` belongs to what the map (or its UMAP) shows now (``embedding``: the neighborhood
    UMAP the map shows; a selection drawn in another UMAP of the dataset does not belong to it)."""
    if not selection:
        return False
    frame = view_frame(selection.get("view", "map"), dataset, slab_plane, section, context, embedding)
    return frame is not None and all(selection.get(k) == frame.get(k)
                                     for k in ("dataset", "section", "slab_plane", "embedding"))


def store_of_view(state: ViewState, context: ViewerContext) -> dict | None:
    """The selection store of a view's selection (read from an address): its geometry in the frame of the view's
    map or UMAP panel, or None (no selection, or a view with no such panel)."""
    if state.selection is None:
        return None
    frame = view_frame(state.selection.view, state.dataset, state.slab_plane, state.section, context,
                       state.embedding)
    return {**frame, **state.selection.geometry()} if frame is not None else None


def view_selection(selection: dict | None, dataset: str | None, slab_plane: str | None, section: str | None,
                   context: ViewerContext, embedding: str | None = None) -> ViewSelection | None:
    """The address-bar part of the selection store when it belongs to what the map shows now, else None."""
    if not applies(selection, dataset, slab_plane, section, context, embedding):
        return None
    return ViewSelection.from_geometry(selection["view"], selection)


class SelectedCells:
    """The cells of a selection store: its scope's cell table and the mask from the app's one mask cache
    (:class:`core.selection.SelectionMasks`, shared with the picture route and the exports)."""

    def __init__(self, context: ViewerContext):
        self.context = context

    def get(self, selection: dict) -> tuple[Any, np.ndarray, dict]:
        """``(cells, mask, where)``: ``atlas.cells(dataset, **where)``, its read-only ``(n,)`` bool mask, the scope."""
        where = selection_where(selection)
        cells = self.context.atlas.cells(selection["dataset"], **where)
        return cells, self.context.masks.mask(selection["dataset"], where, selection), where


def cluster_level(context: ViewerContext, dataset: str) -> str | None:
    """The finest taxonomy level of ``dataset`` (the level clusters link views through)."""
    entry = context.catalog.get(dataset)
    return entry.levels[-1] if entry is not None and entry.levels else None


def linked_clusters(selection: dict, selected: SelectedCells) -> list[str]:
    """Names of the clusters holding the selection (at least :data:`LINK_MIN_FRACTION` of its cells)."""
    from data_layer.analysis import clusters_of

    level = cluster_level(selected.context, selection["dataset"])
    if level is None:
        return []
    cells, mask, _ = selected.get(selection)
    if not mask.any():
        return []
    table = clusters_of(cells, mask, level=level, min_fraction=LINK_MIN_FRACTION)
    return table["term"].astype(str).tolist()


def cluster_codes(context: ViewerContext, dataset: str, names: list[str]) -> str:
    """Codes (as :func:`core.selection.encode_codes` ranges) of cluster ``names`` in ``dataset``'s
    finest level; names the dataset does not have are left out."""
    level = cluster_level(context, dataset)
    if level is None or not names:
        return ""
    categories = np.asarray(context.atlas.categories(dataset, level), dtype=object)
    position = {str(name): i for i, name in enumerate(categories)}
    return encode_codes(position[n] for n in names if n in position)


def highlight_step(selection: dict | None, dataset: str | None, slab_plane: str | None, section: str | None,
                   selected: SelectedCells, current_map: dict | None = None,
                   current_umap: dict | None = None, embedding: str | None = None) -> tuple[Any, Any]:
    """Picture parameters of the map and the UMAP for a selection: ``(map_highlight, umap_highlight)``.

    The selection's own view gets ``{"selection": <geometry>}``; the other view gets ``{"clusters": <codes>}``
    of the clusters in the selection (an empty cluster list still dims everything: nothing there is linked).
    Unchanged values are ``no_update``.
    """
    context = selected.context
    map_value = umap_value = None
    if applies(selection, dataset, slab_plane, section, context, embedding):
        own = {"selection": selection_param(selection)}
        names = linked_clusters(selection, selected)
        if selection["view"] == "map":
            map_value = own
            target = context.umap_dataset(dataset)
            entry = context.catalog.get(dataset)
            if target and entry is not None and entry.spatial:
                umap_value = {"clusters": cluster_codes(context, target, names) or NOTHING_LINKED}
        else:
            umap_value = own
            map_value = {"clusters": cluster_codes(context, dataset, names) or NOTHING_LINKED}
    return (no_update if map_value == current_map else map_value,
            no_update if umap_value == current_umap else umap_value)


# ---------------------------------------------------------------------------------------------- summary
def level_choices(context: ViewerContext, dataset: str | None) -> list[str]:
    """Columns a composition can be counted over: the taxonomy levels, the other cell columns (species, dissected
    region...), ``region`` (sections), then the numeric cell columns (their mean and median over the selection)."""
    entry = context.catalog.get(dataset)
    if entry is None:
        return []
    return (list(entry.levels) + list(entry.columns) + ([COLOR_BY_REGION] if entry.spatial else [])
            + list(entry.numeric_columns))


def levels_step(selection: dict | None, dataset: str | None, color_by: str | None, current: str | None,
                context: ViewerContext) -> tuple[Any, Any]:
    """``(options, value)`` of the composition's level dropdown: the selection's (else the map's) dataset levels;
    the current level kept when it exists, else the map's colour-by level, else the dataset's default."""
    scope = selection["dataset"] if selection else dataset
    choices = level_choices(context, scope)
    options = [{"label": "Region" if c == COLOR_BY_REGION else c, "value": c} for c in choices]
    if current in choices:
        value = current
    elif color_by in choices:
        value = color_by
    else:
        entry = context.catalog.get(scope)
        value = entry.default_color_by() if entry is not None and entry.levels else (choices[0] if choices else None)
    return options, value


def describe_scope(selection: dict) -> str:
    """Where a selection was drawn, in words."""
    if selection.get("view") == "umap":
        return f"the UMAP of {selection['dataset']}"
    if selection.get("section"):
        return f"section {selection['section']}"
    if selection.get("slab_plane"):
        return f"slab plane {selection['slab_plane']}"
    if selection.get("embedding"):
        return f"the {selection['embedding']} UMAP of {selection['dataset']}"
    return f"{selection['dataset']}"


def summary_step(selection: dict | None, level: str | None, dataset: str | None, slab_plane: str | None,
                 section: str | None, selected: SelectedCells, embedding: str | None = None) -> tuple[str, dict]:
    """``(summary text, composition figure)`` of the selection at ``level``."""
    from data_layer.analysis import column_summary, composition

    context = selected.context
    if not applies(selection, dataset, slab_plane, section, context, embedding):
        return "Draw a box or lasso on the map or the UMAP (tools at the top right of each).", \
            message_figure("No selection")
    cells, mask, _ = selected.get(selection)
    n_selected = int(np.count_nonzero(mask))
    text = f"{n_selected:,} cells selected in {describe_scope(selection)} ({selection['kind']})"
    if selection["view"] == "umap":
        names = linked_clusters(selection, selected)
        text += f" · {len(names)} clusters highlighted in the map"
    else:
        target = context.umap_dataset(dataset)
        if target and target != selection["dataset"]:
            text += f" · {len(linked_clusters(selection, selected))} clusters highlighted in the UMAP"
    if n_selected == 0:
        return text, message_figure("No cells inside the selection")
    if not level or level not in cells.columns:
        return text, message_figure("Choose a level")
    entry = context.catalog.get(selection["dataset"])
    if entry is not None and entry.is_numeric(level):
        return text, message_figure(numeric_summary_text(level, column_summary(cells[level].to_numpy(), mask)))
    table = composition(cells, level, mask, colors=list(context.atlas.colors(selection["dataset"], level)))
    figure = composition_figure(table["term"].tolist(), table["n_cells"].tolist(), table["color"].tolist(),
                                level)
    return text, figure


def numeric_summary_text(column: str, found: dict) -> str:
    """A numeric column over a selection in words: mean, median and range of the cells with a value."""
    if not found["n_measured"]:
        return f"{column}: no selected cell has a value"
    text = (f"{column}: mean {found['mean']:.4g}, median {found['median']:.4g} (range {found['min']:.4g} – "
            f"{found['max']:.4g}) over {found['n_measured']:,} cells")
    if found["n_missing"]:
        text += f"; {found['n_missing']:,} not measured"
    return text


def export_href(selection: dict | None, dataset: str | None, slab_plane: str | None, section: str | None,
                shown: dict | None, color_by: str | None, gene: str | None, context: ViewerContext,
                embedding: str | None = None) -> str | None:
    """The ``/export/cells.csv`` link of the selected cells (labels, section, coordinates, every taxonomy level,
    region, and the dot plot's genes plus the map's gene), or None without a selection."""
    if not applies(selection, dataset, slab_plane, section, context, embedding):
        return None
    entry = context.catalog.get(selection["dataset"])
    pairs: list[tuple[str, str]] = [("dataset", selection["dataset"])]
    if selection.get("section"):
        pairs.append(("section", selection["section"]))
    elif selection.get("slab_plane"):
        pairs.append(("slab_plane", selection["slab_plane"]))
    elif selection.get("embedding"):
        pairs.append(("embedding", selection["embedding"]))
    pairs.append(("color_by", entry.default_color_by()))
    genes: list[str] = []
    if gene and color_by == COLOR_BY_GENE and selection["view"] == "map":
        genes.append(gene)
    if shown and shown.get("dataset") == selection["dataset"]:
        genes += [g for g in shown.get("genes") or [] if g not in genes]
    pairs.append(("genes", ",".join(genes[:EXPORT_MAX_GENES]) if entry.has_genes else ""))
    pairs.append(("selection", selection_param(selection)))
    return EXPORT_CELLS_CSV + "?" + urlencode(pairs)


def outline_patches(selection: dict | None) -> tuple[Any, Any]:
    """Patches of the map and UMAP figures that drop Plotly's drawn selection outline where it no longer
    belongs (both views when there is no selection, the other view otherwise).

    The outline is a GUI edit of ``layout.selections`` that Plotly keeps across figure updates (``uirevision``);
    an explicit empty list removes it, and a new ``selectionrevision`` resets the traces' selected points."""
    revision = f"sel-{time.monotonic_ns()}"

    def clear() -> Patch:
        patch = Patch()
        patch["layout"]["selections"] = []
        patch["layout"]["selectionrevision"] = revision
        return patch

    view = selection.get("view") if selection else None
    return (clear() if view != "map" else no_update, clear() if view != "umap" else no_update)


def panel_step(trigger: str | None, selection: dict | None, hidden: bool | None) -> Any:
    """Whether the analysis panel is hidden: the button toggles it; a new selection opens it."""
    if trigger == ids.ANALYSIS_OPEN:
        return not bool(hidden)
    if trigger == ids.SELECTION and selection:
        return False if hidden else no_update
    return no_update


def pick_from_chart(click: dict | None) -> Any:
    """``TERM_PICKED`` data of a click on a composition bar (the grey "others" bar picks nothing)."""
    try:
        level, name = click["points"][0]["customdata"][:2]
    except (TypeError, KeyError, IndexError, ValueError):
        return no_update
    if not level or not name:
        return no_update
    return {"level": str(level), "name": str(name), "t": time.time()}


# ---------------------------------------------------------------------------------------------- register
def register(app: Any, context: ViewerContext) -> dict:
    """Register the selection callbacks on ``app``; returns name -> callback function."""
    selected = SelectedCells(context)

    @app.callback(
        Output(ids.SELECTION, "data", allow_duplicate=True),
        inputs=dict(selected_data=Input(ids.MAP_GRAPH, "selectedData")),
        state=dict(view=view_states(*PLACE), current=State(ids.SELECTION, "data")),
        prevent_initial_call=True,
    )
    def select_on_map(selected_data, view, current):
        return selection_step(selected_data, "map", *place_of(view), current, context, embedding_of(view))

    @app.callback(
        Output(ids.SELECTION, "data", allow_duplicate=True),
        Input(ids.UMAP_GRAPH, "selectedData"),
        State(ids.DATASET, "value"),
        State(ids.SELECTION, "data"),
        prevent_initial_call=True,
    )
    def select_on_umap(selected_data, dataset, current):
        return selection_step(selected_data, "umap", dataset, None, None, current, context)

    @app.callback(
        Output(ids.SELECTION, "data", allow_duplicate=True),
        inputs=dict(_clicks=Input(ids.SELECTION_CLEAR, "n_clicks"), view=view_inputs(*PLACE)),
        state=dict(current=State(ids.SELECTION, "data")),
        prevent_initial_call=True,
    )
    def clear_selection(_clicks, view, current):
        dataset, slab_plane, section = place_of(view)
        if not current:
            return no_update
        if ctx.triggered_id == ids.SELECTION_CLEAR:
            return None
        return no_update if applies(current, dataset, slab_plane, section, context, embedding_of(view)) else None

    @app.callback(
        Output(ids.MAP_GRAPH, "figure", allow_duplicate=True),
        Output(ids.UMAP_GRAPH, "figure", allow_duplicate=True),
        Input(ids.SELECTION, "data"),
        prevent_initial_call=True,
    )
    def drop_outlines(selection):
        return outline_patches(selection)

    @app.callback(
        Output(ids.MAP_HIGHLIGHT, "data"),
        Output(ids.UMAP_HIGHLIGHT, "data"),
        inputs=dict(selection=Input(ids.SELECTION, "data"), view=view_inputs(*PLACE)),
        state=dict(current_map=State(ids.MAP_HIGHLIGHT, "data"), current_umap=State(ids.UMAP_HIGHLIGHT, "data")),
        prevent_initial_call=True,  # no selection yet; an address's selection arrives as a change of the store
    )
    def highlight(selection, view, current_map, current_umap):
        return highlight_step(selection, *place_of(view), selected, current_map, current_umap,
                              embedding=embedding_of(view))

    @app.callback(
        Output(ids.COMPOSITION_LEVEL, "options"),
        Output(ids.COMPOSITION_LEVEL, "value"),
        Input(ids.SELECTION, "data"),
        Input(ids.DATASET, "value"),
        State(ids.COLOR_BY, "value"),
        State(ids.COMPOSITION_LEVEL, "value"),
    )
    def composition_levels(selection, dataset, color_by, current):
        return levels_step(selection, dataset, color_by, current, context)

    @app.callback(
        Output(ids.SELECTION_SUMMARY, "children"),
        Output(ids.COMPOSITION_GRAPH, "figure"),
        inputs=dict(selection=Input(ids.SELECTION, "data"), level=Input(ids.COMPOSITION_LEVEL, "value")),
        state=dict(view=view_states(*PLACE)),
    )
    def draw_composition(selection, level, view):
        return summary_step(selection, level, *place_of(view), selected, embedding=embedding_of(view))

    @app.callback(
        Output(ids.SELECTION_EXPORT, "href"),
        inputs=dict(selection=Input(ids.SELECTION, "data"), shown=Input(ids.MARKERS_SHOWN, "data"),
                    gene=Input(ids.GENE, "value")),
        state=dict(view=view_states(*PLACE, ids.COLOR_BY)),
    )
    def export_link(selection, shown, gene, view):
        return export_href(selection, *place_of(view), shown, view[ids.COLOR_BY], gene, context,
                           embedding=embedding_of(view))

    @app.callback(
        Output(ids.ANALYSIS_PANEL, "hidden"),
        Input(ids.ANALYSIS_OPEN, "n_clicks"),
        Input(ids.SELECTION, "data"),
        State(ids.ANALYSIS_PANEL, "hidden"),
        prevent_initial_call=True,
    )
    def show_panel(_clicks, selection, hidden):
        return panel_step(ctx.triggered_id, selection, hidden)

    app.clientside_callback(  # the map keeps its size (and zoom) when the panel opens or closes under it
        f"function (hidden) {{ return window.atlasViewer.keepMapSize(hidden, '{ids.MAP_GRAPH}', "
        f"'{ids.ANALYSIS_PANEL}', '{ids.MAP_PANEL}'); }}",
        Output(ids.MAP_PANEL, "style"),
        Input(ids.ANALYSIS_PANEL, "hidden"),
    )

    @app.callback(
        Output(ids.TERM_PICKED, "data", allow_duplicate=True),
        Input(ids.COMPOSITION_GRAPH, "clickData"),
        prevent_initial_call=True,
    )
    def pick_bar(click):
        return pick_from_chart(click)

    return {"select_on_map": select_on_map, "select_on_umap": select_on_umap, "clear_selection": clear_selection,
            "drop_outlines": drop_outlines, "highlight": highlight, "composition_levels": composition_levels,
            "draw_composition": draw_composition, "export_link": export_link, "show_panel": show_panel,
            "pick_bar": pick_bar}
