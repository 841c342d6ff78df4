"""The page: a left column of controls and legend, the big map with its cell inspector, the UMAP and the
taxonomy tree on the right, and a notice strip. Pure builders of plain values (no data access).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from dash import dcc, html

from components import ids
from components.analysis_panels import analysis_stores, map_panel_extras, two_gene_controls, view_mode_toggle
from core.catalog import (COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES, WHOLE_SLAB_PLANE, WHOLE_UMAP, Catalog,
                                DatasetEntry)
from components.export import export_panel, export_toolbar, share_box
from components.figures import message_figure
from components.species import across_button, across_panel
from core.state import ViewState

#: Plotly config of both pictures: scroll zoom, a short mode bar, no logo.
GRAPH_CONFIG = {
    "scrollZoom": True,
    "displaylogo": False,
    "displayModeBar": True,
    "modeBarButtonsToRemove": ["autoScale2d", "toImage", "zoomIn2d", "zoomOut2d"],
    "doubleClick": "reset",
}


# ---------------------------------------------------------------------------------------------- options
def dataset_options(catalog: Catalog) -> list[dict]:
    """Dropdown options of the datasets, labelled ``Species · platform · name``."""
    return [{"label": entry.label(), "value": name} for name, entry in catalog.datasets.items()]


def slab_plane_options(entry: DatasetEntry | None) -> list[dict]:
    """Dropdown options of a dataset's slab planes (with their section counts)."""
    if entry is None:
        return []
    return [
        {"label": f"{plane.label}  ({len(plane.sections)} sections)", "value": plane.label}
        for plane in entry.slab_planes
    ]


def section_options(entry: DatasetEntry | None, plane_label: str | None) -> list[dict]:
    """Dropdown options of the sections of a slab plane, after a "whole slab plane" entry."""
    plane = entry.plane(plane_label) if entry is not None and plane_label else None
    if plane is None:
        return []
    options = [{"label": f"Whole slab plane ({plane.n_cells:,} cells)", "value": WHOLE_SLAB_PLANE}]
    for label in plane.sections:
        section = entry.sections.get(label)
        count = f"  ({section.n_cells:,} cells)" if section is not None else ""
        options.append({"label": f"{label}{count}", "value": label})
    return options


def embedding_options(entry: DatasetEntry | None) -> list[dict]:
    """Dropdown options of a single-cell dataset's UMAPs: the whole one, then each neighborhood's (with its cells);
    empty when it has no neighborhood UMAP."""
    if entry is None or not entry.embeddings:
        return []
    return [{"label": f"Whole brain ({entry.n_cells:,} cells)", "value": WHOLE_UMAP}] + [
        {"label": f"{e.name} ({e.n_cells:,} cells)", "value": e.name} for e in entry.embeddings]


def color_by_options(entry: DatasetEntry | None) -> list[dict]:
    """Dropdown options of the colourings: the taxonomy levels, region, gene expression."""
    if entry is None:
        return []
    labels = {COLOR_BY_REGION: "Region", COLOR_BY_GENE: "Gene expression", COLOR_BY_TWO_GENES: "Two genes",
              **{column: column_label(column) for column in entry.columns},
              **{column: f"{column_label(column)} (number per cell)" for column in entry.numeric_columns}}
    return [{"label": labels.get(choice, choice), "value": choice} for choice in entry.color_by_choices()]


def column_label(column: str) -> str:
    """How a cell column is named in the colour-by menu: ``region_of_interest_label`` -> "Region of interest
    (dissected)", other names with spaces for underscores and a capital."""
    if column.startswith("region_of_interest"):
        return "Region of interest (dissected)"
    text = column.replace("_", " ")
    return text[:1].upper() + text[1:]


def gene_options(genes: Iterable[tuple[str, str]]) -> list[dict]:
    """Dropdown options from ``(gene_symbol, gene_identifier)`` pairs; the value is the symbol.

    The label shows both, and the search text matches either.
    """
    options = []
    seen = set()
    for symbol, identifier in genes:
        if symbol in seen:
            continue
        seen.add(symbol)
        label = symbol if not identifier or identifier == symbol else f"{symbol} · {identifier}"
        options.append({"label": label, "value": symbol, "search": f"{symbol} {identifier}"})
    return options


