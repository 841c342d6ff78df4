"""Figure and cell export of the current view: the functions, the ``/export/`` routes and the export panel.

* :func:`render_figure` draws a publication figure (PNG, SVG or PDF) of a view: the cells are re-rendered at the
  figure's resolution through the ONE rendering path of the picture route (:func:`callbacks.routes.render_rgba`),
  then :func:`rendering.figures.export_figure` adds vector axes, scale bar, the legend of the categories VISIBLE
  in the view (the most frequent first) or the colour bar, title and species.
* :func:`export_cells` writes the cells of a view (its section or slab plane inside its viewport, optionally a
  box or polygon selection) as CSV or as h5ad with the chosen genes.
* ``GET /export/figure.<png|svg|pdf>`` and ``GET /export/cells.<csv|h5ad>`` take the address bar's parameters
  (read strictly by :mod:`components.export_request`) plus the export options; being under ``/export/`` they go
  through the export rate limit (``callbacks.limits``). The HTTP API (``callbacks.api``) calls the same functions.
* The export panel (``components.export``) downloads a figure through ``dcc.Download`` (errors and the rate limit
  become a visible message) and the cells through links to the routes (a cell table can be large).

A figure is built from a list of :class:`FigurePanel` (today one: the map or the UMAP); a side-by-side or gallery
export (selections, issue 5) adds panels, not a second rendering path.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from flask import Blueprint, Response, jsonify, request

from callbacks.context import ViewerContext
from callbacks.routes import render_rgba, shown_gene_range
from components.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES
from components.export_request import (CELL_FORMATS, CELL_KEYS, FIGURE_FORMATS, FIGURE_KEYS, MAX_EXPORT_CELLS,
                                       MAX_EXPORT_VALUES, CellOptions, ExportRequestError, FigureOptions,
                                       Selection, cell_options, figure_options, strict_view)
from components.picture import PictureRequest
from components.state import ViewState, frame_bounds, to_query
from components.viewport import Window, padded

log = logging.getLogger(__name__)

#: Colour map of gene pictures (the render route's default, also the legend's).
GENE_CMAP = "viridis"
#: Path prefix of the export routes (rate-limited by ``callbacks.limits``).
EXPORT_FIGURE_PATH = "/export/figure.<fmt>"
EXPORT_CELLS_PATH = "/export/cells.<fmt>"
MIMETYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "csv": "text/csv",
             "h5ad": "application/x-hdf5"}


# ---------------------------------------------------------------------------------------------- the view
def view_frame(context: ViewerContext, state: ViewState) -> Window:
    """Padded bounds of what the view draws (section, slab plane, or the whole UMAP)."""
    bounds = frame_bounds(context.catalog, state)
    if bounds is None:
        raise ExportRequestError("dataset", f"unknown dataset {state.dataset!r}")
    return padded(bounds)


def view_window(context: ViewerContext, state: ViewState) -> Window:
    """The data window of a view: its viewport clipped to the cells' frame (the whole frame without one).

    Raises
    ------
    ExportRequestError
        Naming ``x0`` when the viewport misses the cells.
    """
    frame = view_frame(context, state)
    if state.viewport is None:
        return frame
    v = state.viewport
    x0, x1 = max(v.x0, frame.x0), min(v.x1, frame.x1)
    y0, y1 = max(v.y0, frame.y0), min(v.y1, frame.y1)
    if not (x0 < x1 and y0 < y1):
        raise ExportRequestError("x0", f"the view x0..x1, y0..y1 misses the cells (they lie in "
                                       f"{frame.x0:.4g}..{frame.x1:.4g}, {frame.y0:.4g}..{frame.y1:.4g})")
    return Window(x0, x1, y0, y1)


def view_picture(state: ViewState, window: Window, width_px: int, height_px: int) -> PictureRequest:
    """The picture request of a view at a size (what the map's picture URL holds, at another resolution)."""
    gene = state.gene if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) else None
    by_gene = gene is not None and state.color_by == COLOR_BY_GENE
    two = {}
    if state.color_by == COLOR_BY_TWO_GENES:
        two = {"gene2": state.gene2, "blend_mode": state.blend_mode,
               "threshold_a": state.threshold_a if state.blend_mode == "both" else None,
               "threshold_b": state.threshold_b if state.blend_mode == "both" else None}
    return PictureRequest(
        dataset=state.dataset, section=state.section, slab_plane=None if state.section else state.slab_plane,
        color_by=state.color_by, gene=gene, term=state.term, term_level=state.term_level if state.term else None,
        window=window, width_px=int(width_px), height_px=int(height_px),
        vmin=state.vmin if by_gene else None, vmax=state.vmax if by_gene else None, **two,
    )


