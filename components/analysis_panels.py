"""Layout and figures of the analyses: the selection card (count, composition per taxonomy level, CSV export), the
marker-gene dot plot, the two-gene controls, the species side-by-side maps and the section gallery.

Pure builders of plain values (no data access); the callbacks live in ``callbacks.selection``,
``callbacks.markers``, ``callbacks.two_genes`` and ``callbacks.compare``.
"""
from __future__ import annotations

from html import escape
from typing import Mapping, Sequence

from dash import dcc, html

from components import ids
from components.figures import FONT, INK, message_figure

#: Bars of the composition chart before the rest is summed into one grey bar.
MAX_BARS = 14
#: Largest dot of the dot plot (diameter in px, for a fraction of 1).
MAX_DOT_PX = 18
#: Side of a gallery picture (px).
GALLERY_SIZE_PX = (240, 200)
#: Plotly config of the small charts: no mode bar.
CHART_CONFIG = {"displayModeBar": False, "displaylogo": False, "responsive": True}
#: Plotly config of the side-by-side maps: zoom and pan, no selection tools.
COMPARE_CONFIG = {
    "scrollZoom": True,
    "displaylogo": False,
    "displayModeBar": True,
    "modeBarButtonsToRemove": ["autoScale2d", "toImage", "zoomIn2d", "zoomOut2d", "select2d", "lasso2d"],
    "doubleClick": "reset",
}
VIEW_MODES = [{"label": "Map", "value": "map"}, {"label": "Species", "value": "species"},
              {"label": "Gallery", "value": "gallery"}]
BLEND_MODES = [{"label": " Blend", "value": "blend"}, {"label": " Both above thresholds", "value": "both"}]


# ---------------------------------------------------------------------------------------------- layout
def analysis_stores() -> list:
    """The stores of the analyses (selection, picture highlights, two-gene parameters, side-by-side views)."""
    stores = [
        dcc.Store(id=ids.SELECTION, data=None),
        dcc.Store(id=ids.MAP_HIGHLIGHT, data=None),
        dcc.Store(id=ids.UMAP_HIGHLIGHT, data=None),
        dcc.Store(id=ids.TWO_GENES, data=None),
        dcc.Store(id=ids.GALLERY_PICKED, data=None),
        dcc.Store(id=ids.MARKERS_SHOWN, data=None),
        dcc.Store(id=ids.COMPARE_ZOOM, data=None),
    ]
    for slot in range(ids.COMPARE_SLOTS):
        stores += [dcc.Store(id=ids.compare_viewport(slot), data=None),
                   dcc.Store(id=ids.compare_frame(slot), data=None),
                   dcc.Store(id=ids.compare_size(slot), data=None)]
    return stores


def view_mode_toggle() -> html.Div:
    """The map card's view switch (map, species side by side, section gallery) and the analysis toggle."""
    return html.Div(
        className="view-tools",
        children=[
            html.Div(dcc.RadioItems(id=ids.MAP_VIEW_MODE, options=VIEW_MODES, value="map", inline=True,
                                    className="segmented", inputClassName="segmented-input",
                                    labelClassName="segmented-label"),
                     title="Map: one section · Species: the species side by side · Gallery: every section"),
            html.Button("Analysis", id=ids.ANALYSIS_OPEN, className="button small", n_clicks=0,
                        title="Selection composition and marker genes (opens by itself when you select cells)"),
        ],
    )


def two_gene_controls(gene2: str | None = None) -> html.Div:
    """Second gene, blend mode and thresholds (shown when colouring by two genes)."""
    options = [{"label": gene2, "value": gene2}] if gene2 else []
    return html.Div(
        id=ids.TWO_GENE_CONTROLS,
        hidden=True,
        className="two-gene-controls",
        children=[
            html.Div(className="field", children=[
                html.Label("Second gene", className="field-label"),
                dcc.Dropdown(id=ids.GENE2, options=options, value=gene2, clearable=False, searchable=True,
                             placeholder="Search a second gene…"),
            ]),
            html.Div(className="field", children=[
                dcc.RadioItems(id=ids.BLEND_MODE, options=BLEND_MODES, value="blend", className="checklist"),
            ]),
            html.Div(id=ids.THRESHOLDS, className="field", hidden=True, children=[
                html.Label("Thresholds (log2): first, second", className="field-label"),
                html.Div(className="range-row", children=[
                    dcc.Input(id=ids.THRESHOLD_A, type="number", value=0, min=0, step=0.1, debounce=True,
                              className="range-input"),
                    html.Span("&", className="range-dash"),
                    dcc.Input(id=ids.THRESHOLD_B, type="number", value=0, min=0, step=0.1, debounce=True,
                              className="range-input"),
                ]),
            ]),
        ],
    )


