"""The export and share controls at the top of the map card: "Export" opens a panel (figure format, size, dpi,
title, legend length; cells with chosen genes as CSV or h5ad), "Copy link" makes a short link.

Pure layout builders (plain values in, Dash components out). The panel floats over the map so opening it never
resizes the picture. The callbacks live in ``callbacks.export_panel``.
"""
from __future__ import annotations

from dash import dcc, html

from components import ids
from core.requests import (DEFAULT_DPI, DEFAULT_LEGEND_ENTRIES, DEFAULT_SIZE_IN, MAX_DPI,
                                       MAX_LEGEND_ENTRIES, MIN_DPI)

FORMAT_OPTIONS = [{"label": " PNG", "value": "png"}, {"label": " SVG", "value": "svg"},
                  {"label": " PDF", "value": "pdf"}]
UNIT_OPTIONS = [{"label": " px", "value": "px"}, {"label": " in", "value": "in"}]


#: Export targets besides the map and the UMAP: the map card's comparison views (``panels=`` of the route).
COMPARISON_TARGETS = {"species": " Species side by side", "gallery": " Section gallery"}


def target_options(has_umap: bool, comparison: str | None = None) -> list[dict]:
    """What to export: the map, the UMAP panel when one is shown beside it, and the comparison view the map card
    shows (``"species"`` side by side or the section ``"gallery"``), if any."""
    options = [{"label": " Map", "value": "map"},
               {"label": " UMAP", "value": "umap", "disabled": not has_umap}]
    if comparison in COMPARISON_TARGETS:
        options.append({"label": COMPARISON_TARGETS[comparison], "value": comparison})
    return options


def _row(label: str, *children, hint: str | None = None) -> html.Div:
    body = [html.Label(label, className="export-label"), html.Div(list(children), className="export-controls")]
    if hint:
        body.append(html.Div(hint, className="field-hint"))
    return html.Div(body, className="export-row")


def export_toolbar() -> html.Div:
    """The buttons beside the map's title: Export and Copy link, and the link box the latter fills."""
    return html.Div(
        id=ids.EXPORT_TOOLS,
        className="panel-tools",
        children=[
            html.Button("Export", id=ids.EXPORT_OPEN, className="button small", n_clicks=0,
                        title="Download a figure (PNG, SVG, PDF) or the cells (CSV, h5ad) of this view"),
            html.Button("Copy link", id=ids.SHARE_BUTTON, className="button small", n_clicks=0,
                        title="A short link to this view, copied to the clipboard"),
            dcc.Store(id=ids.SHARE_LINK, data=None),
            dcc.Store(id=ids.SHARE_WRITTEN, data=None),
        ],
    )


def share_box() -> html.Div:
    """The short link, shown after "Copy link" (select it by hand where the clipboard is refused)."""
    return html.Div(
        id=ids.SHARE_BOX,
        className="share-box",
        hidden=True,
        children=[
            dcc.Input(id=ids.SHARE_URL, type="text", readOnly=True, value="", className="share-url",
                      debounce=True),
            html.Span(id=ids.SHARE_STATUS, className="share-status", role="status"),
        ],
    )


def export_panel(*, has_umap: bool = True) -> html.Div:
    """The export panel (hidden until "Export" is clicked).

    Parameters
    ----------
    has_umap : bool
        Whether the first view has a UMAP panel (the callbacks update it with the dataset).
    """
    width_in, height_in = DEFAULT_SIZE_IN
    return html.Div(
        id=ids.EXPORT_PANEL,
        className="export-panel",
        hidden=True,
        children=[
            html.Div(className="export-head", children=[
                html.Span("Export this view", className="section-title"),
                html.Button("×", id=ids.EXPORT_CLOSE, className="button link", title="Close", n_clicks=0),
            ]),
            html.Div("Figure", className="export-part"),
            _row("View", dcc.RadioItems(id=ids.EXPORT_TARGET, options=target_options(has_umap), value="map",
                                        inline=True, className="export-radio")),
            _row("Format", dcc.RadioItems(id=ids.EXPORT_FORMAT, options=FORMAT_OPTIONS, value="png", inline=True,
                                          className="export-radio")),
            _row(
                "Size",
                dcc.Input(id=ids.EXPORT_WIDTH, type="number", min=0, value=round(width_in * DEFAULT_DPI),
                          className="range-input export-number", debounce=True),
                html.Span("×", className="range-dash"),
                dcc.Input(id=ids.EXPORT_HEIGHT, type="number", min=0, value=round(height_in * DEFAULT_DPI),
                          className="range-input export-number", debounce=True),
                dcc.RadioItems(id=ids.EXPORT_UNIT, options=UNIT_OPTIONS, value="px", inline=True,
                               className="export-radio"),
            ),
            _row("DPI", dcc.Input(id=ids.EXPORT_DPI, type="number", min=MIN_DPI, max=MAX_DPI,
                                  value=DEFAULT_DPI, className="range-input export-number", debounce=True)),
            _row("Title", dcc.Input(id=ids.EXPORT_TITLE, type="text", placeholder="automatic", value=None,
                                    className="search-input", debounce=True)),
            _row("Legend", dcc.Input(id=ids.EXPORT_LEGEND, type="number", min=0, max=MAX_LEGEND_ENTRIES,
                                     value=DEFAULT_LEGEND_ENTRIES, className="range-input export-number",
                                     debounce=True),
                 html.Span("entries at most (taxonomy order; as many as fit, the rest counted)", className="muted")),
            html.Div(className="export-actions", children=[
                html.Button("Download figure", id=ids.EXPORT_FIGURE, className="button primary", n_clicks=0),
                html.Div(id=ids.EXPORT_FIGURE_INFO, className="export-info", role="status"),
            ]),
            dcc.Download(id=ids.EXPORT_DOWNLOAD),
            html.Div("Cells", className="export-part"),
            _row("Genes", dcc.Dropdown(id=ids.EXPORT_GENES, options=[], value=[], multi=True, searchable=True,
                                       placeholder="add genes…", className="export-genes")),
            html.Div(className="export-actions", children=[
                html.A("Download CSV", id=ids.EXPORT_CELLS_CSV, className="button", href=None, download=""),
                html.A("Download h5ad", id=ids.EXPORT_CELLS_H5AD, className="button", href=None, download=""),
                html.Div(id=ids.EXPORT_CELLS_INFO, className="export-info"),
            ]),
            html.Details(className="export-api", children=[
                html.Summary("The same figure from a script"),
                html.Code(id=ids.EXPORT_API_URL, className="export-api-url"),
            ]),
        ],
    )
