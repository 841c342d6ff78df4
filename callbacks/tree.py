"""The taxonomy tree and the highlighted term.

The tree lists every level with term colours and cell counts (in the current section or slab plane, and in the
whole dataset); it is lazy (children of expanded terms only) and searchable, so 5,322 clusters stay usable.
A term picked anywhere — a tree row, a legend entry, a click on the map or the UMAP (the clicked cell's term at
the colour-by level) — becomes the highlighted term: its cells keep their colour in every picture, the others dim.
Picking it again, or "Clear highlight", removes the highlight.
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx, no_update

from core.context import ViewerContext, term_counts
from core.state import across_levels
from callbacks.inspector import UNNAMED, clicked_cell
from callbacks.species import across_pick_step
from callbacks.view import PLACE, embedding_of, place_of, view_inputs, view_states
from components import ids
from components.panels import TermRow, html_block, term_key, tree_html, tree_search_html

log = logging.getLogger(__name__)

#: Search results listed at most.
SEARCH_LIMIT = 500


class TreeData:
    """Term rows with counts, memoised per dataset for the totals (the section counts are cheap)."""

    def __init__(self, context: ViewerContext):
        self.context = context
        self._totals: dict[tuple[str, str], dict[str, int]] = {}

    def totals(self, dataset: str, level: str) -> dict[str, int]:
        """Cells per term of ``level`` in the whole dataset."""
        key = (dataset, level)
        if key not in self._totals:
            self._totals[key] = term_counts(self.context.atlas.cells(dataset), level)
        return self._totals[key]

    def rows(self, dataset: str, section: str | None, slab_plane: str | None,
             embedding: str | None = None) -> dict[str, list[TermRow]]:
        """level -> :class:`TermRow` of every term, in taxonomy order (the place's counts: a section's, a slab
        plane's or a neighborhood UMAP's cells, beside the whole dataset's)."""
        atlas = self.context.atlas
        taxonomy = atlas.taxonomy(dataset)
        entry = self.context.catalog.get(dataset)
        where = {}
        if entry is not None and entry.spatial:
            where = {"section": section} if section else ({"slab_plane": slab_plane} if slab_plane else {})
        elif entry is not None and entry.embedding(embedding) is not None:
            where = {"embedding": embedding}
        local_cells = atlas.cells(dataset, **where) if where else None
        rows: dict[str, list[TermRow]] = {}
        for level in taxonomy.levels:
            totals = self.totals(dataset, level)
            local = term_counts(local_cells, level) if local_cells is not None else totals
            terms = taxonomy.terms(level)
            rows[level] = [
                TermRow(level=level, name=str(name), color=str(color), parent=str(parent or ""),
                        n_section=local.get(str(name), 0), n_total=totals.get(str(name), 0))
                for name, color, parent in zip(terms["name"], terms["color"], terms["parent"])
            ]
        return rows


def tree_step(dataset, slab_plane, section, term, expanded, search, data: TreeData, embedding=None) -> Any:
    """Tree content for the current dataset, place (``embedding``: a neighborhood UMAP), highlight, expanded terms
    and search text."""
    context = data.context
    entry = context.catalog.get(dataset)
    if entry is None:
        return None
    rows = data.rows(entry.name, section, slab_plane, embedding)
    across = across_levels(context.catalog, entry)
    highlighted = (term["level"], term["name"]) if term and term.get("name") else None
    text = (search or "").strip()
    if text:
        found = context.atlas.search_terms(text, entry.name, limit=SEARCH_LIMIT)
        index = {(row.level, row.name): row for level_rows in rows.values() for row in level_rows}
        matches = [index[(m["level"], m["name"])] for m in found if (m["level"], m["name"]) in index]
        return html_block(tree_search_html(matches, highlighted, text, across), "tree-rows")
    return html_block(tree_html(list(entry.levels), rows, expanded or [], highlighted, across), "tree-rows")


def _event_term(event: dict | None) -> tuple[str, str] | None:
    """``(level, name)`` of a click event of the tree or legend (``TERM_PICKED``/``TREE_TOGGLED`` data)."""
    if not isinstance(event, dict) or not event.get("level") or not event.get("name"):
        return None
    return str(event["level"]), str(event["name"])


def toggle_step(event: dict | None, expanded: list | None) -> Any:
    """Expanded-term keys after a caret click (``no_update`` without a valid event)."""
    picked = _event_term(event)
    if picked is None:
        return no_update
    key = term_key(*picked)
    current = list(expanded or [])
    if key in current:
        current.remove(key)
    else:
        current.append(key)
    return current


def pick_step(
    trigger: Any,
    event: dict | None,
    map_click: dict | None,
    umap_click: dict | None,
    dataset: str | None,
    slab_plane: str | None,
    section: str | None,
    color_by: str | None,
    term: dict | None,
    context: ViewerContext,
    embedding: str | None = None,
) -> Any:
    """Highlighted term after a pick (tree row, legend entry, clear button, map or UMAP click).

    Parameters
    ----------
    trigger : str or None
        Id of the input that fired.
    event : dict or None
        ``TERM_PICKED`` data (``{"level", "name", "t"}``) of a tree row or legend click; with ``"across": true``
        (its "across species" button) the term is highlighted and stays so when it already is.

    Returns
    -------
    dict, None or no_update
        ``{"level", "name", "taxonomy"}`` of the new term, None to clear, no_update for a non-click.
    """
    entry = context.catalog.get(dataset)
    if entry is None or trigger is None:
        return no_update
    if trigger == ids.CLEAR_TERM:
        return None if term else no_update
    picked: tuple[str, str] | None = None
    if trigger == ids.TERM_PICKED:
        picked = _event_term(event)
        if picked is None or picked[0] not in entry.levels:
            return no_update
    elif trigger in (ids.MAP_GRAPH, ids.UMAP_GRAPH):
        picked = _clicked_term(trigger, map_click if trigger == ids.MAP_GRAPH else umap_click, entry, slab_plane,
                               section, color_by, context, embedding)
        if picked is None:
            return no_update
    else:
        return no_update
    current = (term.get("level"), term.get("name")) if term else None
    if current == picked:
        if trigger == ids.TERM_PICKED and event.get("across"):
            return no_update  # "across species" keeps the term highlighted
        return None  # picking the highlighted term again clears it
    return {"level": picked[0], "name": picked[1], "taxonomy": entry.taxonomy}


def expanded_step(trigger: Any, event: dict | None, dataset: str | None, term: dict | None,
                  expanded: list | None, context: ViewerContext) -> Any:
    """Expanded terms of the tree after a caret click, a new highlighted term (its ancestors open, so it
    shows) or a new dataset (collapsed, but for the highlighted term's ancestors)."""
    if trigger == ids.TREE_TOGGLED:
        return toggle_step(event, expanded)
    if trigger == ids.DATASET:
        expanded = []
    elif trigger != ids.TERM:
        return no_update
    if not term or not term.get("name") or context.catalog.get(dataset) is None:
        return expanded if trigger == ids.DATASET else no_update
    revealed = _with_ancestors(expanded, (term["level"], term["name"]), dataset, context)
    if revealed is no_update:
        return expanded if trigger == ids.DATASET else no_update
    return revealed


def _clicked_term(trigger, event, entry, slab_plane, section, color_by, context,
                  embedding=None) -> tuple[str, str] | None:
    info = clicked_cell(trigger, event, entry, slab_plane, section, context, embedding)
    if info is None:
        return None
    level = color_by if color_by in entry.levels else entry.default_color_by()
    for cell_level, name, _ in info["levels"]:
        if cell_level == level and name not in UNNAMED:
            return level, name
    return None


def _with_ancestors(expanded: list | None, picked: tuple[str, str], dataset: str, context: ViewerContext) -> Any:
    """``expanded`` plus the ancestors of ``picked``, so the term shows in the tree."""
    try:
        path = context.atlas.taxonomy(dataset).path(*picked)
    except (KeyError, ValueError):
        return no_update
    keys = [term_key(level, name) for level, name in path.items() if (level, name) != picked]
    current = list(expanded or [])
    added = [key for key in keys if key not in current]
    return current + added if added else no_update


def register(app: Any, context: ViewerContext) -> dict:
    """Register the tree and term-picking callbacks on ``app``; returns name -> callback function."""
    data = TreeData(context)

    @app.callback(Output(ids.TREE_COUNT_HEAD, "children"), Input(ids.DATASET, "value"))
    def count_head(dataset):
        entry = context.catalog.get(dataset)
        return "section · all" if entry is not None and entry.spatial else "cells"

    @app.callback(
        Output(ids.TREE, "children"),
        inputs=dict(view=view_inputs(*PLACE, ids.TERM), expanded=Input(ids.TREE_EXPANDED, "data"),
                    search=Input(ids.TREE_SEARCH, "value")),
    )
    def draw_tree(view, expanded, search):
        return tree_step(*place_of(view), view[ids.TERM], expanded, search, data, embedding=embedding_of(view))

    @app.callback(
        Output(ids.TREE_EXPANDED, "data"),
        inputs=dict(toggled=Input(ids.TREE_TOGGLED, "data"), view=view_inputs(ids.TERM, ids.DATASET)),
        state=dict(expanded=State(ids.TREE_EXPANDED, "data")),
        prevent_initial_call=True,
    )
    def update_expanded(toggled, view, expanded):
        return expanded_step(ctx.triggered_id, toggled, view[ids.DATASET], view[ids.TERM], expanded, context)

    @app.callback(
        Output(ids.TERM, "data", allow_duplicate=True),
        Output(ids.ACROSS, "data", allow_duplicate=True),
        inputs=dict(picked=Input(ids.TERM_PICKED, "data"), _clear=Input(ids.CLEAR_TERM, "n_clicks"),
                    map_click=Input(ids.MAP_GRAPH, "clickData"), umap_click=Input(ids.UMAP_GRAPH, "clickData")),
        state=dict(view=view_states(*PLACE, ids.COLOR_BY, ids.TERM)),
        prevent_initial_call=True,
    )
    def pick_term(picked, _clear, map_click, umap_click, view):
        term = pick_step(ctx.triggered_id, picked, map_click, umap_click, *place_of(view), view[ids.COLOR_BY],
                         view[ids.TERM], context, embedding=embedding_of(view))
        # the "across species" button opens the panel in the same answer as the highlight it makes
        return term, across_pick_step(ctx.triggered_id, picked, view[ids.DATASET], context)

    return {"count_head": count_head, "draw_tree": draw_tree, "update_expanded": update_expanded, "pick_term": pick_term}
