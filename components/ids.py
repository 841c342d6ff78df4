"""Every component id of the viewer, in one place, so a typo fails at import and not silently in a browser.

Plain constants name single components. The many taxonomy terms of the tree and the legend have no ids of their
own: they carry ``data-*`` attributes and a single click listener reports them (see ``TERM_PICKED``).
"""
from __future__ import annotations

from core.state import COMPARE_SLOTS as _COMPARE_SLOTS

# ---------------------------------------------------------------------------------------------- page
ROOT = "app-root"
URL = "url"  # dcc.Location: read on load and on back/forward
URL_QUERY = "url-query"  # dcc.Store: {"query": "?dataset=...", "replace": bool}, written to history by JS
URL_WRITTEN = "url-written"  # dcc.Store: dummy output of the clientside history writer
HEADER_SUMMARY = "header-summary"
STORE_PATH = "store-path"

# notices: one slot per producer, so no callback overwrites another's message
NOTICES = "notices"
NOTICE_VIEW = "notice-view"  # URL and selection problems (unknown dataset, section, gene, term)
NOTICE_GENE = "notice-gene"  # gene search box: nothing matches
NOTICE_MAP = "notice-map"  # map picture problems
NOTICE_UMAP = "notice-umap"  # UMAP panel problems

# ---------------------------------------------------------------------------------------------- controls
CONTROLS = "controls"
DATASET = "dataset"
SPATIAL_CONTROLS = "spatial-controls"  # slab plane + section + outlines; hidden for UMAP datasets
SLAB_PLANE = "slab-plane"
EMBEDDING_CONTROLS = "embedding-controls"  # which UMAP of a single-cell dataset; hidden without neighborhood UMAPs
EMBEDDING = "embedding"  # dropdown: the whole UMAP or one neighborhood's
SECTION = "section"
COLOR_BY = "color-by"
GENE_CONTROLS = "gene-controls"  # gene box + range; hidden when the dataset has no expression
GENE = "gene"
GENE_VMIN = "gene-vmin"
GENE_VMAX = "gene-vmax"
GENE_RANGE_AUTO = "gene-range-auto"  # button: back to the default range (99th percentile)
GENE_RANGE_INFO = "gene-range-info"  # the default range, shown beside the inputs
RANGE_LABEL = "range-label"  # what the range inputs set: a gene's log2 range or a numeric cell column's
POLYGONS = "polygons"  # checklist: region outlines on/off
LEGEND = "legend"
LEGEND_TITLE = "legend-title"
LEGEND_FILTER = "legend-filter"  # text: shows only the legend entries whose name holds every word typed
CLEAR_TERM = "clear-term"

# ---------------------------------------------------------------------------------------------- state
TERM = "term"  # dcc.Store: {"level", "name"} of the highlighted term, or None
VIEWPORT = "viewport"  # dcc.Store: {"x0", "x1", "y0", "y1"} of the map, or None (whole frame)
MAP_SIZE = "map-size"  # dcc.Store: {"width_px", "height_px"} of the map's plot area (device pixels)
MAP_FRAME = "map-frame"  # dcc.Store: key of the frame the map figure is drawn for (dataset|plane|section)
UMAP_VIEWPORT = "umap-viewport"
UMAP_FRAME = "umap-frame"
UMAP_SIZE = "umap-size"
GENE_RANGE_DEFAULT = "gene-range-default"  # dcc.Store: [vmin, vmax] default of the current gene

# ---------------------------------------------------------------------------------------------- panels
MAP_PANEL = "map-panel"
MAP_TITLE = "map-title"
MAP_GRAPH = "map-graph"
UMAP_PANEL = "umap-panel"
UMAP_TITLE = "umap-title"
UMAP_GRAPH = "umap-graph"
TREE_PANEL = "tree-panel"
TREE_SEARCH = "tree-search"
TREE = "tree"
TREE_COUNT_HEAD = "tree-count-head"  # "section · all" or "cells"
TREE_EXPANDED = "tree-expanded"  # dcc.Store: list of "level|name" keys of the expanded terms
INSPECT = "inspect"  # the cell-inspection panel


# ---------------------------------------------------------------------------------------------- term events
# Tree rows and legend entries carry their term in data-* attributes (see components.panels.term_attributes);
# one click listener in assets/viewer.js turns a click into one of these stores. No pattern-matching ids: the
# Dash renderer re-indexes every pattern-matching component on each update, which gets slow with hundreds.
TERM_PICKED = "term-picked"  # dcc.Store: {"level", "name", "t"} of a clicked tree row or legend entry
TREE_TOGGLED = "tree-toggled"  # dcc.Store: {"level", "name", "t"} of a clicked expand/collapse caret


