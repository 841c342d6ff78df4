"""The view's controls kept consistent, and the address bar kept in step with them.

One callback owns the selection (dataset, slab plane, section, colour-by, gene, gene range, and the term and
viewport when the URL or a dataset switch sets them): every trigger goes through the pure rules of
:mod:`core.state`, and only the properties that changed are sent back (``no_update`` elsewhere), so no
picture is redrawn for nothing. The dropdowns are inputs and outputs of this one callback (Dash allows that
circle inside one callback), which is what lets a URL set a dataset AND its section at once.

A second callback writes the view into the query string (``history.pushState``/``replaceState`` in the browser,
never a reload), and a third offers gene completions as the user types.

The box/lasso selection is part of the address (``sel_view``, ``sel``). The selection store is written by the
selection callbacks (``callbacks.selection``) and, when an address is read, by the first callback here: in the
same answer as the section it belongs to, so the clearing that follows a section change sees both together.
Writing the address never feeds back: ``history.replaceState`` does not change the ``dcc.Location`` it is read
from (only loading and back/forward do).

The map card's view is part of the address too (``view=species|gallery``, and ``sections=`` and
``zoom_together=0`` of the side by side): written here from the view-mode radio and the side-by-side dropdowns (a
new history entry, like a section change) and "Zoom together" (replacing the entry), read back into them by
``callbacks.compare`` (``address_view_step``, ``address_together_step``); so is the panel across species
(``across=1``, read back by ``callbacks.species``).
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx, no_update

from core.context import ViewerContext
from callbacks.compare import is_together
from callbacks.selection import store_of_view, view_selection
from callbacks.view import view_inputs, view_of, view_states
from components import ids
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES, WHOLE_SLAB_PLANE, WHOLE_UMAP
from components.layout import (color_by_options, embedding_options, gene_options, notice_children,
                               section_options, slab_plane_options)
from core.state import (ViewState, across_levels, default_state, map_view_of, parse_query, switch_dataset,
                        switch_section, switch_slab_plane, to_query, without_unused_range)

log = logging.getLogger(__name__)

#: Colourings that need the gene box.
GENE_COLORINGS = (COLOR_BY_GENE, COLOR_BY_TWO_GENES)
#: Genes offered in the gene box before anything is typed.
FIRST_GENES = 50
#: Completions offered for a typed text.
GENE_MATCHES = 30


def address_state(values: dict[str, Any], context: ViewerContext) -> ViewState:
    """The view the controls show now with the selection that belongs to it (``values[ids.SELECTION]``), the map
    card's view (``values[ids.MAP_VIEW_MODE]``, the side-by-side sections under ``ids.compare_section(slot)``, "Zoom
    together" under ``ids.COMPARE_TOGETHER``) and the panel across species (``values[ids.ACROSS]``, kept only with a
    term it can show): what the address bar and a short link hold."""
    state = view_of(values)
    selection = view_selection(values.get(ids.SELECTION), state.dataset, state.slab_plane, state.section, context,
                               state.embedding)
    sections = [values.get(ids.compare_section(slot)) for slot in range(ids.COMPARE_SLOTS)]
    map_view, species_sections = map_view_of(context.catalog, state.dataset, values.get(ids.MAP_VIEW_MODE),
                                             sections)
    together = values.get(ids.COMPARE_TOGETHER, ["on"])
    entry = context.catalog.get(state.dataset)
    across = (bool(values.get(ids.ACROSS)) and entry is not None and state.term is not None
              and state.term_level in across_levels(context.catalog, entry))
    return state.replace(selection=selection, map_view=map_view, species_sections=species_sections,
                         zoom_together=map_view != "species" or is_together(together), across=across)


def resolve_view(
    trigger: str | None, values: dict[str, Any], context: ViewerContext, *, search: str | None = None,
    previous_taxonomy: str | None = None,
) -> tuple[ViewState, list[str]]:
    """The view after ``trigger`` changed (None or ``ids.URL``: read the URL).

    Parameters
    ----------
    trigger : str or None
        Id of the control that changed.
    values : dict
        Current control values keyed by id (the trigger's already new).
    context : ViewerContext
    search : str or None
        ``location.search`` for a URL trigger.
    previous_taxonomy : str or None
        Taxonomy of the highlighted term (to keep it across a dataset switch).

    Returns
    -------
    (ViewState, list of str)
        The consistent view and notices to show.
    """
    catalog = context.catalog
    lookups = context.lookups
    state = view_of(values)
    notices: list[str] = []
    if trigger in (None, ids.URL):
        state, notices = parse_query(search, catalog, gene_lookup=lookups.gene_symbol, term_lookup=lookups.term_level)
    elif trigger == ids.DATASET:
        if catalog.get(state.dataset) is None:
            state, notices = default_state(catalog), [f"Unknown dataset '{state.dataset}'."]
        else:
            state, notices = switch_dataset(
                catalog, state.replace(dataset=None), state.dataset, gene_lookup=lookups.gene_symbol,
                term_lookup=lookups.term_level, previous_taxonomy=previous_taxonomy,
            )
    elif trigger == ids.SLAB_PLANE:
        if state.slab_plane:
            state = switch_slab_plane(catalog, state, state.slab_plane)
    elif trigger == ids.SECTION:
        state = switch_section(catalog, state, state.section)
    elif trigger == ids.EMBEDDING:  # another UMAP: other coordinates, so the whole of it
        entry = catalog.get(state.dataset)
        if entry is not None and entry.embeddings:  # (a dataset without any: its empty dropdown settling)
            known = entry.embedding(state.embedding) is not None
            state = state.replace(embedding=state.embedding if known else None, viewport=None)
    elif trigger == ids.COLOR_BY:  # a range belongs to the colouring it was set for
        state = state.replace(vmin=None, vmax=None)
        if state.color_by in GENE_COLORINGS and not state.gene:
            state = state.replace(gene=lookups.first_gene(state.dataset))
    elif trigger == ids.GENE:
        entry = catalog.get(state.dataset)
        if state.gene:  # a gene colours by it (a two-gene picture keeps both: this is its first gene)
            color_by = state.color_by if state.color_by == COLOR_BY_TWO_GENES else COLOR_BY_GENE
            state = state.replace(color_by=color_by, vmin=None, vmax=None)
        elif state.color_by in GENE_COLORINGS and entry is not None:
            state = state.replace(color_by=entry.default_color_by(), vmin=None, vmax=None)
    elif trigger == ids.GENE_RANGE_AUTO:
        state = state.replace(vmin=None, vmax=None)
    if state.color_by in GENE_COLORINGS and not state.gene and state.dataset:
        state = state.replace(gene=lookups.first_gene(state.dataset))
    return without_unused_range(catalog, state), notices


def selection_outputs(
    state: ViewState, before: ViewState, context: ViewerContext, notices: list[str], *, force: bool = False,
    selection: Any = no_update, all_genes: bool = False,
) -> tuple:
    """The outputs of the selection callback: changed properties, ``no_update`` for the others.

    Parameters
    ----------
    state, before : ViewState
        The view after and before the trigger.
    force : bool
        Send every property.
    selection : dict, None or no_update
        The box/lasso selection store (set only when an address is read).
    all_genes : bool
        Send the gene box's first options even when the dataset and the gene did not change (first load: the page
        holds the address's view, its gene box only the gene shown).
    """
    catalog = context.catalog
    entry = catalog.get(state.dataset)
    dataset_changed = force or state.dataset != before.dataset
    plane_changed = dataset_changed or state.slab_plane != before.slab_plane

    def changed(new: Any, old: Any) -> Any:
        return new if force or new != old else no_update

    section_value = state.section or (WHOLE_SLAB_PLANE if state.slab_plane else None)
    before_section_value = before.section or (WHOLE_SLAB_PLANE if before.slab_plane else None)
    gene_opts = no_update
    if all_genes or dataset_changed or state.gene != before.gene:
        gene_opts = _gene_option_list(context, state.dataset, state.gene, None)
    term = {"level": state.term_level, "name": state.term, "taxonomy": entry.taxonomy if entry else None} \
        if state.term else None
    before_term = (before.term_level, before.term)
    viewport = state.viewport.to_dict() if state.viewport is not None else None
    return (
        changed(state.dataset, before.dataset),
        slab_plane_options(entry) if dataset_changed else no_update,
        changed(state.slab_plane, before.slab_plane),
        section_options(entry, state.slab_plane) if plane_changed else no_update,
        changed(section_value, before_section_value),
        not (entry is not None and entry.spatial) if dataset_changed else no_update,
        color_by_options(entry) if dataset_changed else no_update,
        changed(state.color_by or None, before.color_by or None),
        not (entry is not None and entry.has_genes) if dataset_changed else no_update,
        gene_opts,
        changed(state.gene, before.gene),
        changed(state.vmin, before.vmin),
        changed(state.vmax, before.vmax),
        term if force or (state.term_level, state.term) != before_term else no_update,
        viewport if force or state.viewport != before.viewport else no_update,
        selection,
        embedding_options(entry) if dataset_changed else no_update,
        changed(embedding_value(entry, state.embedding), embedding_value(entry, before.embedding)),
        not (entry is not None and entry.embeddings) if dataset_changed else no_update,
        notice_children(notices),
    )


def embedding_value(entry: Any, embedding: str | None) -> str | None:
    """The UMAP dropdown's value for a view: the neighborhood's name, the whole-UMAP entry, or None for a dataset
    without neighborhood UMAPs (its dropdown has no options, and a value outside them would be reset)."""
    if entry is None or not entry.embeddings:
        return None
    return embedding or WHOLE_UMAP


def _gene_option_list(context: ViewerContext, dataset: str | None, current: str | None,
                      text: str | None) -> list[dict]:
    """Gene box options: matches of ``text`` (or the first genes), always including the current gene."""
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return []
    atlas = context.atlas
    if text:
        matches = [(m["gene_symbol"], m["gene_identifier"]) for m in atlas.search_genes(text, dataset,
                                                                                          limit=GENE_MATCHES)]
    else:
        table = atlas.genes(dataset).head(FIRST_GENES)
        matches = list(zip(table["gene_symbol"].astype(str), table["gene_identifier"].astype(str)))
    if current and current not in {symbol for symbol, _ in matches}:
        try:
            identifier, symbol = atlas.resolve_gene(dataset, current)
            matches.insert(0, (str(symbol), str(identifier)))
        except KeyError:
            pass
    return gene_options(matches)


SELECTION_OUTPUTS = [
    Output(ids.DATASET, "value"),
    Output(ids.SLAB_PLANE, "options"),
    Output(ids.SLAB_PLANE, "value"),
    Output(ids.SECTION, "options"),
    Output(ids.SECTION, "value"),
    Output(ids.SPATIAL_CONTROLS, "hidden"),
    Output(ids.COLOR_BY, "options"),
    Output(ids.COLOR_BY, "value"),
    Output(ids.GENE_CONTROLS, "hidden"),
    Output(ids.GENE, "options", allow_duplicate=True),
    Output(ids.GENE, "value"),
    Output(ids.GENE_VMIN, "value"),
    Output(ids.GENE_VMAX, "value"),
    Output(ids.TERM, "data", allow_duplicate=True),
    Output(ids.VIEWPORT, "data", allow_duplicate=True),
    Output(ids.SELECTION, "data", allow_duplicate=True),
    Output(ids.EMBEDDING, "options"),
    Output(ids.EMBEDDING, "value"),
    Output(ids.EMBEDDING_CONTROLS, "hidden"),
    Output(ids.NOTICE_VIEW, "children"),
]


def register(app: Any, context: ViewerContext) -> dict:
    """Register the selection, URL and gene-completion callbacks on ``app``.

    Returns
    -------
    dict
        name -> the callback functions (plain functions, callable in tests).
    """

    @app.callback(
        *SELECTION_OUTPUTS,
        inputs=dict(search=Input(ids.URL, "search"),
                    view=view_inputs(ids.DATASET, ids.SLAB_PLANE, ids.SECTION, ids.EMBEDDING, ids.COLOR_BY, ids.GENE),
                    _auto=Input(ids.GENE_RANGE_AUTO, "n_clicks")),
        state=dict(held=view_states(ids.TERM, ids.VIEWPORT, ids.GENE_VMIN, ids.GENE_VMAX),
                   selection=State(ids.SELECTION, "data")),
        prevent_initial_call="initial_duplicate",
    )
    def update_selection(search, view, _auto, held, selection):
        return selection_step(ctx.triggered_id, {**view, **held, ids.SELECTION: selection}, context, search=search)

    @app.callback(
        Output(ids.URL_QUERY, "data"),
        inputs=dict(view=view_inputs(), selection=Input(ids.SELECTION, "data"),
                    mode=Input(ids.MAP_VIEW_MODE, "value"), across=Input(ids.ACROSS, "data"),
                    sections=[Input(ids.compare_section(slot), "value") for slot in range(ids.COMPARE_SLOTS)],
                    together=Input(ids.COMPARE_TOGETHER, "value")),
        state=dict(written=State(ids.URL_QUERY, "data")),
        prevent_initial_call=True,
    )
    def write_url(view, selection, mode, across, sections, together, written):
        values = {**view, ids.SELECTION: selection, ids.MAP_VIEW_MODE: mode, ids.COMPARE_TOGETHER: together,
                  ids.ACROSS: across,
                  **{ids.compare_section(slot): value for slot, value in enumerate(sections)}}
        return url_write(values, context, ctx.triggered_prop_ids.values(), written)

    # history.pushState/replaceState in the browser: no reload, no Dash round trip
    app.clientside_callback(
        "function (data) { return window.atlasViewer.writeUrl(data); }",
        Output(ids.URL_WRITTEN, "data"),
        Input(ids.URL_QUERY, "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.GENE, "options", allow_duplicate=True),
        Output(ids.NOTICE_GENE, "children"),
        Input(ids.GENE, "search_value"),
        State(ids.DATASET, "value"),
        State(ids.GENE, "value"),
        prevent_initial_call=True,
    )
    def complete_gene(text, dataset, current):
        return gene_completions(text, dataset, current, context)

    @app.callback(Output(ids.HEADER_SUMMARY, "children"), Input(ids.DATASET, "value"))
    def header_summary(dataset):
        return dataset_summary(dataset, context)

    return {"update_selection": update_selection, "write_url": write_url, "complete_gene": complete_gene,
            "header_summary": header_summary}


def selection_step(trigger: str | None, values: dict[str, Any], context: ViewerContext, *,
                   search: str | None = None) -> tuple:
    """One run of the selection callback (the callback's body, callable in tests)."""
    before = view_of(values)
    term = values.get(ids.TERM) or {}
    previous_taxonomy = term.get("taxonomy") if isinstance(term, dict) else None
    state, notices = resolve_view(trigger, values, context, search=search, previous_taxonomy=previous_taxonomy)
    first_load = trigger is None
    if trigger == ids.DATASET:
        # the dropdown already shows the new dataset, but its planes, sections and options are the old ones
        before = before.replace(dataset=None)
    selection = no_update
    if trigger in (None, ids.URL):  # the address's selection (or none), in the frame of the place it names
        stored = store_of_view(state, context)
        selection = no_update if stored == values.get(ids.SELECTION) else stored
    elif trigger == ids.EMBEDDING and values.get(ids.SELECTION):  # drawn in the other UMAP's coordinates?
        stored = values[ids.SELECTION]
        if stored.get("view") == "map" and stored.get("embedding") != state.embedding:
            selection = None
    # the page is laid out with its address's view (app.FirstView), so even the first load sends only what differs
    return selection_outputs(state, before, context, notices, selection=selection, all_genes=first_load)


#: Controls whose change alone replaces the address's history entry (a zoom, a selection drawn or cleared, the
#: side-by-side maps' "Zoom together"). Every other change adds an entry the back button returns to, the map card's
#: view mode and side-by-side sections too.
REPLACING_INPUTS = frozenset({ids.VIEWPORT, ids.SELECTION, ids.COMPARE_TOGETHER})


def replaces_history(triggered: Any) -> bool:
    """True when every changed input (component ids) only moves the view or the selection: the address replaces
    its history entry. A section change arriving with the clearing of its old selection still adds one."""
    changed = set(triggered)
    return bool(changed) and changed <= REPLACING_INPUTS


def url_write(values: dict[str, Any], context: ViewerContext, triggered: Any, written: dict | None) -> Any:
    """What the URL-writing callback stores: :func:`url_query` of the view, or no_update when it is the query
    written last.

    Why skip an unchanged query: a section change writes the new address (a new history entry), and the clearing
    of the old section's selection that follows gives the same address as a replacing write; the browser can see
    only the second of two quick store updates, which would turn the new entry into a replaced one (the back button
    would then skip the previous section).

    Parameters
    ----------
    triggered : iterable of str
        Ids of the inputs that changed (:func:`replaces_history`).
    written : dict or None
        The ``{"query", "replace"}`` stored last.
    """
    result = url_query(values, context, only_viewport=replaces_history(triggered))
    if written and written.get("query") == result["query"]:
        return no_update
    return result


def url_query(values: dict[str, Any], context: ViewerContext | None = None, *, only_viewport: bool = False) -> dict:
    """The query string of the controls' view, and whether it replaces the history entry.

    Parameters
    ----------
    values : dict
        Control values keyed by id; with ``context``, ``ids.SELECTION`` (the selection store, when it belongs to
        the view), ``ids.MAP_VIEW_MODE`` and the side-by-side sections are written too (:func:`address_state`).
    only_viewport : bool
        Only the viewport or the selection moved: replace the history entry (a zoom or a lasso is not a step
        back/forward walks through).
    """
    state = address_state(values, context) if context is not None else view_of(values)
    return {"query": to_query(state), "replace": bool(only_viewport)}


def gene_completions(text: str | None, dataset: str | None, current: str | None,
                     context: ViewerContext) -> tuple[list[dict], list]:
    """Gene box options for ``text`` and a notice when nothing matches."""
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return [], []
    text = (text or "").strip()
    options = _gene_option_list(context, dataset, current, text or None)
    matched = [o for o in options if o["value"] != current] if text else options
    if text and not matched:
        return options, notice_children([f"No gene matches '{text}' in {dataset}."])
    return options, []


def dataset_summary(dataset: str | None, context: ViewerContext) -> str:
    """Header line: species, platform, cells, genes and taxonomy of the dataset."""
    entry = context.catalog.get(dataset)
    if entry is None:
        return ""
    parts = [entry.species or "multi-species", entry.platform, f"{entry.n_cells:,} cells"]
    if entry.has_genes:
        parts.append(f"{entry.n_genes:,} genes")
    parts.append(f"taxonomy {entry.taxonomy}")
    return " · ".join(parts)
