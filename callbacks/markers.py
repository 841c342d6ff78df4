"""Marker genes of a selection or of the highlighted term, shown as a dot plot the user can add genes to; clicking
a gene colours the map by it.

* A selection (``callbacks.selection``) wins over a highlighted term. Its markers are computed directly on the
  gene-major store (:func:`data_layer.analysis.markers_for_selection`: selected cells against the rest of the
  section, slab plane or UMAP dataset); the rows are the selection, the rest, and the terms holding most of the
  selection (their per-cluster statistics).
* A highlighted term's markers are the term against the cells of the level's other terms (:func:`data_layer.
  analysis.markers_for_term`, one scan of the store); the rows are the term and its siblings (same parent, from
  the per-cluster statistics), so a D1 MSN is seen beside the D2 MSN.
* Both carry Welch's t-test and Benjamini-Hochberg adjusted p over all genes; a top gene's hover gives them.
* Columns: the top genes by difference in mean log2 expression against the rest, then the genes the user added.
* A versus B (the "Compare" pickers) wins over both: two terms at the composition level, the selection and a
  term, or A's term in another species' dataset (:mod:`core.markers`, :func:`data_layer.analysis.compare_groups`
  on the gene-major store). The columns are the genes highest in A (left) and highest in B (right) by mean log2
  difference; each dot's hover gives Welch's t and the Benjamini-Hochberg adjusted p; the "Download table (CSV)"
  link serves every gene's row from ``/export/markers.csv``.
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
from callbacks.view import PLACE, embedding_of, place_of, view_inputs, view_states
from components import ids
from components.analysis_panels import dot_plot_figure
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from core.compare import compare_datasets
from core.errors import ViewError
from core.markers import SELECTION, Comparison, check, compare, group_label, markers_href
from core.selection import selection_where
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
#: Genes on each side of an A-versus-B dot plot (highest in A, highest in B).
COMPARE_GENES = 6
#: Value prefix of a B choice that means "A's term in this other dataset" (a term name never starts with "@").
SAME_TERM_IN = "@same-term-in:"
#: Row colour of the selection.
SELECTION_COLOR = "#2f6fde"


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


def statistics_notes(top: pd.DataFrame) -> dict[str, str]:
    """Hover lines of a marker table's genes: difference, Welch's t and the adjusted p against the rest."""
    return {str(g): f"against the rest: {d:+.2f} · Welch t {t:.1f} · adjusted p {_p_text(p)}"
            for g, d, t, p in zip(top["gene_symbol"], top["diff"], top["t"], top["p_adj"])}


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
    figure = dot_plot_figure(rows, genes, mean, frac, n_cells, row_colors=colors, gene_notes=statistics_notes(top))
    rest = int(long.loc[long["term"] == labels[1], "n_cells"].iloc[0]) if len(long) else 0
    info = (f"Top {len(top)} of {entry.n_genes:,} genes by mean log2 difference, {n_selected:,} selected cells "
            f"against the {rest:,} other cells with expression in {scope} (Welch's t-test, Benjamini-Hochberg "
            f"adjusted p in the hover); computed in {elapsed_ms:.0f} ms. Term rows: all their cells in the dataset. "
            "Click a gene to colour the map by it.")
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
    figure = dot_plot_figure(rows, genes, mean, frac, n_cells, row_colors=colors, gene_notes=statistics_notes(top))
    info = (f"Top {len(top)} genes of {name} against the cells of every other {level} term of {dataset} (Welch's "
            f"t-test, Benjamini-Hochberg adjusted p in the hover; {elapsed_ms:.0f} ms); rows: {name} and its "
            "siblings. Click a gene to colour the map by it.")
    if missing:
        info += f" Not measured in {dataset}: {', '.join(missing)}."
    return figure, title, info, {"dataset": dataset, "genes": genes}


# ---------------------------------------------------------------------------------------------- A versus B
def comparison_dataset(selection: dict | None, dataset: str | None, slab_plane: str | None, section: str | None,
                       context: ViewerContext, embedding: str | None = None) -> tuple[str | None, bool]:
    """``(dataset of the terms, whether the selection can be a group)``: the selection's dataset when it
    belongs to the view (it may be the UMAP's, or the neighborhood UMAP ``embedding`` the map shows), else the
    map's."""
    if applies(selection, dataset, slab_plane, section, context, embedding):
        return selection["dataset"], True
    return dataset, False


def _term_table(context: ViewerContext, dataset: str | None, level: str | None):
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes or not level or level not in entry.levels:
        return None
    table = context.atlas.taxonomy(dataset).terms(level)
    return table[table["n_cells"] > 0]


def other_datasets(context: ViewerContext, dataset: str, level: str, term: str) -> list[str]:
    """The side-by-side datasets of other species whose level has ``term`` (one term across species)."""
    out = []
    for name in compare_datasets(context):
        entry = context.catalog.get(name)
        if (name != dataset and entry is not None and entry.has_genes and level in entry.shared_levels()
                and context.lookups.term_exists(name, level, term)):
            out.append(name)
    return out


def comparison_choices(level: str | None, selection: dict | None, a: str | None, b: str | None,
                       dataset: str | None, slab_plane: str | None, section: str | None, selected: SelectedCells,
                       embedding: str | None = None) -> tuple[list[dict], list[dict], str | None, str | None]:
    """``(A options, B options, A value, B value)`` of the compare pickers: the terms of ``level`` with cells
    (the selection first when there is one); B also offers A's term in the other species' datasets. A value
    that is no longer offered is cleared."""
    context = selected.context
    target, with_selection = comparison_dataset(selection, dataset, slab_plane, section, context, embedding)
    table = _term_table(context, target, level)
    terms = [] if table is None else [{"label": n, "value": n} for n in table["name"].astype(str)]
    first = []
    if with_selection and context.catalog.get(target) is not None and context.catalog.get(target).has_genes:
        _, mask, _ = selected.get(selection)
        first = [{"label": f"Selection ({int(mask.sum()):,} cells)", "value": SELECTION}]
    a_options = first + terms
    a = a if a in {o["value"] for o in a_options} else None
    b_options = list(a_options)
    if a and a != SELECTION and level:
        for name in other_datasets(context, target, level, a):
            entry = context.catalog.get(name)
            b_options.append({"label": f"{a} in {entry.species or name}", "value": SAME_TERM_IN + name})
    b = b if b in {o["value"] for o in b_options} else None
    return a_options, b_options, a, b


def comparison_of(a: str | None, b: str | None, level: str | None, selection: dict | None, dataset: str | None,
                  slab_plane: str | None, section: str | None, context: ViewerContext,
                  embedding: str | None = None) -> Comparison | None:
    """The checked comparison of the pickers, or None when one is empty or no longer valid."""
    if not a or not b:
        return None
    target, with_selection = comparison_dataset(selection, dataset, slab_plane, section, context, embedding)
    if target is None:
        return None
    b_dataset = target
    if b.startswith(SAME_TERM_IN):
        b, b_dataset = a, b[len(SAME_TERM_IN):]
    geometry = None
    where: dict = {}
    if with_selection:
        geometry = {key: selection[key] for key in ("kind", "xs", "ys")}
        where = selection_where(selection)
    try:
        return check(context, Comparison(target, level, a, b, b_dataset, where, geometry))
    except ViewError as exc:
        log.info("no comparison: %s", exc)
        return None


def _term_colors(context: ViewerContext, dataset: str, level: str | None) -> dict[str, str]:
    table = _term_table(context, dataset, level)
    return {} if table is None else dict(zip(table["name"].astype(str), table["color"].astype(str)))


def _p_text(p: float) -> str:
    """A p-value for a hover: ``< 1e-300`` where it underflows to 0, ``n/a`` where untested (no variance)."""
    if p != p:
        return "n/a"
    return "< 1e-300" if p == 0 else f"{p:.2g}"


def comparison_markers(comparison: Comparison, added: list[str] | None, context: ViewerContext
                       ) -> tuple[Any, str, str, dict | None]:
    """Dot plot of A versus B: ``(figure, title, info, shown)``; columns are the :data:`COMPARE_GENES` genes
    highest in A then those highest in B (most B-specific last), then the user's genes."""
    labels = [group_label(context, comparison, side) for side in ("a", "b")]
    title = f"{labels[0]} vs {labels[1]}"
    started = time.perf_counter()
    table = compare(context, comparison)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if table.empty:
        return message_figure("A group has no cell with expression data"), title, "", None
    up = table[table["mean_diff"] > 0].head(COMPARE_GENES)
    down = table[table["mean_diff"] < 0].tail(COMPARE_GENES)
    user, missing = _resolve(context, comparison.dataset, added)
    genes = _columns(up["gene"].astype(str).tolist() + down["gene"].astype(str).tolist(),
                     [g for g in user if g in set(table["gene"])])
    missing += [g for g in user if g not in set(table["gene"])]
    by_gene = table.set_index("gene").loc[genes]
    mean = np.vstack([by_gene["mean_A"].to_numpy(), by_gene["mean_B"].to_numpy()])
    frac = np.vstack([by_gene["frac_A"].to_numpy(), by_gene["frac_B"].to_numpy()])
    notes = {g: f"A − B {r.mean_diff:+.2f} · Welch t {r.t:.1f} · adjusted p {_p_text(r.p_adj)}"
             for g, r in zip(genes, by_gene.itertuples())}
    colors = []
    for side, value, dataset in (("a", comparison.a, comparison.dataset), ("b", comparison.b, comparison.b_dataset)):
        colors.append(SELECTION_COLOR if value == SELECTION
                      else _term_colors(context, dataset, comparison.level).get(value, "#9e9e9e"))
    figure = dot_plot_figure(labels, genes, mean, frac, [table.attrs["n_A"], table.attrs["n_B"]],
                             row_colors=colors, gene_notes=notes)
    info = (f"Welch's t-test, Benjamini-Hochberg adjusted p over {len(table):,} genes; {table.attrs['n_A']:,} vs "
            f"{table.attrs['n_B']:,} cells with expression. Left: the {len(up)} genes highest in A, right: the "
            f"{len(down)} highest in B by mean log2 difference; {elapsed_ms:.0f} ms.")
    if missing:
        info += f" Not compared: {', '.join(missing)}."
    return figure, title, info, {"dataset": comparison.dataset, "genes": genes}


def markers_step(selection: dict | None, term: dict | None, added: list[str] | None, level: str | None,
                 dataset: str | None, slab_plane: str | None, section: str | None, selected: SelectedCells,
                 a: str | None = None, b: str | None = None, embedding: str | None = None
                 ) -> tuple[Any, str, str, Any]:
    """The marker card: A versus B when both are chosen, else the selection's markers when there is one (drawn in
    what the map shows now: its section, slab plane, whole UMAP or neighborhood UMAP ``embedding``), else the
    highlighted term's, else a hint."""
    context = selected.context
    comparison = comparison_of(a, b, level, selection, dataset, slab_plane, section, context, embedding)
    if comparison is not None:
        return comparison_markers(comparison, added, context)
    if applies(selection, dataset, slab_plane, section, context, embedding):
        return selection_markers(selection, level, added, selected)
    if term and term.get("level") and term.get("name") and dataset:
        return term_markers(term, dataset, added, context)
    return message_figure("Highlight a term or select cells"), "", "", None


def comparison_link_step(a: str | None, b: str | None, level: str | None, selection: dict | None,
                         dataset: str | None, slab_plane: str | None, section: str | None, context: ViewerContext,
                         embedding: str | None = None) -> tuple[str | None, bool]:
    """``(href, hidden)`` of the "Download table (CSV)" link: shown once A and B make a comparison."""
    comparison = comparison_of(a, b, level, selection, dataset, slab_plane, section, context, embedding)
    return (markers_href(comparison), False) if comparison is not None else (None, True)


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
                    hidden=Input(ids.ANALYSIS_PANEL, "hidden"), a=Input(ids.MARKERS_A, "value"),
                    b=Input(ids.MARKERS_B, "value")),
        state=dict(view=view_states(*PLACE)),
        prevent_initial_call=True,  # the analysis panel opens closed
    )
    def draw_markers(selection, term, added, level, hidden, a, b, view):
        if hidden:  # nothing computed for a closed panel; opening it fires this again
            return no_update, no_update, no_update, no_update
        return markers_step(selection, term, added, level, *place_of(view), selected, a=a, b=b,
                            embedding=embedding_of(view))

    @app.callback(
        Output(ids.MARKERS_A, "options"),
        Output(ids.MARKERS_B, "options"),
        Output(ids.MARKERS_A, "value"),
        Output(ids.MARKERS_B, "value"),
        inputs=dict(level=Input(ids.COMPOSITION_LEVEL, "value"), selection=Input(ids.SELECTION, "data"),
                    a=Input(ids.MARKERS_A, "value"), view=view_inputs(*PLACE)),
        state=dict(b=State(ids.MARKERS_B, "value")),
    )
    def compare_choices(level, selection, a, view, b):
        return comparison_choices(level, selection, a, b, *place_of(view), selected, embedding=embedding_of(view))

    @app.callback(
        Output(ids.MARKERS_CSV, "href"),
        Output(ids.MARKERS_CSV, "hidden"),
        inputs=dict(a=Input(ids.MARKERS_A, "value"), b=Input(ids.MARKERS_B, "value"),
                    level=Input(ids.COMPOSITION_LEVEL, "value"), selection=Input(ids.SELECTION, "data")),
        state=dict(view=view_states(*PLACE)),
    )
    def comparison_link(a, b, level, selection, view):
        return comparison_link_step(a, b, level, selection, *place_of(view), context, embedding=embedding_of(view))

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
            "colour_by_clicked_gene": colour_by_clicked_gene, "compare_choices": compare_choices,
            "comparison_link": comparison_link}