def _where(context: ViewerContext, state: ViewState) -> dict[str, str]:
    entry = context.catalog.get(state.dataset)
    if entry is None or not entry.spatial:
        return {}
    if state.section:
        return {"section": state.section}
    return {"slab_plane": state.slab_plane} if state.slab_plane else {}


def _highlight_mask(cells: Any, state: ViewState) -> np.ndarray | None:
    """``(n,)`` bool mask of the highlighted term's cells (as the picture route computes it), or None."""
    if not (state.term and state.term_level) or state.term_level not in cells.columns:
        return None
    column = cells[state.term_level]
    if state.term not in column.cat.categories:
        return np.zeros(len(column), dtype=bool)
    return np.asarray(column.cat.codes) == column.cat.categories.get_loc(state.term)


def _inside(x: np.ndarray, y: np.ndarray, window: Window) -> np.ndarray:
    return (x >= window.x0) & (x <= window.x1) & (y >= window.y0) & (y <= window.y1)


# ---------------------------------------------------------------------------------------------- legends
def visible_legend(context: ViewerContext, state: ViewState, window: Window, limit: int) -> list[tuple[str, str]]:
    """Legend of the categories drawn in the view, the most frequent first.

    Only cells inside ``window`` count (and, with a highlighted term, only its cells: the others are drawn
    dimmed, listed as one grey entry). More than ``limit`` categories end with a "+ N more" line.

    Returns
    -------
    list of (label, ``#rrggbb``)
    """
    if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) or limit <= 0:
        return []
    from rendering.colors import DIM_GREY

    atlas = context.atlas
    cells = atlas.cells(state.dataset, **_where(context, state))
    column = cells[state.color_by]
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    inside = _inside(x, y, window)
    highlight = _highlight_mask(cells, state)
    shown = inside if highlight is None else inside & highlight
    codes = np.asarray(column.cat.codes, dtype=np.int64)[shown]
    categories = [str(name) for name in column.cat.categories]
    counts = np.bincount(codes[codes >= 0], minlength=len(categories))
    if state.color_by == COLOR_BY_REGION:
        by_name = atlas.region_colors(state.dataset)
        colors = [by_name.get(name, "#bebebe") for name in categories]
    else:
        colors = list(atlas.taxonomy(state.dataset).colors(state.color_by))
    present = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    entries = [(categories[i], colors[i]) for i in present[:limit]]
    if len(present) > limit:
        rest = len(present) - limit
        entries.append((f"+ {rest} more with fewer cells", "#ffffff"))
    if highlight is not None and np.any(inside & ~highlight):
        entries.append(("other cells (dimmed)", DIM_GREY))
    return entries


def gene_colorbar(context: ViewerContext, picture: PictureRequest) -> tuple[str, float, float, str] | None:
    """``(cmap, vmin, vmax, label)`` of a gene picture (the range the picture was coloured over), else None."""
    if picture.color_by != COLOR_BY_GENE or not picture.gene:
        return None
    vmin, vmax = shown_gene_range(context, picture)
    return GENE_CMAP, float(vmin), float(vmax), f"{picture.gene} (log2 expression)"


def auto_title(context: ViewerContext, state: ViewState) -> str:
    """Default figure title: what is drawn and how it is coloured."""
    entry = context.catalog.get(state.dataset)
    if entry is None:
        return ""
    if not entry.spatial:
        where = f"{entry.name} UMAP"
    elif state.section:
        where = f"Section {state.section}"
    else:
        where = f"Slab plane {state.slab_plane}"
    if state.color_by == COLOR_BY_TWO_GENES:
        colour = f"{state.gene} (magenta) and {state.gene2} (green)"
    elif state.color_by == COLOR_BY_GENE:
        colour = f"{state.gene} expression"
    elif state.color_by == COLOR_BY_REGION:
        colour = "region"
    else:
        colour = state.color_by
    title = f"{where} · {colour}"
    if state.term:
        title += f" · {state.term}"
    return title