# ---------------------------------------------------------------------------------------------- export and sharing
# (components.export lays them out; callbacks.export_panel drives them)
EXPORT_TOOLS = "export-tools"  # the buttons at the top of the map card
EXPORT_OPEN = "export-open"  # button: show / hide the export panel
EXPORT_PANEL = "export-panel"
EXPORT_CLOSE = "export-close"
EXPORT_TARGET = "export-target"  # radio: "map" or "umap"
EXPORT_FORMAT = "export-format"  # radio: png, svg, pdf
EXPORT_WIDTH = "export-width"
EXPORT_HEIGHT = "export-height"
EXPORT_UNIT = "export-unit"  # radio: px or in
EXPORT_DPI = "export-dpi"
EXPORT_TITLE = "export-title"
EXPORT_LEGEND = "export-legend"  # legend entries at most
EXPORT_FIGURE = "export-figure"  # button: download the figure
EXPORT_FIGURE_INFO = "export-figure-info"  # size summary, or what is wrong
EXPORT_DOWNLOAD = "export-download"  # dcc.Download of the figure
EXPORT_GENES = "export-genes"  # multi dropdown: genes written with the cells
EXPORT_CELLS_CSV = "export-cells-csv"  # link to /export/cells.csv?...
EXPORT_CELLS_H5AD = "export-cells-h5ad"  # link to /export/cells.h5ad?...
EXPORT_CELLS_INFO = "export-cells-info"  # "1,234 cells in view"
EXPORT_API_URL = "export-api-url"  # the same figure from the HTTP API, for scripts
SHARE_BUTTON = "share-button"  # button: "Copy link"
SHARE_LINK = "share-link"  # dcc.Store: {"path": "/s/<id>", "long": "/?...", "n"} written by the server
SHARE_BOX = "share-box"  # the link shown (fallback when the clipboard is refused)
SHARE_URL = "share-url"  # read-only input holding the full short link
SHARE_STATUS = "share-status"  # "Copied" / "Press Ctrl+C"
SHARE_WRITTEN = "share-written"  # dcc.Store: dummy output of the clipboard writer


# ---------------------------------------------------------------------------------------------- selections and analyses
# (components.analysis_panels lays them out; callbacks.selection, markers, two_genes and compare drive them)
SELECTION = "selection"  # dcc.Store: compact box/lasso + {"view": "map"|"umap", "dataset", "section", "slab_plane"}
MAP_HIGHLIGHT = "map-highlight"  # dcc.Store: {"selection", "clusters"} picture parameters of the map
UMAP_HIGHLIGHT = "umap-highlight"  # dcc.Store: the same for the UMAP
ANALYSIS_OPEN = "analysis-open"  # button in the map card's head: show / hide the analysis panel
ANALYSIS_PANEL = "analysis-panel"  # under the map: the selection card and the marker-gene card
SELECTION_SUMMARY = "selection-summary"  # "1,234 cells selected in section ..."
SELECTION_CLEAR = "selection-clear"  # button: clear the selection
SELECTION_EXPORT = "selection-export"  # link: the selected cells as CSV
COMPOSITION_LEVEL = "composition-level"  # dropdown: taxonomy level of the composition chart
COMPOSITION_GRAPH = "composition-graph"  # horizontal bars in term colours
MARKERS_TITLE = "markers-title"
MARKERS_GRAPH = "markers-graph"  # the dot plot (terms x genes)
MARKERS_GENES = "markers-genes"  # multi dropdown: genes the user adds to the dot plot
MARKERS_INFO = "markers-info"  # what the markers were computed on, and how long it took
MARKERS_SHOWN = "markers-shown"  # dcc.Store: {"dataset", "genes"}: the dot plot's genes (exported with the cells)
MARKERS_A = "markers-a"  # dropdown: group A of an A-versus-B comparison (a term, or the selection)
MARKERS_B = "markers-b"  # dropdown: group B (a term, the selection, or A's term in another species' dataset)
MARKERS_CSV = "markers-csv"  # link: the A-versus-B table as CSV (/export/markers.csv)

# two genes at once (colour by "two_genes")
TWO_GENE_CONTROLS = "two-gene-controls"  # hidden unless colouring by two genes
GENE2 = "gene2"  # dropdown: the second gene
BLEND_MODE = "blend-mode"  # radio: "blend" (every cell) or "both" (only cells above both thresholds)
THRESHOLDS = "thresholds"  # the two threshold inputs (shown in "both" mode)
THRESHOLD_A = "threshold-a"
THRESHOLD_B = "threshold-b"
TWO_GENES = "two-genes"  # dcc.Store: {"gene2", "blend_mode", "threshold_a", "threshold_b"} picture parameters