def notice_children(messages: Sequence[str] | None) -> list:
    """Notice strip content: one line per message (empty list hides the strip)."""
    return [html.Div(message, className="notice-line") for message in (messages or [])]


# ---------------------------------------------------------------------------------------------- page
def range_label(entry: Any, color_by: str | None) -> str:
    """The label of the range inputs: what they set for this colouring (a numeric cell column's range, else a
    gene's log2 range)."""
    if entry is not None and entry.is_numeric(color_by):
        return f"Range ({color_by})"
    return "Gene range (log2)"


def _field(label: Any, control, *, field_id: str | None = None, hidden: bool = False, hint: str | None = None):
    children = [html.Label(label, className="field-label"), control]
    if hint:
        children.append(html.Div(hint, className="field-hint"))
    kwargs = {"id": field_id} if field_id else {}
    return html.Div(children, className="field", hidden=hidden, **kwargs)


def _controls(catalog: Catalog, state: ViewState) -> html.Aside:
    entry = catalog.get(state.dataset)
    spatial = bool(entry and entry.spatial)
    has_genes = bool(entry and entry.has_genes)
    gene_opts = gene_options([(state.gene, state.gene)]) if state.gene else []
    return html.Aside(
        id=ids.CONTROLS,
        className="sidebar",
        children=[
            _field(
                "Dataset",
                dcc.Dropdown(
                    id=ids.DATASET,
                    options=dataset_options(catalog),
                    value=state.dataset,
                    clearable=False,
                    searchable=False,
                ),
            ),
            html.Div(
                id=ids.SPATIAL_CONTROLS,
                hidden=not spatial,
                children=[
                    _field(
                        "Slab plane",
                        dcc.Dropdown(
                            id=ids.SLAB_PLANE,
                            options=slab_plane_options(entry),
                            value=state.slab_plane,
                            clearable=False,
                        ),
                    ),
                    _field(
                        "Section",
                        dcc.Dropdown(
                            id=ids.SECTION,
                            options=section_options(entry, state.slab_plane),
                            value=state.section or (WHOLE_SLAB_PLANE if state.slab_plane else None),
                            clearable=False,
                        ),
                    ),
                    html.Div(
                        className="field",
                        children=dcc.Checklist(
                            id=ids.POLYGONS,
                            options=[{"label": " Region outlines", "value": "on"}],
                            value=["on"],
                            className="checklist",
                        ),
                    ),
                ],
            ),
            _field(
                "UMAP",
                dcc.Dropdown(
                    id=ids.EMBEDDING,
                    options=embedding_options(entry),
                    value=(state.embedding or WHOLE_UMAP) if entry and entry.embeddings else None,
                    clearable=False,
                    searchable=False,
                ),
                field_id=ids.EMBEDDING_CONTROLS,
                hidden=not (entry and entry.embeddings),
                hint="A neighborhood's own UMAP shows only its cells.",
            ),
            _field(
                "Colour by",
                dcc.Dropdown(
                    id=ids.COLOR_BY,
                    options=color_by_options(entry),
                    value=state.color_by or None,
                    clearable=False,
                    searchable=False,
                ),
            ),
            html.Div(
                id=ids.GENE_CONTROLS,
                hidden=not has_genes,
                children=[
                    _field(
                        "Gene",
                        dcc.Dropdown(
                            id=ids.GENE,
                            options=gene_opts,
                            value=state.gene,
                            placeholder="Search a symbol or identifier…",
                            clearable=True,
                            searchable=True,
                        ),
                    ),
                    _field(
                        html.Span(range_label(entry, state.color_by), id=ids.RANGE_LABEL),
                        html.Div(
                            className="range-row",
                            children=[
                                dcc.Input(id=ids.GENE_VMIN, type="number", debounce=True, placeholder="min",
                                          value=state.vmin, className="range-input"),
                                html.Span("–", className="range-dash"),
                                dcc.Input(id=ids.GENE_VMAX, type="number", debounce=True, placeholder="max",
                                          value=state.vmax, className="range-input"),
                                html.Button("Auto", id=ids.GENE_RANGE_AUTO, className="button small",
                                            title="Back to the default range (99th percentile of expressing cells)"),
                            ],
                        ),
                        hint=None,
                    ),
                    html.Div(id=ids.GENE_RANGE_INFO, className="field-hint"),
                    two_gene_controls(),
                ],
            ),
            html.Div(
                className="legend-box",
                children=[
                    html.Div(
                        className="legend-head",
                        children=[
                            html.Span("Legend", id=ids.LEGEND_TITLE, className="section-title"),
                            html.Button("Clear highlight", id=ids.CLEAR_TERM, className="button link small",
                                        title="Show every cell in its colour again"),
                            across_button(),
                        ],
                    ),
                    dcc.Input(id=ids.LEGEND_FILTER, type="search", placeholder="Filter the legend…", value="",
                              debounce=0.25, className="search-input legend-filter", autoComplete="off"),
                    html.Div(id=ids.LEGEND, className="legend"),
                ],
            ),
        ],
    )