def analysis_panel() -> html.Div:
    """The analysis panel under the map: the selection card and the marker-gene card (hidden until opened)."""
    return html.Div(
        id=ids.ANALYSIS_PANEL,
        className="analysis-panel",
        hidden=True,
        children=[
            html.Div(className="analysis-card selection-card", children=[
                html.Div(className="card-head", children=[
                    html.Span("Selection", className="section-title"),
                    dcc.Dropdown(id=ids.COMPOSITION_LEVEL, options=[], value=None, clearable=False,
                                 searchable=False, className="level-dropdown"),
                    html.A("CSV", id=ids.SELECTION_EXPORT, className="button small", href=None,
                           download="", title="The selected cells: labels, section, coordinates, taxonomy, "
                                              "the dot plot's genes"),
                    html.Button("Clear", id=ids.SELECTION_CLEAR, className="button small", n_clicks=0,
                                title="Clear the selection (or double-click the map in box/lasso mode)"),
                ]),
                html.Div(id=ids.SELECTION_SUMMARY, className="card-summary",
                         children="Draw a box or lasso on the map or the UMAP."),
                dcc.Graph(id=ids.COMPOSITION_GRAPH, className="chart", config=CHART_CONFIG,
                          figure=message_figure("No selection")),
            ]),
            html.Div(className="analysis-card markers-card", children=[
                html.Div(className="card-head", children=[
                    html.Span("Marker genes", className="section-title"),
                    dcc.Dropdown(id=ids.MARKERS_GENES, options=[], value=[], multi=True, searchable=True,
                                 placeholder="Add genes…", className="markers-genes"),
                    dot_key(),
                ]),
                compare_row(),
                html.Div(className="markers-summary", children=[
                    html.Div(id=ids.MARKERS_TITLE, className="card-summary"),
                    html.A("Download table (CSV)", id=ids.MARKERS_CSV, className="button small", href=None,
                           download="", hidden=True,
                           title="Every gene of A versus B: gene, mean_A, mean_B, frac_A, frac_B, mean_diff, t, p, "
                                 "p_adj (Welch's t-test, Benjamini-Hochberg adjusted p)"),
                ]),
                dcc.Graph(id=ids.MARKERS_GRAPH, className="chart", config=CHART_CONFIG,
                          figure=message_figure("Highlight a term or select cells")),
                html.Div(id=ids.MARKERS_INFO, className="card-info"),
            ]),
        ],
    )


def compare_row() -> html.Div:
    """Two groups to compare (A versus B: terms at the selection card's level, or the selection); the link to
    the full table as CSV sits beside the card's title once both are chosen."""
    return html.Div(className="compare-row", title="Markers of A against B: Welch's t-test, Benjamini-Hochberg "
                                                   "adjusted p", children=[
        dcc.Dropdown(id=ids.MARKERS_A, options=[], value=None, clearable=True, searchable=True,
                     placeholder="A: term or selection", className="compare-pick"),
        html.Span("vs", className="muted"),
        dcc.Dropdown(id=ids.MARKERS_B, options=[], value=None, clearable=True, searchable=True,
                     placeholder="B: a term", className="compare-pick"),
    ])


def dot_key() -> html.Div:
    """The dot plot's key: dot area = fraction of cells expressing, colour = mean log2."""
    dots = [html.Span(className="dot", style={"width": f"{MAX_DOT_PX * f ** 0.5:.0f}px",
                                              "height": f"{MAX_DOT_PX * f ** 0.5:.0f}px"},
                      title=f"{f:.0%} of the cells express the gene") for f in (0.1, 0.5, 1.0)]
    return html.Div(className="dot-key", title="Dot area: fraction of the cells expressing the gene (> 0); "
                                               "colour: mean log2 expression", children=[
        *dots, html.Span("% expressing", className="muted")])


