"""Colour by two genes at once: the second gene box, the blend / "both above thresholds" mode, the picture
parameters they add to the map, and the 2-D colour key in the legend.

The picture itself is drawn by the render route (:func:`core.render.render_two_gene_picture`, built on
:func:`rendering.blend.render_two_genes`): the first gene (the gene box) in magenta, the second in green, white
where both are high, each over its default range (the 99th percentile of its expressing cells in the dataset).
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx, no_update

from core.context import ViewerContext
from callbacks.view import view_inputs, view_states
from components import ids
from components.analysis_panels import two_gene_legend
from core.catalog import COLOR_BY_TWO_GENES
from components.layout import gene_options
from core.state import ViewState, parse_query

log = logging.getLogger(__name__)

#: Side of the 2-D colour key (px).
KEY_PX = 96
#: Genes offered by the second gene box per typed text.
GENE_MATCHES = 30


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0


def default_second_gene(context: ViewerContext, dataset: str, first: str | None, previous: str | None) -> str | None:
    """The second gene: the previous one when ``dataset`` measures it (matched by symbol), else the dataset's
    first gene that is not ``first``."""
    if previous:
        try:
            return context.lookups.gene_symbol(dataset, previous)
        except KeyError:
            pass
    table = context.atlas.genes(dataset).head(4)
    for symbol in table["gene_symbol"].astype(str):
        if symbol != first:
            return symbol
    return None


def url_two_genes(search: str | None, context: ViewerContext) -> ViewState | None:
    """The two-gene part of the address (``gene2``, ``blend``, ``ta``, ``tb``), read by the URL rules; None when
    the address does not colour by two genes."""
    state, _ = parse_query(search, context.catalog, gene_lookup=context.lookups.gene_symbol,
                           term_lookup=context.lookups.term_level)
    return state if state.color_by == COLOR_BY_TWO_GENES else None


def second_gene_step(trigger: str | None, search: str | None, color_by: str | None, dataset: str | None,
                     gene: str | None, gene2: str | None, context: ViewerContext) -> tuple[Any, Any, Any, Any, Any]:
    """``(second gene, its options, mode, threshold a, threshold b)`` of the two-gene controls.

    On page load (or back/forward) they follow the address; when the colouring becomes two genes or the dataset
    changes, the second gene is kept when the dataset measures it (by symbol), else the address's, else a default.
    no_update where nothing changes.
    """
    entry = context.catalog.get(dataset)
    if color_by != COLOR_BY_TWO_GENES or entry is None or not entry.has_genes:
        return (no_update,) * 5
    from_url = url_two_genes(search, context)
    mode = threshold_a = threshold_b = no_update
    if trigger in (None, ids.URL) and from_url is not None:
        mode = from_url.blend_mode
        threshold_a = from_url.threshold_a or 0
        threshold_b = from_url.threshold_b or 0
        gene2 = from_url.gene2 or gene2
    elif not gene2 and from_url is not None:
        gene2 = from_url.gene2
    value = default_second_gene(context, entry.name, gene, gene2)
    if value is None:
        return None, [], mode, threshold_a, threshold_b
    identifier = str(context.atlas.resolve_gene(entry.name, value)[0])
    return value, gene_options([(value, identifier)]), mode, threshold_a, threshold_b


def params_step(color_by: str | None, dataset: str | None, gene2: str | None, mode: str | None, threshold_a: Any,
                threshold_b: Any, current: dict | None, context: ViewerContext) -> Any:
    """The picture parameters of a two-gene map (``{"gene2", "blend_mode", "threshold_a", "threshold_b"}``),
    None when not colouring by two genes; no_update when unchanged."""
    value = None
    entry = context.catalog.get(dataset)
    if color_by == COLOR_BY_TWO_GENES and gene2 and entry is not None and entry.has_genes:
        try:
            symbol = context.lookups.gene_symbol(entry.name, gene2)
        except KeyError:
            symbol = None
        if symbol:
            both = mode == "both"
            value = {"gene2": symbol, "blend_mode": "both" if both else "blend",
                     "threshold_a": _number(threshold_a) if both else None,
                     "threshold_b": _number(threshold_b) if both else None}
    return no_update if value == current else value


def legend_step(params: dict | None, color_by: str | None, dataset: str | None, gene: str | None,
                context: ViewerContext) -> Any:
    """The legend's 2-D colour key for a two-gene map (no_update otherwise: the legend callback draws it)."""
    from rendering.blend import legend_2d_png

    entry = context.catalog.get(dataset)
    if color_by != COLOR_BY_TWO_GENES or not params or not gene or entry is None:
        return no_update
    gene2 = params["gene2"]
    range_a = context.gene_range(entry.name, gene)
    range_b = context.gene_range(entry.name, gene2)
    key = legend_2d_png(KEY_PX, range_a=range_a, range_b=range_b, gene_a=gene, gene_b=gene2)
    thresholds = (params.get("threshold_a") or 0.0, params.get("threshold_b") or 0.0)
    return two_gene_legend(key.to_dict()["src"], gene, gene2, range_a, range_b, params.get("blend_mode", "blend"),
                           thresholds)