# ---------------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class FigurePanel:
    """One picture of a figure: a view drawn at the figure's resolution, with its legend or colour bar.

    Attributes
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8, row 0 at the top as displayed.
    window : Window
        Data window the picture covers.
    y_down : bool
        Section (y axis down) or UMAP (y up).
    units : str
        ``"mm"`` for sections, ``""`` for a UMAP.
    title, species : str
    legend : list of (label, colour)
        Visible categories (empty for a gene).
    colorbar : tuple or None
        ``(cmap, vmin, vmax, label)`` for a gene.
    """

    rgba: np.ndarray
    window: Window
    y_down: bool
    units: str
    title: str
    species: str
    legend: list
    colorbar: tuple | None


def figure_panel(context: ViewerContext, state: ViewState, options: FigureOptions, *,
                 max_px: int | None = None) -> FigurePanel:
    """Render one view for a figure of ``options``' size: cells at print resolution plus legend or colour bar.

    Parameters
    ----------
    max_px : int, optional
        Largest raster side; default ``settings.max_export_px``.
    """
    from rendering.figures import MAX_FIGURE_PX, export_raster_px
    from rendering.raster import Viewport

    entry = context.catalog.get(state.dataset)
    window = view_window(context, state)
    limit = min(max_px or context.settings.max_export_px, MAX_FIGURE_PX)
    shape = Viewport(*window, 1, 1)
    width_px, height_px = export_raster_px(shape, options.width_in, options.height_in, options.dpi, max_px=limit)
    picture = view_picture(state, window, width_px, height_px)
    rgba = render_rgba(context, picture)
    return FigurePanel(
        rgba=rgba, window=window, y_down=entry.spatial, units="mm" if entry.spatial else "",
        title=auto_title(context, state) if options.title is None else options.title,
        species=entry.species or "",
        legend=visible_legend(context, state, window, options.legend_entries),
        colorbar=gene_colorbar(context, picture),
    )


def compose_figure(panels: Sequence[FigurePanel], options: FigureOptions) -> bytes:
    """The figure file of ``panels`` (today exactly one; several come with side-by-side and gallery views).

    Raises
    ------
    ExportRequestError
        For a number of panels the figure layout cannot draw yet.
    """
    from rendering.figures import export_figure
    from rendering.raster import Viewport

    if len(panels) != 1:
        raise ExportRequestError("view", f"a figure of {len(panels)} views is not supported yet (one view)")
    panel = panels[0]
    height, width = panel.rgba.shape[:2]
    viewport = Viewport(*panel.window, width, height, max_px=max(width, height))
    return export_figure(
        panel.rgba, viewport, fmt=options.fmt, width_in=options.width_in, height_in=options.height_in,
        dpi=options.dpi, title=panel.title, species=panel.species, legend=panel.legend or None,
        colorbar=panel.colorbar, y_down=panel.y_down, units=panel.units,
    )


def render_figure(context: ViewerContext, state: ViewState, options: FigureOptions) -> bytes:
    """The figure of one view as ``options.fmt`` bytes (PNG exactly ``width_px x height_px`` with its dpi).

    Raises
    ------
    ExportRequestError
        When the view misses the cells.
    """
    return compose_figure([figure_panel(context, state, options)], options)


# ---------------------------------------------------------------------------------------------- cells
def cells_mask(context: ViewerContext, state: ViewState, cells: Any, selection: Selection | None) -> np.ndarray:
    """``(n,)`` bool mask of the cells of a view: inside its viewport (all without one) and its selection."""
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    mask = np.ones(len(cells), dtype=bool) if state.viewport is None else _inside(x, y, state.viewport)
    if selection is not None:
        if selection.box is not None:
            mask &= _inside(x, y, Window(*selection.box))
        else:
            rows = context.atlas.cells_in_polygon(state.dataset, list(selection.xs), list(selection.ys),
                                                  **_where(context, state))
            chosen = np.zeros(len(cells), dtype=bool)
            chosen[np.asarray(rows, dtype=np.int64)] = True
            mask &= chosen
    return mask


