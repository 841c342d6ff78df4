"""The picture pipeline: a :class:`core.picture.PictureRequest` drawn through the atlas and ``rendering``.

:func:`render_rgba` is the ONE rendering path of the picture route, the HTTP API and the figure export, so all
three draw a view the same way; :func:`render_png` encodes it. Plain Python: no Dash, no Flask.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.context import ViewerContext
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from core.picture import PictureRequest

log = logging.getLogger(__name__)

def render_png(context: ViewerContext, picture: PictureRequest) -> bytes:
    """Render one picture through the atlas and ``rendering`` (:func:`render_rgba`) and encode it.

    Returns
    -------
    bytes
        PNG of ``picture.height_px x picture.width_px`` RGBA pixels, row 0 at the top as displayed.
    """
    from rendering.png import encode_png

    return encode_png(render_rgba(context, picture))


def _picture_cells(context: ViewerContext, picture: PictureRequest) -> tuple[Any, dict, Any]:
    """``(cells, where, viewport)`` of a picture request."""
    from rendering.raster import Viewport

    where = {"section": picture.section} if picture.section else (
        {"slab_plane": picture.slab_plane} if picture.slab_plane else (
            {"embedding": picture.embedding} if picture.embedding else {}))
    cells = context.atlas.cells(picture.dataset, **where)
    viewport = Viewport(*picture.window, picture.width_px, picture.height_px,
                        max_px=max(context.settings.max_image_px, picture.width_px, picture.height_px))
    return cells, where, viewport


def picture_dot_radius_px(context: ViewerContext, picture: PictureRequest, cells: Any = None,
                          viewport: Any = None) -> float:
    """Radius (px, a real number) cells are drawn with in ``picture`` (:func:`rendering.raster.dot_radius_px`):
    from the density of the cells in view (a section's cells mostly fill it, a UMAP's do not), and for sections at
    least the cells' physical size (:data:`rendering.raster.CELL_DIAMETER_MM`), so a picture changes smoothly
    with the view and the map, the UMAP, the side-by-side maps, the gallery and figures follow one rule."""
    from rendering.raster import CELL_DIAMETER_MM, dot_radius_px

    if cells is None or viewport is None:
        cells, _, viewport = _picture_cells(context, picture)
    in_view = viewport.count_inside(cells["x"].to_numpy(), cells["y"].to_numpy())
    spatial = context.catalog.get(picture.dataset).spatial
    return dot_radius_px(in_view, viewport, tissue_fraction=0.8 if spatial else 0.5,
                         cell_diameter=CELL_DIAMETER_MM if spatial else None)


def render_rgba(context: ViewerContext, picture: PictureRequest, dot_radius_px: float | None = None,
                gene_ranges: tuple | None = None) -> np.ndarray:
    """The cells of one picture request as an RGBA raster: the ONE rendering path of the picture route, the
    HTTP API and the figure export (``core.export``), so all three draw a view the same way.

    The size is taken as given (``picture.width_px x picture.height_px``): the caller bounds it
    (``max_image_px`` for the route, ``max_export_px`` for exports). ``dot_radius_px`` sets the dot radius (a figure
    of several panels at one scale draws every panel's cells the same size); default
    :func:`picture_dot_radius_px`. ``gene_ranges`` (``(range_a, range_b)``) colours a two-gene picture over other
    ranges than its genes' defaults (:func:`two_gene_ranges`): a comparison figure's panels share one pair.

    Returns
    -------
    numpy.ndarray
        ``(picture.height_px, picture.width_px, 4)`` uint8 RGBA, row 0 at the top as displayed (sections are drawn
        y-down, UMAPs y-up).
    """
    from rendering.raster import render_categorical, render_numeric

    atlas = context.atlas
    entry = context.catalog.get(picture.dataset)
    y_down = entry.spatial
    cells, where, viewport = _picture_cells(context, picture)
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    radius = picture_dot_radius_px(context, picture, cells, viewport) if dot_radius_px is None else float(dot_radius_px)
    highlight = None
    if picture.term and picture.term_level:
        column = cells[picture.term_level]
        code = column.cat.categories.get_loc(picture.term) if picture.term in column.cat.categories else -2
        highlight = np.asarray(column.cat.codes) == code
    highlight = selection_highlight(picture, cells, highlight, entry.levels[-1] if entry.levels else None,
                                    context.masks, where)
    if picture.color_by == COLOR_BY_TWO_GENES and picture.gene2:
        return render_two_gene_picture(context, picture, x, y, viewport, where, radius, y_down, gene_ranges)
    if picture.color_by == COLOR_BY_GENE:
        values = atlas.gene(picture.dataset, picture.gene, **where)
        vmin, vmax = shown_gene_range(context, picture)
        rgba = render_numeric(x, y, values, viewport, vmin=vmin, vmax=vmax, highlight=highlight,
                              dot_radius_px=radius, y_down=y_down)
    elif entry.is_numeric(picture.color_by):
        # a cell measurement (counts, areas, QC scores): every cell with a value on the colour map, the mean of
        # the cells sharing a pixel, cells without a value "not measured"
        values = np.asarray(atlas.values(picture.dataset, picture.color_by, **where), dtype=np.float32)
        vmin, vmax = shown_column_range(context, picture)
        rgba = render_numeric(x, y, values, viewport, vmin=vmin, vmax=vmax, how="mean", zero_color=None,
                              highlight=highlight, dot_radius_px=radius, y_down=y_down)
    else:
        column = cells[picture.color_by]
        colors = atlas.colors(picture.dataset, picture.color_by)
        codes = np.asarray(column.cat.codes, dtype=np.int32)
        rgba = render_categorical(x, y, codes, colors, viewport, highlight=highlight, dot_radius_px=radius,
                                  y_down=y_down)
    return rgba


def selection_highlight(picture: PictureRequest, cells: Any, highlight: np.ndarray | None,
                        cluster_level: str | None, masks: Any, where: dict) -> np.ndarray | None:
    """The highlight mask with the picture's selection (its cells) and linked clusters (cells of those codes of
    ``cluster_level``) applied: a cell stays bright only when it is in every one given.

    Returns
    -------
    numpy.ndarray or None
        ``(n,)`` bool, or None when nothing is highlighted.
    """
    from core.selection import MAX_CODE, decode_codes, parse_selection_param

    if picture.selection:
        inside = masks.mask(picture.dataset, where, parse_selection_param(picture.selection))
        highlight = inside if highlight is None else highlight & inside
    if picture.clusters and cluster_level is not None and cluster_level in cells.columns:
        codes = np.asarray(cells[cluster_level].cat.codes, dtype=np.int64)
        wanted = np.zeros(len(cells[cluster_level].cat.categories) + 1, dtype=bool)  # last entry: code -1
        picked = decode_codes(picture.clusters, MAX_CODE + 1)
        wanted[picked[picked < len(wanted) - 1]] = True
        linked = wanted[codes]
        highlight = linked if highlight is None else highlight & linked
    return highlight


def two_gene_ranges(context: ViewerContext, picture: PictureRequest) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(range_a, range_b)`` a two-gene picture is coloured over: each gene's default range in the dataset."""
    return (context.gene_range(picture.dataset, picture.gene), context.gene_range(picture.dataset, picture.gene2))


