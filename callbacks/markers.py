"""Marker genes of a selection or of the highlighted term, shown as a dot plot the user can add genes to; clicking
a gene colours the map by it.

* A selection (``callbacks.selection``) wins over a highlighted term. Its markers are computed directly on the
  gene-major store (:func:`data_layer.analysis.markers_for_selection`: selected cells against the rest of the
  section, slab plane or UMAP dataset); the rows are the selection, the rest, and the terms holding most of the
  selection (their per-cluster statistics).
* A highlighted term's markers come from the store's per-cluster statistics (:func:`data_layer.analysis.
  markers_for_term`, no cell read); the rows are the term and its siblings (same parent), so a D1 MSN is seen
  beside the D2 MSN.
* Columns: the top genes by difference in mean log2 expression against the rest, then the genes the user added.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from dash import Input, Output, State, no_update

from core.context import ViewerContext
from callbacks.selection import SelectedCells, applies, describe_scope
from callbacks.view import PLACE, place_of, view_states
from components import ids
from components.analysis_panels import dot_plot_figure
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from components.figures import message_figure
from components.layout import gene_options

log = logging.getLogger(__name__)

#: Top marker genes shown before the user's.
TOP_GENES = 8
#: Rows of terms under a selection's two rows, and most rows of a term's dot plot.
SELECTION_TERM_ROWS = 4
MAX_TERM_ROWS = 10
#: Genes offered by the add-genes box per typed text.
GENE_MATCHES = 30


def _resolve(context: ViewerContext, dataset: str, genes: list[str] | None) -> tuple[list[str], list[str]]:
    """``(symbols found in dataset, names not found)`` of the user's genes, in order, without repeats."""
    found, missing = [], []
    for name in genes or []:
        try:
            symbol = context.lookups.gene_symbol(dataset, name)
        except KeyError:
            missing.append(name)
            continue
        if symbol not in found:
            found.append(symbol)
    return found, missing


def _columns(top: list[str], added: list[str]) -> list[str]:
    return top + [g for g in added if g not in top]


