"""One cell type across species: the panel of the highlighted term in each species.

* **Opening**: in one click from the "⇄ species" button of a tree row or legend entry of a term at a level the
  species share (:func:`core.state.across_levels`; it highlights the term and opens the panel); or, when the
  highlighted term (from the tree, the legend, the UMAP or the map) is at such a level, from the "Across species"
  button beside the legend's head; and from the UMAP (and the map): a click on a cell puts its term at a shared
  level in the UMAP's head (beside the map's cell inspector; :func:`clicked_across_step`), a button that
  highlights it and opens the panel in one click. While it is open a click on the UMAP or the map (the clicked
  cell's term), the tree or the legend redraws it for that term; clearing the highlight or choosing a term at a
  finer level closes it.
* **The address**: ``across=1`` while it is open (written by ``callbacks.navigation``); loading such an address,
  a short link or back/forward opens it again (:func:`open_step`).
* **Content**: :func:`core.species.across_species` drawn by :mod:`components.species`; "Maps side by side" puts
  the species side by side in the map card (the term stays highlighted there) and closes the panel.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable

from dash import Input, Output, State, ctx, no_update

from callbacks.view import embedding_of, place_of, view_inputs, view_states
from components import ids
from callbacks.inspector import UNNAMED, clicked_cell
from components.species import across_body, clicked_across
from core.context import ViewerContext
from core.errors import ViewError
from core.species import across_species
from core.state import MAP_VIEWS, across_levels, parse_query

log = logging.getLogger(__name__)

MODE_SPECIES = MAP_VIEWS[1]


def shared_term(dataset: str | None, term: Any, context: ViewerContext) -> tuple[str, str] | None:
    """``(name, level)`` of the highlighted term (the term store's dict) when it can be followed across species."""
    entry = context.catalog.get(dataset)
    if entry is None or not isinstance(term, dict) or not term.get("name"):
        return None
    level = term.get("level")
    return (str(term["name"]), str(level)) if level in across_levels(context.catalog, entry) else None


def button_step(dataset: str | None, term: Any, context: ViewerContext) -> bool:
    """The open button's ``hidden``: shown only for a highlighted term at a level the species share."""
    return shared_term(dataset, term, context) is None


def open_step(triggered: Iterable[str], search: str | None, is_open: Any, dataset: str | None, term: Any,
              context: ViewerContext) -> Any:
    """The panel's open flag after ``triggered`` (``"<id>.<property>"`` of the inputs that changed).

    The address (loaded, back/forward, a short link) decides when it changed; else the open button opens; the
    close and "Maps side by side" buttons close, and a highlight that cannot be followed across species closes.
    ``no_update`` when the flag stays. The "across species" button of a tree row or legend entry opens the panel
    through :func:`across_pick_step`, in the same answer as its highlight.
    """
    triggered = set(triggered)
    if not triggered or f"{ids.URL}.search" in triggered:
        state, _ = parse_query(search, context.catalog, gene_lookup=context.lookups.gene_symbol,
                               term_lookup=context.lookups.term_level)
        wanted = state.across
    elif f"{ids.ACROSS_OPEN}.n_clicks" in triggered:
        wanted = shared_term(dataset, term, context) is not None
    elif triggered & {f"{ids.ACROSS_CLOSE}.n_clicks", f"{ids.ACROSS_MAPS}.n_clicks"}:
        wanted = False
    else:  # the highlight or the dataset changed
        wanted = bool(is_open) and shared_term(dataset, term, context) is not None
    return no_update if bool(is_open) == wanted else wanted


def across_pick_step(trigger: Any, event: Any, dataset: str | None, context: ViewerContext) -> Any:
    """The panel's open flag after a term pick: True for the "across species" button of a tree row or legend entry
    (``TERM_PICKED`` data with ``"across": true``) of a term at a level the species share, else ``no_update``.

    It is answered by the callback that highlights the term, together with the highlight: the Dash renderer keeps
    only the newest answer of a callback, so an open flag answered apart from the highlight could be overwritten
    by the answer to the highlight itself.
    """
    if trigger != ids.TERM_PICKED or not (isinstance(event, dict) and event.get("across") is True):
        return no_update
    picked = {"name": event.get("name"), "level": event.get("level")}
    return True if shared_term(dataset, picked, context) is not None else no_update


def hidden_step(is_open: Any, dataset: str | None, term: Any, context: ViewerContext) -> bool:
    """The panel's ``hidden``: shown while open with a term that can be followed across species (drawn before
    its body, which :func:`panel_step` computes)."""
    return not is_open or shared_term(dataset, term, context) is None


def panel_step(is_open: Any, dataset: str | None, term: Any, context: ViewerContext) -> tuple[bool, Any]:
    """``(panel hidden, body)``: the term across species while the panel is open."""
    picked = shared_term(dataset, term, context)
    if not is_open or picked is None:
        return True, no_update
    name, level = picked
    try:
        summary = across_species(context, dataset, name, level)
    except ViewError as exc:
        return False, across_body(None, message=str(exc))
    return False, across_body(dataclasses.asdict(summary))


def clicked_across_step(graph: str, trigger: Any, event: dict | None, dataset: str | None, color_by: str | None,
                        context: ViewerContext, slab_plane: str | None = None, section: str | None = None,
                        embedding: str | None = None) -> list:
    """The one-click button beside ``graph`` (the UMAP's head, or the map's cell inspector) after a click on it
    (``trigger``: the id that fired, ``event`` its ``clickData``; the place as in :func:`callbacks.inspector.
    clicked_cell`): the clicked cell's term at the colour-by level when the species share it, else at the finest
    level they share (a cluster is followed by its group). No button (``[]``) for a click away from cells, a cell
    without a term there, a dataset whose taxonomy is not in several species, or a new dataset."""
    entry = context.catalog.get(dataset)
    if entry is None or trigger != graph:
        return []
    shared = across_levels(context.catalog, entry)
    if not shared:
        return []
    cell = clicked_cell(graph, event, entry, slab_plane, section, context, embedding)
    if cell is None:
        return []
    shown = color_by if color_by in entry.levels else entry.default_color_by()
    level = shown if shown in shared else shared[-1]
    for cell_level, name, color in cell["levels"]:
        if cell_level == level and name not in UNNAMED:
            return clicked_across(level, name, color)
    return []


def maps_step(clicks: Any) -> Any:
    """The map card's view mode after "Maps side by side": the species side by side."""
    return MODE_SPECIES if clicks else no_update


def register(app: Any, context: ViewerContext) -> dict:
    """Register the panel's callbacks on ``app``; returns name -> callback function."""

    @app.callback(Output(ids.ACROSS_OPEN, "hidden"), inputs=dict(view=view_inputs(ids.DATASET, ids.TERM)))
    def show_button(view):
        return button_step(view[ids.DATASET], view[ids.TERM], context)

    @app.callback(
        Output(ids.ACROSS, "data"),
        inputs=dict(search=Input(ids.URL, "search"), _open=Input(ids.ACROSS_OPEN, "n_clicks"),
                    _close=Input(ids.ACROSS_CLOSE, "n_clicks"), _maps=Input(ids.ACROSS_MAPS, "n_clicks"),
                    view=view_inputs(ids.DATASET, ids.TERM)),
        state=dict(is_open=State(ids.ACROSS, "data")),
    )
    def open_panel(search, _open, _close, _maps, view, is_open):
        triggered = list(ctx.triggered_prop_ids) if ctx.triggered_id is not None else []
        return open_step(triggered, search, is_open, view[ids.DATASET], view[ids.TERM], context)

    @app.callback(
        Output(ids.ACROSS_PANEL, "hidden"),
        inputs=dict(is_open=Input(ids.ACROSS, "data"), view=view_inputs(ids.DATASET, ids.TERM)),
    )
    def show_panel(is_open, view):  # at once: the body may take seconds the first time a term is asked for
        return hidden_step(is_open, view[ids.DATASET], view[ids.TERM], context)

    @app.callback(
        Output(ids.ACROSS_BODY, "children"),
        inputs=dict(is_open=Input(ids.ACROSS, "data"), view=view_inputs(ids.DATASET, ids.TERM)),
        running=[(Output(ids.ACROSS_BODY, "className"), "across-body computing", "across-body")],
    )
    def draw_panel(is_open, view):
        return panel_step(is_open, view[ids.DATASET], view[ids.TERM], context)[1]

    @app.callback(
        Output(ids.UMAP_ACROSS, "children"),
        inputs=dict(click=Input(ids.UMAP_GRAPH, "clickData"), dataset=Input(ids.DATASET, "value")),
        state=dict(color_by=State(ids.COLOR_BY, "value")),
        prevent_initial_call=True,
    )
    def umap_across(click, dataset, color_by):
        return clicked_across_step(ids.UMAP_GRAPH, ctx.triggered_id, click, dataset, color_by, context)

    @app.callback(
        Output(ids.MAP_ACROSS, "children"),
        inputs=dict(click=Input(ids.MAP_GRAPH, "clickData"), dataset=Input(ids.DATASET, "value")),
        state=dict(view=view_states(ids.SLAB_PLANE, ids.SECTION, ids.EMBEDDING, ids.COLOR_BY)),
        prevent_initial_call=True,
    )
    def map_across(click, dataset, view):
        _, slab_plane, section = place_of(view)
        return clicked_across_step(ids.MAP_GRAPH, ctx.triggered_id, click, dataset, view[ids.COLOR_BY], context,
                                   slab_plane, section, embedding_of(view))

    @app.callback(
        Output(ids.MAP_VIEW_MODE, "value", allow_duplicate=True),
        Input(ids.ACROSS_MAPS, "n_clicks"),
        prevent_initial_call=True,
    )
    def maps_side_by_side(clicks):
        return maps_step(clicks)

    return {"show_button": show_button, "open_panel": open_panel, "show_panel": show_panel, "draw_panel": draw_panel,
            "maps_side_by_side": maps_side_by_side, "umap_across": umap_across,
            "map_across": map_across}