def compare_view() -> html.Div:
    """The species side-by-side view: a head ("Zoom together"), one card per slot (title, section dropdown, map)
    and a shared legend."""
    slots = []
    for slot in range(ids.COMPARE_SLOTS):
        slots.append(html.Div(
            id=ids.compare_slot(slot),
            className="compare-slot",
            hidden=True,
            children=[
                html.Div(className="compare-head", children=[
                    html.Div(id=ids.compare_title(slot), className="compare-title"),
                    dcc.Dropdown(id=ids.compare_section(slot), options=[], value=None, clearable=False,
                                 searchable=True, className="compare-section"),
                ]),
                dcc.Graph(id=ids.compare_graph(slot), className="picture compare-picture", config=COMPARE_CONFIG,
                          figure=message_figure("Loading the map…"), responsive=True),
            ],
        ))
    return html.Div(
        id=ids.COMPARE_VIEW,
        className="compare-view",
        hidden=True,
        children=[html.Div(className="compare-tools", children=[
                      dcc.Checklist(id=ids.COMPARE_TOGETHER, options=[{"label": " Zoom together", "value": "on"}],
                                    value=["on"], inline=True, className="checklist compare-together"),
                      html.Span("Every map at one scale: the same mm per pixel, the same scale bar.",
                                className="muted"),
                  ], title="Zoom together: zooming or panning one map brings the others to the same scale, each "
                           "on the same relative point of its section"),
                  html.Div(id=ids.COMPARE_NOTICE, className="notice compare-notice", role="status"),
                  html.Div(slots, className="compare-grid"),
                  html.Div(id=ids.COMPARE_LEGEND, className="compare-legend")],
    )


def gallery_view() -> html.Div:
    """The section gallery: small pictures of every section of the dataset (filled by ``callbacks.compare``)."""
    return html.Div(id=ids.GALLERY_VIEW, className="gallery-view", hidden=True,
                    children=html.Div(id=ids.GALLERY, className="gallery"))


def map_panel_extras() -> list:
    """What the map card holds besides the map: side by side, gallery, analysis panel."""
    return [compare_view(), gallery_view(), analysis_panel()]


# ---------------------------------------------------------------------------------------------- figures
def _chart_layout(**more) -> dict:
    layout = {
        "margin": {"l": 8, "r": 12, "t": 6, "b": 30},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": {"family": FONT, "color": INK, "size": 11},
        "showlegend": False,
        "hoverlabel": {"font": {"size": 12}},
    }
    layout.update(more)
    return layout


def composition_figure(terms: Sequence[str], counts: Sequence[int], colors: Sequence[str], level: str,
                       max_bars: int = MAX_BARS) -> dict:
    """Horizontal bars of a selection's cells per term (largest on top), in the terms' colours.

    Parameters
    ----------
    terms, counts, colors : sequence
        One entry per term with cells, largest count first (``data_layer.analysis.composition``).
    level : str
        The taxonomy level (hover text, click target).
    max_bars : int
        Terms drawn; the others are summed into one grey bar.

    Returns
    -------
    dict
        A Plotly figure; each bar's ``customdata`` is ``[level, term]`` (empty for the "others" bar).
    """
    terms, counts, colors = list(terms), [int(c) for c in counts], list(colors)
    total = sum(counts)
    if not terms or total == 0:
        return message_figure("No cells in the selection")
    if len(terms) > max_bars:
        rest = sum(counts[max_bars - 1:])
        n_rest = len(terms) - (max_bars - 1)
        terms = terms[: max_bars - 1] + [f"{n_rest} other terms"]
        counts = counts[: max_bars - 1] + [rest]
        colors = colors[: max_bars - 1] + ["#d5d9e0"]
        custom = [[level, t] for t in terms[:-1]] + [["", ""]]
    else:
        custom = [[level, t] for t in terms]
    labels = [f"{c:,} ({100.0 * c / total:.1f}%)" for c in counts]
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": counts,
        "y": terms,
        "marker": {"color": colors, "line": {"color": "rgba(0,0,0,0.25)", "width": 0.5}},
        "text": labels,
        "textposition": "outside",
        "cliponaxis": False,
        "customdata": custom,
        "hovertemplate": "%{y}<br>%{text} of the selection<extra>" + escape(level) + "</extra>",
    }
    height_rows = len(terms)
    return {
        "data": [trace],
        "layout": _chart_layout(
            xaxis={"showgrid": True, "gridcolor": "#eef1f5", "zeroline": False, "title": {"text": "cells"},
                   "range": [0, max(counts) * 1.35], "fixedrange": True},
            yaxis={"autorange": "reversed", "automargin": True, "fixedrange": True, "tickfont": {"size": 11}},
            bargap=0.25 if height_rows > 3 else 0.5,
            clickmode="event",
        ),
    }


