"""The legend beside the map: the terms (or regions) present in the current section in taxonomy order with their
colours and counts, clickable to highlight, narrowed by the filter box above it; or, for a gene (or a numeric cell
column), the colour bar with its shown range (with the species side by side, the one range the maps share).
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, ctx, no_update

from core.context import ViewerContext, term_counts
from callbacks.view import PLACE, embedding_of, place_of, view_inputs
from components import ids
from components.layout import column_label, range_label
from core.compare import compare_datasets, hand_gene_range, side_by_side_range
from core.state import MAP_VIEWS, across_levels
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES
from components.panels import gene_legend, html_block, legend_html, legend_matches

log = logging.getLogger(__name__)

MODE_SPECIES = MAP_VIEWS[1]

#: Colour map of gene pictures (the render route's default).
GENE_CMAP = "viridis"


def legend_step(dataset, slab_plane, section, color_by, gene, term, vmin, vmax,
                context: ViewerContext, text: str | None = None, embedding: str | None = None,
                mode: str | None = None) -> tuple[Any, str, str, Any, Any]:
    """``(legend children, legend title, range info, vmin placeholder, vmax placeholder)``; ``text`` is the
    filter box's (only the entries whose name holds every word are listed, the title counts them); ``embedding``
    a single-cell dataset's neighborhood UMAP (its cells only are counted); ``mode`` the map card's view: with the
    species side by side a gene's or a column's colour bar shows the one range the maps share
    (:func:`core.compare.side_by_side_range`)."""
    from rendering.colors import NAN_GREY, ZERO_GREY, colorscale_stops

    entry = context.catalog.get(dataset)
    if entry is None or not color_by:
        return [], "Legend", "", "min", "max"
    if color_by == COLOR_BY_TWO_GENES:  # the 2-D key is drawn by callbacks.two_genes (it knows the second gene)
        return no_update, "Two genes", "", "min", "max"
    if mode == MODE_SPECIES and (color_by == COLOR_BY_GENE or entry.is_numeric(color_by)):
        shared = _side_by_side_legend(color_by, gene, vmin, vmax, context)
        if shared is not None:
            return shared
    where = {}
    if entry.spatial:
        where = {"section": section} if section else ({"slab_plane": slab_plane} if slab_plane else {})
    elif entry.embedding(embedding) is not None:
        where = {"embedding": embedding}
    atlas = context.atlas
    if entry.is_numeric(color_by):
        found = entry.numeric_columns[color_by]
        if found is None:
            return [], column_label(color_by), f"No cell of {entry.name} has a {color_by}", "min", "max"
        low, high = found
        user = vmin not in (None, "") and vmax not in (None, "")
        shown = (float(vmin), float(vmax)) if user else (low, high)
        info = f"Default range {low:.4g} – {high:.4g} (1st–99th percentile of the dataset's cells)"
        children = gene_legend(color_by, colorscale_stops(GENE_CMAP), *shown, default=not user, nan_color=NAN_GREY,
                               zero_color=None, unit="per cell", hint="range: 1st–99th percentile of cells")
        return children, column_label(color_by), info, f"{low:.4g}", f"{high:.4g}"
    if color_by == COLOR_BY_GENE:
        if not gene:
            return [], "Gene expression", "", "min", "max"
        try:
            low, high = context.gene_range(entry.name, gene)
        except KeyError as exc:
            return [], "Gene expression", str(exc), "min", "max"
        user = vmin not in (None, "") and vmax not in (None, "")
        shown = (float(vmin), float(vmax)) if user else (low, high)
        info = f"Default range {low:.3g} – {high:.3g} (99th percentile of expressing cells)"
        children = gene_legend(gene, colorscale_stops(GENE_CMAP), *shown, default=not user, nan_color=NAN_GREY,
                               zero_color=ZERO_GREY)
        return children, "Gene expression", info, f"{low:.3g}", f"{high:.3g}"
    cells = atlas.cells(entry.name, **where)
    counts = term_counts(cells, color_by)
    highlighted = term.get("name") if term and term.get("level") == color_by else None
    palette = atlas.colors(entry.name, color_by)
    categories = list(cells[color_by].cat.categories)
    items = [(str(name), palette[i], counts[str(name)]) for i, name in enumerate(categories) if str(name) in counts]
    matching = f", {len(legend_matches(items, text)):,} match" if (text or "").strip() else ""
    if color_by == COLOR_BY_REGION:
        title = f"Regions ({len(items):,} here{matching})" if matching else "Regions"
        return html_block(legend_html(color_by, items, None, clickable=False, text=text)), title, "", "min", "max"
    if color_by not in entry.levels:  # a cell column (species, dissected region...): not a term to highlight
        title = f"{column_label(color_by)} ({len(items):,} here{matching})"
        return (html_block(legend_html(color_by, items, None, clickable=False, text=text)), title, "", "min",
                "max")
    title = f"{color_by} ({len(items):,} here{matching})"
    across = color_by in across_levels(context.catalog, entry)
    return (html_block(legend_html(color_by, items, highlighted, text=text, across=across)), title, "", "min",
            "max")


def _side_by_side_legend(color_by, gene, vmin, vmax, context: ViewerContext) -> tuple | None:
    """:func:`legend_step`'s answer for a gene or a numeric column with the species side by side: the maps' one
    range (None when no side-by-side dataset measures it: the dataset's own legend then)."""
    from rendering.colors import NAN_GREY, ZERO_GREY, colorscale_stops

    datasets = compare_datasets(context)
    shown = side_by_side_range(context, datasets, color_by, gene, vmin, vmax)
    default = side_by_side_range(context, datasets, color_by, gene, None, None)
    if shown is None or default is None:
        return None
    low, high = default
    if color_by == COLOR_BY_GENE:
        info = f"Default range {low:.3g} – {high:.3g} (99th percentile of expressing cells, over the species shown)"
        children = gene_legend(gene, colorscale_stops(GENE_CMAP), *shown, default=hand_gene_range(vmin, vmax) is None,
                               nan_color=NAN_GREY, zero_color=ZERO_GREY,
                               hint="range: 99th percentile of expressing cells, over the species shown")
        return children, "Gene expression", info, f"{low:.3g}", f"{high:.3g}"
    info = f"Range {low:.4g} – {high:.4g} (1st–99th percentile of cells, over the species shown)"
    children = gene_legend(color_by, colorscale_stops(GENE_CMAP), *shown, default=hand_gene_range(vmin, vmax) is None,
                           nan_color=NAN_GREY,
                           zero_color=None, unit="per cell",
                           hint="range: 1st–99th percentile of cells, over the species shown")
    return children, column_label(color_by), info, f"{low:.4g}", f"{high:.4g}"


#: Controls whose change gives the legend other entries (another dataset, UMAP or colouring): its filter box is
#: emptied.
NEW_ENTRIES = (ids.DATASET, ids.EMBEDDING, ids.COLOR_BY, ids.GENE)


def filter_after(trigger: str | None, text: str | None) -> tuple[str | None, Any]:
    """``(filter text to apply, filter box value)`` after ``trigger`` changed: a new dataset or colouring (level,
    column or gene) empties a filter typed for the old entries (``""``); otherwise the text stays (no_update)."""
    if trigger in NEW_ENTRIES and text:
        return None, ""
    return text, no_update


def register(app: Any, context: ViewerContext) -> dict:
    """Register the legend callback on ``app``; returns name -> callback function."""

    @app.callback(
        Output(ids.LEGEND, "children"),
        Output(ids.LEGEND_TITLE, "children"),
        Output(ids.GENE_RANGE_INFO, "children"),
        Output(ids.GENE_VMIN, "placeholder"),
        Output(ids.GENE_VMAX, "placeholder"),
        Output(ids.LEGEND_FILTER, "value"),
        Output(ids.RANGE_LABEL, "children"),
        inputs=dict(view=view_inputs(*PLACE, ids.COLOR_BY, ids.GENE, ids.TERM, ids.GENE_VMIN, ids.GENE_VMAX),
                    text=Input(ids.LEGEND_FILTER, "value"), mode=Input(ids.MAP_VIEW_MODE, "value")),
    )
    def draw_legend(view, text, mode):
        dataset, slab_plane, section = place_of(view)
        text, cleared = filter_after(ctx.triggered_id, text)
        return (*legend_step(dataset, slab_plane, section, view[ids.COLOR_BY], view[ids.GENE], view[ids.TERM],
                             view[ids.GENE_VMIN], view[ids.GENE_VMAX], context, text,
                             embedding=embedding_of(view), mode=mode), cleared,
                range_label(context.catalog.get(dataset), view[ids.COLOR_BY]))

    return {"draw_legend": draw_legend}
