"""The panel of one cell type across species: a dialog over the map with the highlighted term's annotation (its
abbreviations spelled out with their ontology identifiers), its share of each species' cells, its regions in
each species' cells and a dot plot of its conserved marker genes with one row per species' cells (filled by
``callbacks.species`` from :func:`core.species.across_species`)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from dash import dcc, html

from components import ids
from components.analysis_panels import CHART_CONFIG, _chart_layout, dot_key, dot_plot_figure
from components.figures import message_figure
from components.panels import ACTION_ACROSS

#: Height of one bar of the region chart (px) and of the chart's legend rows.
REGION_BAR_PX = 26


def across_button() -> html.Button:
    """The button that opens the panel (beside the legend's head; hidden until a shared term is highlighted)."""
    return html.Button("Across species", id=ids.ACROSS_OPEN, className="button small across-open", n_clicks=0,
                       hidden=True, title="The highlighted cell type in each species: annotation, share of cells, "
                                          "regions and marker genes")


def clicked_across(level: str, name: str, color: str) -> list:
    """Children of the UMAP's head after a click on a cell: its term at a level the species share, as a button
    that highlights the term and opens the panel in one click (the tree's :data:`components.panels.ACTION_ACROSS`);
    ``level`` and ``name`` travel as ``data-`` attributes to the page's one click listener."""
    return [html.Button(
        [html.Span(className="swatch", style={"backgroundColor": color}), html.Span(name, className="umap-across-name"),
         html.Span("⇄ species", className="umap-across-go")],
        className="umap-across-button", n_clicks=0,
        title=f"The clicked cell's {level} {name} across species: annotation, share of cells, regions and marker "
              f"genes in each species",
        **{"data-action": ACTION_ACROSS, "data-level": level, "data-name": name},
    )]


def across_panel() -> html.Div:
    """The panel: a dialog over the map and the right column (the controls and the legend stay usable), hidden
    until opened."""
    return html.Div(
        id=ids.ACROSS_PANEL,
        className="across-overlay",
        hidden=True,
        children=html.Div(
            className="across-dialog",
            role="dialog",
            **{"aria-label": "Cell type across species"},
            children=[
                html.Div(className="card-head across-head", children=[
                    html.Span("Across species", className="section-title"),
                    html.Button("Maps side by side", id=ids.ACROSS_MAPS, className="button small", n_clicks=0,
                                title="The species side by side in the map card, this term highlighted"),
                    html.Button("Close", id=ids.ACROSS_CLOSE, className="button small", n_clicks=0),
                ]),
                html.Div(id=ids.ACROSS_BODY, className="across-body"),
            ],
        ),
    )


def _percent(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}%" if value < 0.1 else f"{100 * value:.1f}%"


def annotation_html(annotation: Sequence[Mapping]) -> html.Div:
    """The term's abbreviations spelled out: ``STR`` striatum ``DHBA:10333``, one chip each."""
    if not annotation:
        return html.Div("The release spells out no abbreviation of this term's name.", className="muted")
    chips = []
    for item in annotation:
        ident = item.get("primary_identifier") or ""
        chips.append(html.Span(className="abbr-chip", title=str(item.get("type") or ""), children=[
            html.B(str(item["abbreviation"])), " = ", str(item.get("meaning") or ""),
            *([" ", html.Code(ident, className="ontology-id")] if ident else []),
        ]))
    return html.Div(chips, className="annotation")


def share_table(shares: Sequence[Mapping], color: str) -> html.Table:
    """One row per species' cells: the term's cells, all cells and the share (with a bar in the term's colour)."""
    top = max((s["share"] for s in shares if s["share"] == s["share"]), default=0.0) or 1.0
    rows = [html.Tr([html.Th("Species · data"), html.Th("Cells of the term"), html.Th("All cells"),
                     html.Th("Share")])]
    for s in shares:
        width = 0 if s["share"] != s["share"] else 100 * s["share"] / top
        rows.append(html.Tr(className="share-row", children=[
            html.Td(s["label"], title=s["dataset"]), html.Td(f"{s['n_term']:,}", className="num"),
            html.Td(f"{s['n_cells']:,}", className="num"),
            html.Td(className="share-cell", children=[
                html.Span(className="share-bar", style={"width": f"{width:.0f}%", "background": color}),
                html.Span(_percent(s["share"]), className="share-value")]),
        ]))
    return html.Table(rows, className="share-table")


def region_figure(regions: Sequence[Mapping], labels: Sequence[str]) -> dict:
    """Stacked horizontal bars: the term's cells per region in each species' cells (the release's region
    colours; rows in ``labels`` order, those without a region column left empty)."""
    if not regions:
        return message_figure("No region of these cells is known")
    names: list[str] = []
    colors: dict[str, str] = {}
    for r in regions:
        if r["region"] not in colors:
            names.append(r["region"])
            colors[r["region"]] = r["color"]
    traces = []
    for name in names:
        rows = [r for r in regions if r["region"] == name]
        traces.append({
            "type": "bar", "orientation": "h", "name": name, "y": [r["label"] for r in rows],
            "x": [r["fraction"] for r in rows], "marker": {"color": colors[name], "line": {"width": 0}},
            "customdata": [[r["n_cells"], r["column"]] for r in rows],
            "hovertemplate": f"{name}: %{{x:.1%}} of the term's cells (%{{customdata[0]:,}})<extra>%{{y}}</extra>",
        })
    legend_rows = math.ceil(len(names) / 5)
    return {"data": traces, "layout": _chart_layout(
        barmode="stack", showlegend=True, height=50 + REGION_BAR_PX * len(labels) + 22 * legend_rows,
        margin={"l": 8, "r": 12, "t": 22, "b": 8 + 22 * legend_rows},
        legend={"orientation": "h", "x": 0, "y": -0.02, "yanchor": "top", "font": {"size": 10},
                "traceorder": "normal"},
        xaxis={"range": [0, 1], "tickformat": ".0%", "fixedrange": True, "gridcolor": "#f0f2f6", "side": "top",
               "tickfont": {"size": 10}},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": list(labels), "autorange": "reversed",
               "automargin": True, "fixedrange": True})}