# species side by side and the section gallery
MAP_VIEW_MODE = "map-view-mode"  # radio: "map", "species" (side by side) or "gallery"
COMPARE_VIEW = "compare-view"
COMPARE_LEGEND = "compare-legend"  # one legend shared by the side-by-side maps
COMPARE_NOTICE = "compare-notice"  # why the side by side does not show the dataset chosen (hidden when it does)
COMPARE_TOGETHER = "compare-together"  # checklist ["on"] / []: zooming one side-by-side map zooms the others
COMPARE_ZOOM = "compare-zoom"  # dcc.Store: {"zoom", "u", "v"} of the maps zoomed together (None: the fitting view)
GALLERY_VIEW = "gallery-view"
GALLERY = "gallery"  # the small pictures of every section (one HTML block)
GALLERY_PICKED = "gallery-picked"  # dcc.Store: {"section", "t"} of a clicked small picture (assets/analysis.js)
# one cell type across species (components.species lays it out; callbacks.species drives it)
ACROSS = "across"  # dcc.Store: True while the panel of the highlighted term across species is open (address across=1)
ACROSS_OPEN = "across-open"  # button beside the legend's head: shown when the highlighted term is at a shared level
UMAP_ACROSS = "umap-across"  # in the UMAP's head: the clicked cell's term at a shared level, opens the panel in one click
MAP_ACROSS = "map-across"  # the same beside the map's cell inspector, after a click on the map
ACROSS_PANEL = "across-panel"  # the panel (a dialog over the page)
ACROSS_CLOSE = "across-close"  # button: close the panel
ACROSS_BODY = "across-body"  # the term's annotation, share, regions and dot plot
ACROSS_MAPS = "across-maps"  # button: the species side by side in the map card, the term highlighted
ACROSS_REGIONS = "across-regions"  # stacked bars: the term's cells per region in each species' cells
ACROSS_MAPS_PICTURE = "across-maps-picture"  # the figure of the species side by side, the term highlighted
ACROSS_DOTS = "across-dots"  # dot plot: conserved marker genes, one row per species' cells
ACROSS_MARKERS_TABLE = "across-markers-table"  # table: each species row's mean difference and BH-adjusted p per marker
ACROSS_FIGURE = "across-figure"  # links: the whole panel as one figure (PNG, SVG, PDF)
ACROSS_MARKERS_CSV = "across-markers-csv"  # link: the panel's markers with their tests as CSV

#: Side-by-side slots (one per spatial species, at most three).
COMPARE_SLOTS = _COMPARE_SLOTS


def compare_graph(slot: int) -> str:
    """Id of the map of side-by-side slot ``slot``."""
    return f"compare-graph-{int(slot)}"


def compare_section(slot: int) -> str:
    """Id of the section dropdown of side-by-side slot ``slot``."""
    return f"compare-section-{int(slot)}"


def compare_title(slot: int) -> str:
    """Id of the title line of side-by-side slot ``slot``."""
    return f"compare-title-{int(slot)}"


def compare_viewport(slot: int) -> str:
    """Id of the viewport store of side-by-side slot ``slot`` (its own zoom, when not zoomed together)."""
    return f"compare-viewport-{int(slot)}"


def compare_frame(slot: int) -> str:
    """Id of the store naming the frame the slot's figure is drawn for."""
    return f"compare-frame-{int(slot)}"


def compare_size(slot: int) -> str:
    """Id of the store of the slot's plot-area size."""
    return f"compare-size-{int(slot)}"


def compare_slot(slot: int) -> str:
    """Id of the card of side-by-side slot ``slot``."""
    return f"compare-slot-{int(slot)}"


# ---------------------------------------------------------------------------------------------- for assets/*.js
#: The ids the page's JavaScript writes to or reads, by the name the scripts use (``atlasIds().<name>``).
JS_IDS = {
    "url": URL,
    "termPicked": TERM_PICKED,
    "treeToggled": TREE_TOGGLED,
    "shareUrl": SHARE_URL,
    "shareStatus": SHARE_STATUS,
    "galleryPicked": GALLERY_PICKED,
}
#: Id of the ``<script type="application/json">`` element holding :data:`JS_IDS` in the page.
JS_IDS_ELEMENT = "atlas-ids"


def js_ids_script() -> str:
    """The page's ids for assets/*.js as a JSON data block (not executed, so a Content-Security-Policy without
    inline scripts allows it; the way Dash ships its own ``_dash-config``)."""
    import json

    payload = json.dumps(JS_IDS, sort_keys=True).replace("</", "<\\/")
    return f'<script id="{JS_IDS_ELEMENT}" type="application/json">{payload}</script>'