def count_cells(context: ViewerContext, state: ViewState, selection: Selection | None = None) -> int:
    """Cells a cell export of this view would hold."""
    cells = context.atlas.cells(state.dataset, **_where(context, state))
    return int(np.count_nonzero(cells_mask(context, state, cells, selection)))


def export_cells(context: ViewerContext, state: ViewState, options: CellOptions) -> tuple[bytes, int]:
    """The cells of a view as CSV or h5ad.

    CSV: one line per cell with its label, coordinates, section, slab plane, region, every taxonomy level and
    the chosen genes (log2; empty where the cell has no expression row). h5ad: ``X`` = the chosen genes' log2
    values (float32 ``(n_cells, n_genes)``, NaN where the cell has no expression row), ``obs`` = the cell table
    indexed by ``cell_label``, ``var`` = the genes (symbol index, ``gene_identifier``), ``obsm["spatial"]``
    (sections, mm) or ``obsm["X_umap"]``, and ``uns["atlas_viewer"]`` = the view's address.

    Returns
    -------
    (bytes, int)
        The file and its number of cells.

    Raises
    ------
    ExportRequestError
        Naming ``selection`` (too many cells) or ``genes`` (too many values).
    """
    from data_layer.analysis import export_cells_csv

    atlas = context.atlas
    where = _where(context, state)
    cells = atlas.cells(state.dataset, **where)
    mask = cells_mask(context, state, cells, options.selection)
    n_cells = int(np.count_nonzero(mask))
    if n_cells > MAX_EXPORT_CELLS:
        raise ExportRequestError("selection", f"the view holds {n_cells:,} cells; an export is limited to "
                                              f"{MAX_EXPORT_CELLS:,} (zoom in or select)")
    if n_cells * len(options.genes) > MAX_EXPORT_VALUES:
        raise ExportRequestError("genes", f"{n_cells:,} cells x {len(options.genes)} genes is over "
                                          f"{MAX_EXPORT_VALUES:,} values; choose fewer genes or cells")
    genes = {symbol: atlas.gene(state.dataset, symbol, **where) for symbol in options.genes}
    if options.fmt == "csv":
        text = export_cells_csv(cells, genes, mask)
        return text.encode("utf-8"), n_cells
    return _h5ad_bytes(context, state, cells, genes, mask), n_cells