def _pivot(table, rows: list[str], genes: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(mean, fraction, n_cells)`` arrays of a long dot-plot table, rows x genes."""
    mean = np.full((len(rows), len(genes)), np.nan)
    frac = np.full((len(rows), len(genes)), np.nan)
    n_cells = [0] * len(rows)
    row_index = {r: i for i, r in enumerate(rows)}
    gene_index = {g: j for j, g in enumerate(genes)}
    for term, gene, m, f, n in zip(table["term"], table["gene"], table["mean"], table["fraction"],
                                   table["n_cells"]):
        i, j = row_index.get(str(term)), gene_index.get(str(gene))
        if i is None or j is None:
            continue
        mean[i, j], frac[i, j], n_cells[i] = m, f, int(n)
    return mean, frac, n_cells


def selection_markers(selection: dict, level: str | None, added: list[str] | None, selected: SelectedCells
                      ) -> tuple[Any, str, str, dict | None]:
    """Dot plot of a selection: ``(figure, title, info, shown)`` (``shown`` = ``{"dataset", "genes"}``)."""
    from data_layer.analysis import (composition, dot_plot_table, markers_for_selection,
                                     selection_dot_plot_table)

    context = selected.context
    dataset = selection["dataset"]
    entry = context.catalog.get(dataset)
    scope = describe_scope(selection)
    if entry is None or not entry.has_genes:
        return message_figure(f"{dataset} has no expression data"), "of the selection", "", None
    cells, mask, where = selected.get(selection)
    n_selected = int(np.count_nonzero(mask))
    if n_selected == 0:
        return message_figure("No cells inside the selection"), "of the selection", "", None
    started = time.perf_counter()
    top = markers_for_selection(context.atlas, dataset, mask, n=TOP_GENES, **where)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if top.empty:
        return message_figure("No selected cell has expression data"), "of the selection", "", None
    user, missing = _resolve(context, dataset, added)
    genes = _columns(top["gene_symbol"].astype(str).tolist(), user)
    labels = (f"Selection ({n_selected:,})", "Rest")
    long = selection_dot_plot_table(context.atlas, dataset, mask, genes, labels=labels, **where)
    rows, colors = list(labels), ["#2f6fde", "#9aa1ad"]
    if level and level in entry.levels:
        table = composition(cells, level, mask, colors=list(context.atlas.colors(dataset, level)))
        table = table[~table["term"].isin(["Adjacent", "unassigned"])].head(SELECTION_TERM_ROWS)
        if len(table):
            terms = table["term"].astype(str).tolist()
            long = pd.concat([long, dot_plot_table(context.atlas, dataset, level, terms, genes)],
                             ignore_index=True)
            rows += terms
            colors += table["color"].astype(str).tolist()
    mean, frac, n_cells = _pivot(long, rows, genes)
    figure = dot_plot_figure(rows, genes, mean, frac, n_cells, row_colors=colors)
    rest = int(long.loc[long["term"] == labels[1], "n_cells"].iloc[0]) if len(long) else 0
    info = (f"Top {len(top)} of {entry.n_genes:,} genes by mean log2 difference, {n_selected:,} selected cells "
            f"against the {rest:,} other cells with expression in {scope}; computed in {elapsed_ms:.0f} ms. "
            "Term rows: all their cells in the dataset. Click a gene to colour the map by it.")
    if missing:
        info += f" Not measured in {dataset}: {', '.join(missing)}."
    return figure, f"of the selection in {scope}", info, {"dataset": dataset, "genes": genes}


def term_rows(context: ViewerContext, dataset: str, level: str, term: str) -> tuple[list[str], list[str]]:
    """``(names, colours)`` of the rows of a term's dot plot: the term, then its siblings with most cells."""
    table = context.atlas.taxonomy(dataset).terms(level)
    match = table[table["name"] == term]
    if match.empty:
        return [term], ["#2f6fde"]
    parent = match["parent"].iloc[0]
    siblings = table[(table["parent"] == parent) & (table["name"] != term)]
    siblings = siblings.sort_values("n_cells", ascending=False, kind="stable").head(MAX_TERM_ROWS - 1)
    order = [term] + siblings["name"].astype(str).tolist()
    colors = dict(zip(table["name"].astype(str), table["color"].astype(str)))
    return order, [colors.get(name, "#9e9e9e") for name in order]


def term_markers(term: dict, dataset: str, added: list[str] | None, context: ViewerContext
                 ) -> tuple[Any, str, str, dict | None]:
    """Dot plot of a highlighted term in ``dataset``: ``(figure, title, info, shown)``."""
    from data_layer.analysis import dot_plot_table, markers_for_term

    entry = context.catalog.get(dataset)
    level, name = term.get("level"), term.get("name")
    title = f"of {level} {name}"
    if entry is None or not entry.has_genes:
        return message_figure(f"{dataset} has no expression data"), title, "", None
    if level not in entry.levels or not context.lookups.term_exists(dataset, level, name):
        return message_figure(f"No {level} {name} in {dataset}"), title, "", None
    started = time.perf_counter()
    top = markers_for_term(context.atlas, dataset, level, name, n=TOP_GENES)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if top.empty:
        return message_figure(f"No cell of {name} has expression data"), title, "", None
    user, missing = _resolve(context, dataset, added)
    genes = _columns(top["gene_symbol"].astype(str).tolist(), user)
    rows, colors = term_rows(context, dataset, level, name)
    long = dot_plot_table(context.atlas, dataset, level, rows, genes)
    mean, frac, n_cells = _pivot(long, rows, genes)
    figure = dot_plot_figure(rows, genes, mean, frac, n_cells, row_colors=colors)
    info = (f"Top {len(top)} genes of {name} against every other cell of {dataset} (per-cluster statistics, "
            f"{elapsed_ms:.0f} ms); rows: {name} and its siblings. Click a gene to colour the map by it.")
    if missing:
        info += f" Not measured in {dataset}: {', '.join(missing)}."
    return figure, title, info, {"dataset": dataset, "genes": genes}


def markers_step(selection: dict | None, term: dict | None, added: list[str] | None, level: str | None,
                 dataset: str | None, slab_plane: str | None, section: str | None, selected: SelectedCells
                 ) -> tuple[Any, str, str, Any]:
    """The marker card: the selection's markers when there is one, else the highlighted term's, else a hint."""
    context = selected.context
    if applies(selection, dataset, slab_plane, section, context):
        return selection_markers(selection, level, added, selected)
    if term and term.get("level") and term.get("name") and dataset:
        return term_markers(term, dataset, added, context)
    return message_figure("Highlight a term or select cells"), "", "", None


def gene_choices(text: str | None, selection: dict | None, dataset: str | None, chosen: list[str] | None,
                 context: ViewerContext) -> list[dict]:
    """Options of the add-genes box: the typed text's matches in the markers' dataset, plus the chosen genes."""
    target = selection["dataset"] if selection else dataset
    entry = context.catalog.get(target)
    if entry is None or not entry.has_genes:
        return [{"label": g, "value": g} for g in chosen or []]
    text = (text or "").strip()
    if text:
        matches = [(m["gene_symbol"], m["gene_identifier"])
                   for m in context.atlas.search_genes(text, target, limit=GENE_MATCHES)]
    else:
        table = context.atlas.genes(target).head(GENE_MATCHES)
        matches = list(zip(table["gene_symbol"].astype(str), table["gene_identifier"].astype(str)))
    have = {symbol for symbol, _ in matches}
    matches = [(g, g) for g in chosen or [] if g not in have] + matches
    return gene_options(matches)


def gene_clicked(click: dict | None, dataset: str | None, color_by: str | None, current_gene: str | None,
                 context: ViewerContext) -> tuple[Any, Any, Any, Any]:
    """``(gene value, gene options, colour-by, info)`` after a click on a dot: the map coloured by that gene
    (kept as the first gene when colouring by two genes), or a note when the map's dataset lacks it.

    A new gene goes to the gene box only (the view's rules then colour by it); the colour-by is set only when
    the gene box already holds that gene."""
    try:
        gene = str(click["points"][0]["customdata"])
    except (TypeError, KeyError, IndexError):
        return no_update, no_update, no_update, no_update
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return no_update, no_update, no_update, f"{dataset} has no expression data to colour by {gene}."
    try:
        symbol = context.lookups.gene_symbol(entry.name, gene)
    except KeyError:
        return no_update, no_update, no_update, f"{gene} is not measured in {entry.name}: the map is unchanged."
    identifier = symbol
    try:
        identifier = str(context.atlas.resolve_gene(entry.name, symbol)[0])
    except KeyError:  # pragma: no cover - resolved just above
        pass
    if symbol == current_gene:
        new_color = no_update if color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) else COLOR_BY_GENE
        return no_update, no_update, new_color, no_update
    return symbol, gene_options([(symbol, identifier)]), no_update, no_update