def render_two_gene_picture(context: ViewerContext, picture: PictureRequest, x: np.ndarray, y: np.ndarray,
                            viewport: Any, where: dict, radius: float, y_down: bool,
                            gene_ranges: tuple | None = None) -> np.ndarray:
    """The cells coloured by ``picture.gene`` and ``picture.gene2`` at once (:func:`rendering.blend.render_two_genes`
    in its default theme: magenta / green, white where both are high, on a near-black background), over
    ``gene_ranges`` (default :func:`two_gene_ranges`).

    Returns
    -------
    numpy.ndarray
        ``(picture.height_px, picture.width_px, 4)`` uint8 RGBA.
    """
    from rendering.blend import render_two_genes

    atlas = context.atlas
    values_a = atlas.gene(picture.dataset, picture.gene, **where)
    values_b = atlas.gene(picture.dataset, picture.gene2, **where)
    range_a, range_b = gene_ranges or two_gene_ranges(context, picture)
    return render_two_genes(
        x, y, values_a, values_b, viewport, range_a=range_a, range_b=range_b,
        mode=picture.blend_mode,
        threshold_a=picture.threshold_a or 0.0, threshold_b=picture.threshold_b or 0.0,
        dot_radius_px=radius, y_down=y_down,
    )


def shown_column_range(context: ViewerContext, picture: PictureRequest) -> tuple[float, float]:
    """``(vmin, vmax)`` a numeric-column picture is coloured over: the request's range (side-by-side maps share
    one), else the column's default range in the dataset (:meth:`data_layer.atlas.Atlas.column_range`); ``(0, 1)``
    when no cell has a value (all drawn "not measured")."""
    if picture.vmin is not None and picture.vmax is not None:
        return picture.vmin, picture.vmax
    found = context.catalog.get(picture.dataset).numeric_columns.get(picture.color_by)
    return (float(found[0]), float(found[1])) if found else (0.0, 1.0)


def shown_gene_range(context: ViewerContext, picture: PictureRequest) -> tuple[float, float]:
    """``(vmin, vmax)`` a gene picture is coloured over: the request's range, else the gene's default range."""
    if picture.vmin is not None and picture.vmax is not None:
        return picture.vmin, picture.vmax
    return context.gene_range(picture.dataset, picture.gene)