def _h5ad_bytes(context: ViewerContext, state: ViewState, cells: Any, genes: dict[str, np.ndarray],
                mask: np.ndarray) -> bytes:
    import anndata
    import pandas as pd

    entry = context.catalog.get(state.dataset)
    obs = cells.loc[mask].reset_index(drop=True)
    for name in obs.columns:
        if isinstance(obs[name].dtype, pd.CategoricalDtype):
            obs[name] = obs[name].cat.remove_unused_categories()
        elif name == "cell_label" or pd.api.types.is_string_dtype(obs[name]):
            obs[name] = obs[name].astype(str).astype(object)
    obs.index = pd.Index(obs.pop("cell_label").to_numpy(dtype=object), name="cell_label")
    obs.index = obs.index.astype(str)
    symbols = list(genes)
    if symbols:
        matrix = np.column_stack([np.asarray(genes[s], dtype=np.float32)[mask] for s in symbols])
    else:
        matrix = np.zeros((len(obs), 0), dtype=np.float32)
    identifiers = [str(context.atlas.resolve_gene(state.dataset, s)[0]) for s in symbols]
    var = pd.DataFrame({"gene_identifier": identifiers}, index=pd.Index(symbols, dtype=object, name="gene_symbol"))
    adata = anndata.AnnData(X=matrix, obs=obs, var=var)
    xy = np.column_stack([obs["x"].to_numpy(np.float32), obs["y"].to_numpy(np.float32)])
    adata.obsm["spatial" if entry.spatial else "X_umap"] = xy
    adata.uns["atlas_viewer"] = {
        "dataset": state.dataset, "view": to_query(state), "units": "mm" if entry.spatial else "UMAP",
        "X": "log2 expression of the chosen genes; NaN where the cell has no expression row",
    }
    handle, path = tempfile.mkstemp(prefix="atlas-export-", suffix=".h5ad")
    os.close(handle)
    try:
        adata.write_h5ad(path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------------------------- names
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_filename(state: ViewState, kind: str, fmt: str) -> str:
    """A safe download name: ``<dataset>_<section or plane>_<colour>[_<gene>].<fmt>`` (``kind`` = figure|cells)."""
    parts = [state.dataset or "atlas", state.section or state.slab_plane or "umap"]
    parts.append(state.gene if state.color_by == COLOR_BY_GENE and state.gene else state.color_by)
    if kind == "cells":
        parts.append("cells")
    name = "_".join(_UNSAFE.sub("-", str(p)).strip("-") for p in parts if p)
    return f"{name[:150]}.{fmt}"


def file_response(data: bytes, fmt: str, filename: str) -> Response:
    """A download response: the file, its type, and ``Content-Disposition: attachment``."""
    response = Response(data, mimetype=MIMETYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def error_response(exc: ExportRequestError, status: int = 400) -> Response:
    """``{"error", "parameter"}`` JSON with ``status``."""
    response = jsonify(exc.to_json())
    response.status_code = status
    return response


def request_args() -> dict[str, str]:
    """The current request's query parameters (first value of each)."""
    return {key: request.args.get(key, "") for key in request.args}


# ---------------------------------------------------------------------------------------------- routes
def read_view(context: ViewerContext, args: dict[str, str], extra_keys: Sequence[str]) -> ViewState:
    """The view of a request, strictly (see :func:`components.export_request.strict_view`)."""
    return strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                       term_lookup=context.lookups.term_level, extra_keys=extra_keys)


def figure_from_args(context: ViewerContext, args: dict[str, str], fmt: str,
                     extra_keys: Sequence[str] = FIGURE_KEYS) -> tuple[bytes, ViewState]:
    """Parse, render and return a figure of a request's parameters (the route's and the API's body)."""
    state = read_view(context, args, extra_keys)
    options = figure_options(args, fmt=fmt, max_export_px=context.settings.max_export_px)
    return render_figure(context, state, options), state


def cells_from_args(context: ViewerContext, args: dict[str, str], fmt: str) -> tuple[bytes, ViewState, int]:
    """Parse and export the cells of a request's parameters (the route's and the API's body)."""
    if fmt not in CELL_FORMATS:
        raise ExportRequestError("format", f"{fmt[:20]!r} is not one of {', '.join(CELL_FORMATS)}")
    state = read_view(context, args, CELL_KEYS)
    entry = context.catalog.get(state.dataset)
    options = cell_options(args, state, fmt=fmt, gene_lookup=context.lookups.gene_symbol,
                           has_genes=entry.has_genes)
    data, n_cells = export_cells(context, state, options)
    return data, state, n_cells


def export_blueprint(context: ViewerContext) -> Blueprint:
    """``/export/figure.<fmt>`` and ``/export/cells.<fmt>`` for ``context``'s atlas."""
    blueprint = Blueprint("exports", __name__)

    @blueprint.get(EXPORT_FIGURE_PATH)
    def export_figure_route(fmt: str) -> Response:
        if fmt not in FIGURE_FORMATS:
            return error_response(ExportRequestError("format", f"{fmt[:20]!r} is not one of "
                                                               f"{', '.join(FIGURE_FORMATS)}"))
        try:
            data, state = figure_from_args(context, request_args(), fmt)
        except ExportRequestError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "figure", fmt))

    @blueprint.get(EXPORT_CELLS_PATH)
    def export_cells_route(fmt: str) -> Response:
        try:
            data, state, _ = cells_from_args(context, request_args(), fmt)
        except ExportRequestError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "cells", fmt))

    return blueprint


def register(app: Any, atlas: Any, settings: Any, context: ViewerContext | None = None) -> dict:
    """Serve the export routes on ``app``'s server and register the export panel's callbacks.

    Returns
    -------
    dict
        name -> callback functions (plain functions, callable in tests).
    """
    context = context or ViewerContext.build(atlas, settings)
    server = getattr(app, "server", app)
    server.register_blueprint(export_blueprint(context))
    if not hasattr(app, "callback"):
        return {}
    from callbacks.export_panel import register_panel

    return register_panel(app, context)