def p_text(value: Any) -> str:
    """A p-value in a few characters: ``3.2e-12``, ``0.041``, ``< 1e-300`` for 0 (below the float range), ``–`` for
    NaN (not tested)."""
    if value is None or not isinstance(value, (int, float)) or value != value:
        return "–"
    if value == 0:
        return "< 1e-300"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def test_note(d: Mapping) -> str:
    """The hover line of one (species' cells, gene) test: mean difference, Welch's t and the adjusted p."""
    if d.get("p_adj") is None or d["p_adj"] != d["p_adj"]:
        return "not tested (too few cells)"
    return (f"vs the rest of these cells: {d['mean_diff']:+.2f} log2, Welch t {d['t']:.1f}, "
            f"p_adj {p_text(d['p_adj'])} (BH)")


def species_dot_figure(labels: Sequence[str], genes: Sequence[str], dot: Sequence[Mapping]) -> dict:
    """The dot plot of the conserved markers: one row per species' cells (:func:`dot_plot_figure`), each dot's
    hover with its test against the rest of the row's cells."""
    cell = {(d["label"], d["gene"]): d for d in dot}
    nan = float("nan")
    mean = [[cell.get((row, g), {}).get("mean", nan) for g in genes] for row in labels]
    fraction = [[cell.get((row, g), {}).get("fraction", nan) for g in genes] for row in labels]
    n_cells = [next((d["n_cells"] for d in dot if d["label"] == row), 0) for row in labels]
    notes = {key: test_note(d) for key, d in cell.items() if "p_adj" in d}
    figure = dot_plot_figure(list(labels), list(genes), mean, fraction, n_cells, cell_notes=notes)
    if figure.get("layout"):
        figure["layout"]["height"] = 90 + 30 * len(labels)
    return figure