def build_layout(catalog: Catalog, state: ViewState, *, store_label: str = "",
                 logout_link: bool = False, first_map: tuple | None = None,
                 first_umap: tuple | None = None, tree_expanded: list | None = None) -> html.Div:
    """The whole page, its controls set to ``state`` (the callbacks then follow the URL).

    Parameters
    ----------
    catalog : Catalog
        What the store holds (dataset options, planes, sections).
    state : ViewState
        Initial view (usually :func:`core.state.default_state`).
    store_label : str
        Store shown in the header tooltip.
    logout_link : bool
        Show "Log out" in the header (users log in with a password): it opens the logout form, which posts with
        its CSRF token.
    first_map, first_umap : (figure, title, frame key), optional
        The map's and the UMAP panel's figures of ``state`` (their pictures are then requested as soon as the page
        is drawn, before any callback ran); default: "Loading…" until the callbacks draw them.
    tree_expanded : list, optional
        The taxonomy tree's open terms (those that show ``state``'s highlighted term).
    """
    empty = "Loading the map…" if catalog.datasets else "The store holds no dataset"
    map_figure, map_title, map_frame = first_map or (message_figure(empty), None, None)
    umap_figure, umap_title, umap_frame = first_umap or (message_figure("Loading the UMAP…"), "UMAP", None)
    entry = catalog.get(state.dataset)
    term = ({"level": state.term_level, "name": state.term, "taxonomy": entry.taxonomy if entry else None}
            if state.term else None)
    return html.Div(
        id=ids.ROOT,
        className="app",
        children=[
            dcc.Location(id=ids.URL, refresh=False),
            dcc.Store(id=ids.URL_QUERY),
            dcc.Store(id=ids.URL_WRITTEN),
            dcc.Store(id=ids.TERM, data=term),
            dcc.Store(id=ids.VIEWPORT, data=state.viewport.to_dict() if state.viewport is not None else None),
            dcc.Store(id=ids.MAP_SIZE, data=None),
            dcc.Store(id=ids.MAP_FRAME, data=map_frame),
            dcc.Store(id=ids.UMAP_FRAME, data=umap_frame),
            dcc.Store(id=ids.UMAP_VIEWPORT, data=None),
            dcc.Store(id=ids.UMAP_SIZE, data=None),
            dcc.Store(id=ids.TREE_EXPANDED, data=list(tree_expanded or [])),
            dcc.Store(id=ids.TERM_PICKED, data=None),
            dcc.Store(id=ids.TREE_TOGGLED, data=None),
            dcc.Store(id=ids.GENE_RANGE_DEFAULT, data=None),
            dcc.Store(id=ids.ACROSS, data=False),
            *analysis_stores(),
            html.Header(
                className="topbar",
                children=[
                    html.Div(
                        className="brand",
                        children=[html.Span("ABC Atlas", className="brand-name"),
                                  html.Span("spatial taxonomy viewer", className="brand-sub")],
                    ),
                    html.Div(id=ids.HEADER_SUMMARY, className="header-summary"),
                    html.Div(store_label, id=ids.STORE_PATH, className="store-path", title="prepared store"),
                    *([html.A("Log out", href="/logout", className="logout-link")] if logout_link else []),
                ],
            ),
            html.Div(
                id=ids.NOTICES,
                className="notices",
                role="status",
                children=[
                    html.Div(id=ids.NOTICE_VIEW, className="notice"),
                    html.Div(id=ids.NOTICE_GENE, className="notice"),
                    html.Div(id=ids.NOTICE_MAP, className="notice"),
                    html.Div(id=ids.NOTICE_UMAP, className="notice"),
                ],
            ),
            html.Main(
                className="workspace",
                children=[
                    _controls(catalog, state),
                    html.Section(
                        id=ids.MAP_PANEL,
                        className="panel map-panel",
                        children=[
                            html.Div(className="panel-head", children=[
                                html.Div(map_title, id=ids.MAP_TITLE, className="panel-title"), view_mode_toggle(),
                                export_toolbar()]),
                            share_box(),
                            export_panel(),
                            dcc.Graph(
                                id=ids.MAP_GRAPH,
                                className="picture",
                                figure=map_figure,
                                config=GRAPH_CONFIG,
                                responsive=True,
                                clear_on_unhover=False,
                            ),
                            html.Div(className="inspect", children=[
                                html.Div(
                                    id=ids.INSPECT,
                                    className="inspect-cell",
                                    children=html.Span("Hover over a cell to inspect it; click to highlight its "
                                                       "term.", className="muted"),
                                ),
                                html.Div(id=ids.MAP_ACROSS, className="map-across"),
                            ]),
                            *map_panel_extras(),
                        ],
                    ),
                    html.Aside(
                        className="rightbar",
                        children=[
                            html.Section(
                                id=ids.UMAP_PANEL,
                                className="panel umap-panel",
                                children=[
                                    html.Div(className="panel-title umap-head", children=[
                                        html.Div(umap_title, id=ids.UMAP_TITLE, className="umap-title"),
                                        html.Div(id=ids.UMAP_ACROSS, className="umap-across")]),
                                    dcc.Graph(
                                        id=ids.UMAP_GRAPH,
                                        className="picture",
                                        figure=umap_figure,
                                        config=GRAPH_CONFIG,
                                        responsive=True,
                                    ),
                                ],
                            ),
                            html.Section(
                                id=ids.TREE_PANEL,
                                className="panel tree-panel",
                                children=[
                                    html.Div(
                                        className="panel-title tree-head",
                                        children=[html.Span("Taxonomy"),
                                                  html.Span("section · all", id=ids.TREE_COUNT_HEAD, className="tree-count-head",
                                                            title="cells in the section (or slab plane) · in the dataset")],
                                    ),
                                    dcc.Input(
                                        id=ids.TREE_SEARCH,
                                        type="search",
                                        placeholder="Search terms at every level…",
                                        debounce=0.25,
                                        className="search-input",
                                    ),
                                    html.Div(id=ids.TREE, className="tree"),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
            across_panel(),
        ],
    )


def empty_layout(message: str, *, store_label: str = "") -> html.Div:
    """The page when no store can be opened: the reason and what to run, in place of the viewer."""
    return html.Div(
        id=ids.ROOT,
        className="app",
        children=[
            html.Header(
                className="topbar",
                children=[
                    html.Div(className="brand", children=[html.Span("ABC Atlas", className="brand-name"),
                                                          html.Span("spatial taxonomy viewer",
                                                                    className="brand-sub")]),
                    html.Div(store_label, id=ids.STORE_PATH, className="store-path"),
                ],
            ),
            html.Div(className="empty-state", children=[html.H2("No atlas to show"), html.P(message)]),
        ],
    )