def completions(text: str | None, dataset: str | None, current: str | None, context: ViewerContext) -> list[dict]:
    """Options of the second gene box for a typed text (the current gene kept)."""
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return []
    text = (text or "").strip()
    if text:
        matches = [(m["gene_symbol"], m["gene_identifier"])
                   for m in context.atlas.search_genes(text, entry.name, limit=GENE_MATCHES)]
    else:
        table = context.atlas.genes(entry.name).head(GENE_MATCHES)
        matches = list(zip(table["gene_symbol"].astype(str), table["gene_identifier"].astype(str)))
    if current and current not in {s for s, _ in matches}:
        matches.insert(0, (current, current))
    return gene_options(matches)


def register(app: Any, context: ViewerContext) -> dict:
    """Register the two-gene callbacks on ``app``; returns name -> callback function."""

    @app.callback(Output(ids.TWO_GENE_CONTROLS, "hidden"), Input(ids.COLOR_BY, "value"))
    def show_controls(color_by):
        return color_by != COLOR_BY_TWO_GENES

    @app.callback(Output(ids.THRESHOLDS, "hidden"), Input(ids.BLEND_MODE, "value"))
    def show_thresholds(mode):
        return mode != "both"

    @app.callback(
        Output(ids.GENE2, "value"),
        Output(ids.GENE2, "options", allow_duplicate=True),
        Output(ids.BLEND_MODE, "value"),
        Output(ids.THRESHOLD_A, "value"),
        Output(ids.THRESHOLD_B, "value"),
        inputs=dict(search=Input(ids.URL, "search"), view=view_inputs(ids.COLOR_BY, ids.DATASET)),
        state=dict(genes=view_states(ids.GENE, ids.GENE2)),
        prevent_initial_call="initial_duplicate",
    )
    def second_gene(search, view, genes):
        return second_gene_step(ctx.triggered_id, search, view[ids.COLOR_BY], view[ids.DATASET], genes[ids.GENE],
                                genes[ids.GENE2], context)

    @app.callback(
        Output(ids.GENE2, "options", allow_duplicate=True),
        Input(ids.GENE2, "search_value"),
        State(ids.DATASET, "value"),
        State(ids.GENE2, "value"),
        prevent_initial_call=True,
    )
    def complete_second_gene(text, dataset, current):
        return completions(text, dataset, current, context)

    @app.callback(
        Output(ids.TWO_GENES, "data"),
        inputs=dict(view=view_inputs(ids.COLOR_BY, ids.GENE2, ids.BLEND_MODE, ids.THRESHOLD_A, ids.THRESHOLD_B)),
        state=dict(dataset=State(ids.DATASET, "value"), current=State(ids.TWO_GENES, "data")),
        prevent_initial_call=True,  # an address's second gene arrives as a change of its controls
    )
    def two_gene_params(view, dataset, current):
        return params_step(view[ids.COLOR_BY], dataset, view[ids.GENE2], view[ids.BLEND_MODE], view[ids.THRESHOLD_A],
                           view[ids.THRESHOLD_B], current, context)

    @app.callback(
        Output(ids.LEGEND, "children", allow_duplicate=True),
        inputs=dict(params=Input(ids.TWO_GENES, "data"), gene=Input(ids.GENE, "value")),
        state=dict(view=view_states(ids.COLOR_BY, ids.DATASET)),
        prevent_initial_call="initial_duplicate",
    )
    def two_gene_key(params, gene, view):
        return legend_step(params, view[ids.COLOR_BY], view[ids.DATASET], gene, context)

    return {"show_controls": show_controls, "show_thresholds": show_thresholds, "second_gene": second_gene,
            "complete_second_gene": complete_second_gene, "two_gene_params": two_gene_params,
            "two_gene_key": two_gene_key}