def dot_plot_figure(rows: Sequence[str], genes: Sequence[str], mean, fraction, n_cells: Sequence[int],
                    *, row_colors: Sequence[str] | None = None, gene_notes: Mapping[str, str] | None = None,
                    cell_notes: Mapping[tuple[str, str], str] | None = None) -> dict:
    """A dot plot: rows (terms or the selection) x genes; dot area = fraction expressing, colour = mean log2.

    Parameters
    ----------
    rows : sequence of str
        Row labels, top to bottom.
    genes : sequence of str
        Gene symbols, left to right.
    mean, fraction : array-like
        ``(len(rows), len(genes))`` float: mean log2 over the row's cells with expression, and the fraction of
        them with a value > 0 (NaN where a row has no cell with expression).
    n_cells : sequence of int
        Cells with expression per row (hover text).
    row_colors : sequence of str, optional
        A colour per row, drawn as a swatch before its label.
    gene_notes : mapping of str to str, optional
        A line of hover text per gene (e.g. its test statistics), shown on each of its dots.
    cell_notes : mapping of (row, gene) to str, optional
        A line of hover text per dot (e.g. that row's test of the gene).

    Returns
    -------
    dict
        A Plotly figure; each dot's ``customdata`` is its gene symbol (clicking colours the map by it).
    """
    rows, genes = list(rows), list(genes)
    if not rows or not genes:
        return message_figure("No genes to show")
    xs, ys, sizes, colours, custom, hover = [], [], [], [], [], []
    vmax = 0.0
    for i, row in enumerate(rows):
        for j, gene in enumerate(genes):
            m, f = float(mean[i][j]), float(fraction[i][j])
            if m != m or f != f:  # NaN: the row has no cell with expression
                continue
            xs.append(gene)
            ys.append(row)
            sizes.append(max(f, 0.0))
            colours.append(m)
            custom.append(gene)
            hover.append(f"{escape(gene)} in {escape(row)}<br>mean log2 {m:.2f}<br>{100 * f:.0f}% of "
                         f"{int(n_cells[i]):,} cells express it"
                         + (f"<br>{escape(gene_notes[gene])}" if gene_notes and gene in gene_notes else "")
                         + (f"<br>{escape(cell_notes[(row, gene)])}" if cell_notes and (row, gene) in cell_notes
                            else ""))
            vmax = max(vmax, m)
    area_ref = 2.0 * 1.0 / (MAX_DOT_PX ** 2)  # Plotly: diameter = sqrt(2 * size / sizeref) in area mode
    dots = {
        "type": "scatter",
        "mode": "markers",
        "x": xs,
        "y": ys,
        "customdata": custom,
        "text": hover,
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {
            "size": sizes, "sizemode": "area", "sizeref": area_ref, "sizemin": 1.5,
            "color": colours, "cmin": 0.0, "cmax": vmax if vmax > 0 else 1.0, "colorscale": "Reds",
            "line": {"color": "rgba(60,65,73,0.45)", "width": 0.6},
            # a plot of two or three rows is too short for a title above the bar: it goes beside it
            "colorbar": {"title": {"text": "mean<br>log2", "font": {"size": 10},
                                   **({"side": "right"} if len(rows) <= 3 else {})},
                         "thickness": 10, "len": 0.8 if len(rows) > 3 else 1.0, "nticks": 4,
                         "tickfont": {"size": 10}, "x": 1.0, "xpad": 4},
        },
        "showlegend": False,
    }
    labels = rows
    if row_colors:
        labels = [f"<span style='color:{escape(c)}'>■</span> {escape(r)}" for r, c in zip(rows, row_colors)]
    return {
        "data": [dots],
        "layout": _chart_layout(
            margin={"l": 8, "r": 8, "t": 26, "b": 8},
            xaxis={"type": "category", "categoryorder": "array", "categoryarray": genes, "side": "top",
                   "tickangle": -45, "automargin": True, "showgrid": True, "gridcolor": "#f0f2f6",
                   "fixedrange": True, "tickfont": {"size": 11}},
            yaxis={"type": "category", "categoryorder": "array", "categoryarray": rows, "autorange": "reversed",
                   "automargin": True, "showgrid": True, "gridcolor": "#f0f2f6", "fixedrange": True,
                   "tickvals": rows, "ticktext": labels, "tickfont": {"size": 11}},
            clickmode="event",
            hovermode="closest",
        ),
    }


