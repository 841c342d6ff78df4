"""Every component id of the viewer, in one place, so a typo fails at import and not silently in a browser.

Plain constants name single components. The many taxonomy terms of the tree and the legend have no ids of their
own: they carry ``data-*`` attributes and a single click listener reports them (see ``TERM_PICKED``).
"""
from __future__ import annotations

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
SECTION = "section"
COLOR_BY = "color-by"
GENE_CONTROLS = "gene-controls"  # gene box + range; hidden when the dataset has no expression
GENE = "gene"
GENE_VMIN = "gene-vmin"
GENE_VMAX = "gene-vmax"
GENE_RANGE_AUTO = "gene-range-auto"  # button: back to the default range (99th percentile)
GENE_RANGE_INFO = "gene-range-info"  # the default range, shown beside the inputs
POLYGONS = "polygons"  # checklist: region outlines on/off
LEGEND = "legend"
LEGEND_TITLE = "legend-title"
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