def register(app: Any, context: ViewerContext) -> dict:
    """Register the marker-gene callbacks on ``app``; returns name -> callback function."""
    selected = SelectedCells(context)

    @app.callback(
        Output(ids.MARKERS_GRAPH, "figure"),
        Output(ids.MARKERS_TITLE, "children"),
        Output(ids.MARKERS_INFO, "children"),
        Output(ids.MARKERS_SHOWN, "data"),
        inputs=dict(selection=Input(ids.SELECTION, "data"), term=Input(ids.TERM, "data"),
                    added=Input(ids.MARKERS_GENES, "value"), level=Input(ids.COMPOSITION_LEVEL, "value"),
                    hidden=Input(ids.ANALYSIS_PANEL, "hidden")),
        state=dict(view=view_states(*PLACE)),
    )
    def draw_markers(selection, term, added, level, hidden, view):
        if hidden:  # nothing computed for a closed panel; opening it fires this again
            return no_update, no_update, no_update, no_update
        return markers_step(selection, term, added, level, *place_of(view), selected)

    @app.callback(
        Output(ids.MARKERS_GENES, "options"),
        Input(ids.MARKERS_GENES, "search_value"),
        State(ids.SELECTION, "data"),
        State(ids.DATASET, "value"),
        State(ids.MARKERS_GENES, "value"),
    )
    def complete_marker_gene(text, selection, dataset, chosen):
        return gene_choices(text, selection, dataset, chosen, context)

    @app.callback(
        Output(ids.GENE, "value", allow_duplicate=True),
        Output(ids.GENE, "options", allow_duplicate=True),
        Output(ids.COLOR_BY, "value", allow_duplicate=True),
        Output(ids.MARKERS_INFO, "children", allow_duplicate=True),
        inputs=dict(click=Input(ids.MARKERS_GRAPH, "clickData")),
        state=dict(view=view_states(ids.DATASET, ids.COLOR_BY, ids.GENE)),
        prevent_initial_call=True,
    )
    def colour_by_clicked_gene(click, view):
        return gene_clicked(click, view[ids.DATASET], view[ids.COLOR_BY], view[ids.GENE], context)

    return {"draw_markers": draw_markers, "complete_marker_gene": complete_marker_gene,
            "colour_by_clicked_gene": colour_by_clicked_gene}