def gallery_html(items: Sequence[Mapping], empty: str = "No sections.") -> html.Div:
    """The gallery's small pictures (a click reports ``data-gallery-section``; assets/analysis.js).

    Parameters
    ----------
    items : sequence of dict
        ``{"section", "src", "n_cells", "current"}`` per section in atlas order (``src`` None: nothing to draw).
    empty : str
        What is shown without items (why the gallery does not apply).
    """
    width, height = GALLERY_SIZE_PX
    cards = []
    for item in items:
        label = str(item["section"])
        if item.get("src"):
            picture = html.Img(src=item["src"], width=str(width), height=str(height), alt=label)
        else:
            picture = html.Span("no cells", className="gallery-empty")
        cards.append(html.Button(
            [picture, html.Span(label, className="gallery-label"),
             html.Span(f"{int(item.get('n_cells') or 0):,} cells", className="gallery-count")],
            className="gallery-item" + (" current" if item.get("current") else ""), title=f"Open {label}",
            **{"data-gallery-section": label}))
    if not cards:
        return html.Div(empty, className="muted pad gallery-none")
    return html.Div(cards, className="gallery-grid")


def two_gene_legend(src: str, gene_a: str, gene_b: str, range_a: Sequence[float], range_b: Sequence[float],
                    mode: str, thresholds: Sequence[float] = (0.0, 0.0)) -> html.Div:
    """The 2-D legend of a two-gene picture: the colour square with its two axes and their ranges."""
    note = ("Every cell: magenta = first gene, green = second, white = both high." if mode != "both" else
            f"Only cells with {gene_a} > {thresholds[0]:g} and {gene_b} > {thresholds[1]:g} are coloured; "
            "the others are grey.")
    return html.Div(className="legend-2d", children=[
        html.Div(className="legend-2d-body", children=[
            html.Div(className="legend-2d-y", children=[
                html.Span(f"{range_b[1]:.3g}"), html.Span(gene_b, className="legend-2d-gene"),
                html.Span(f"{range_b[0]:.3g}")]),
            html.Img(src=src, className="legend-2d-img", alt=f"{gene_a} x {gene_b} colour key"),
        ]),
        html.Div(className="legend-2d-x", children=[
            html.Span(f"{range_a[0]:.3g}"), html.Span(gene_a, className="legend-2d-gene"),
            html.Span(f"{range_a[1]:.3g}")]),
        html.Div(note, className="field-hint"),
    ])


def shared_legend_html(level: str, items: Sequence[tuple[str, str, Sequence[int]]], species: Sequence[str],
                       highlighted: str | None = None, limit: int = 400) -> dcc.Markdown:
    """One legend for the side-by-side maps: each term once, with its cells in each species' section.

    Parameters
    ----------
    items : sequence of (name, colour, counts)
        ``counts`` aligned with ``species``; terms present in any section, in taxonomy order.
    """
    head = "".join(f'<span class="shared-count">{escape(s)}</span>' for s in species)
    rows = [f'<div class="shared-row shared-head"><span class="legend-name">{escape(level)}</span>{head}</div>']
    for name, color, counts in list(items)[:limit]:
        cls = "legend-item shared-row" + (" highlighted" if name == highlighted else "")
        cells = "".join(f'<span class="shared-count">{int(n):,}</span>' for n in counts)
        rows.append(
            f'<button class="{cls}" data-action="pick" data-level="{escape(level, quote=True)}" '
            f'data-name="{escape(name, quote=True)}" title="{escape(name, quote=True)}: click to highlight it in '
            f'every map">'
            f'<span class="swatch" style="background-color:{escape(color, quote=True)}"></span>'
            f'<span class="legend-name">{escape(name)}</span>{cells}</button>')
    if len(items) > limit:
        rows.append(f'<div class="muted pad">+ {len(items) - limit} more terms</div>')
    return dcc.Markdown(f'<div class="html-rows shared-legend">{"".join(rows)}</div>', dangerously_allow_html=True,
                        className="html-block")