def markers_table(labels: Sequence[str], genes: Sequence[str], dot: Sequence[Mapping]) -> html.Table:
    """Genes (rows, best first) x species' cells (columns): the mean difference against the rest of those cells
    and the Benjamini-Hochberg adjusted p of Welch's t; a p_adj under 0.05 with a positive difference is bold."""
    cell = {(d["label"], d["gene"]): d for d in dot}
    head = html.Tr([html.Th("Gene")] + [html.Th(label) for label in labels])
    rows = [head]
    for gene in genes:
        tds = [html.Th(gene, className="gene")]
        for label in labels:
            d = cell.get((label, gene))
            if d is None or d.get("mean_diff") is None or d["mean_diff"] != d["mean_diff"]:
                tds.append(html.Td("not measured" if d is None or not d.get("gene_identifier") else "–",
                                   className="muted"))
                continue
            held = d["mean_diff"] > 0 and d.get("p_adj") == d.get("p_adj") and d["p_adj"] < 0.05
            tds.append(html.Td(className="held" if held else "", title=test_note(d), children=[
                html.Span(f"{d['mean_diff']:+.2f}", className="diff"), " ",
                html.Span(p_text(d.get("p_adj")), className="padj")]))
        rows.append(html.Tr(tds))
    return html.Table(rows, id=ids.ACROSS_MARKERS_TABLE, className="markers-table across-markers-table")


def _sized_graph(graph_id: str, figure: dict) -> dcc.Graph:
    """A chart as tall as its figure says (the panel scrolls; a chart never squeezes its rows)."""
    height = (figure.get("layout") or {}).get("height") or 160
    return dcc.Graph(id=graph_id, className="chart", config=CHART_CONFIG, figure=figure,
                     style={"height": f"{int(height)}px"})


def across_body(summary: Mapping | None, *, message: str = "") -> list:
    """The panel's content for an :class:`core.species.AcrossSpecies` (as a dict), or a message."""
    if summary is None:
        return [html.Div(message or "Highlight a term at a level the species share.", className="muted")]
    labels = [s["label"] for s in summary["shares"]]
    genes = list(summary["genes"])
    return [
        html.Div(className="across-title", children=[
            html.Span(className="swatch", style={"background": summary["color"]}),
            html.Span(summary["term"], className="across-term"),
            html.Span(f"{summary['level']} · {summary['taxonomy']}", className="muted"),
            *([html.Span(id=ids.ACROSS_FIGURE, className="across-downloads across-figure", children=[
                html.Span("This panel as a figure", className="muted"),
                *[html.A(fmt.upper(), href=href, download="", className="button small",
                         title=f"Annotation, shares, regions, markers and maps as one {fmt.upper()} figure")
                  for fmt, href in summary["figure"].items()]])] if summary.get("figure") else []),
        ]),
        html.Div("Annotation (as the release gives it)", className="field-label"),
        annotation_html(summary["annotation"]),
        html.Div("Share of cells", className="field-label"),
        share_table(summary["shares"], summary["color"]),
        html.Div("Regions of its cells", className="field-label"),
        _sized_graph(ids.ACROSS_REGIONS, region_figure(summary["regions"], labels)),
        html.Div(className="across-maps-head", children=[
            html.Span("Maps side by side at one scale (first section of each species)", className="field-label"),
            html.Span(className="across-downloads", children=[
                html.A(fmt.upper(), href=href, download="", className="button small", title=f"The figure as {fmt.upper()}")
                for fmt, href in summary.get("maps", {}).items()]),
        ]),
        *([html.Img(id=ids.ACROSS_MAPS_PICTURE, src=summary["maps"]["png"], className="across-maps-picture",
                    alt=f"{summary['term']} highlighted in each species' first section")]
          if summary.get("maps") else []),
        html.Div(className="across-markers-head", children=[
            html.Span("Conserved marker genes (high in the term in every species, by symbol)",
                      className="field-label"), dot_key()]),
        _sized_graph(ids.ACROSS_DOTS, species_dot_figure(labels, genes, summary["dot"]) if genes
                     else message_figure("No gene is measured in every species' cells")),
        *([html.Div(className="across-markers-head", children=[
            html.Span("Each row's test: mean log2 difference against the rest of its species' cells · "
                      "BH-adjusted p of Welch's t", className="field-label"),
            html.A("CSV", href=summary["markers_csv"], download="", id=ids.ACROSS_MARKERS_CSV,
                   className="button small", title="The markers of each species' cells with their tests as CSV")]),
           html.Div(markers_table(labels, genes, summary["dot"]), className="across-table-wrap")]
          if genes else []),
        html.Div(f"Markers: the term against the rest of each species' dataset of sections (per-cluster means); "
                 f"dots and tests: the term's cells of each row against the other cells of that species in its "
                 f"dataset (other terms of the level), Welch's t with Benjamini-Hochberg over every gene the "
                 f"row's dataset measures. Computed in {summary['seconds']:.2f} s.",
                 className="card-info"),
    ]
