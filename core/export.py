"""Figure and cell export of a view: what the ``/export/`` routes, the HTTP API and the export panel answer with.

* :func:`render_figure` draws a publication figure (PNG, SVG or PDF) of a view: the cells are re-rendered at the
  figure's resolution through the ONE rendering path of the picture route (:func:`core.render.render_rgba`),
  then :func:`rendering.figures.export_figure` adds vector axes, scale bar, the legend of the categories VISIBLE
  in the view (the most frequent first), the colour bar or the two-gene 2-D colour key, title and species.
* :func:`export_cells` writes the cells of a view (its section or slab plane inside its viewport, optionally a
  box or polygon selection) as CSV or as h5ad with the chosen genes.
* ``GET /export/figure.<png|svg|pdf>`` and ``GET /export/cells.<csv|h5ad>`` take the address bar's parameters
  (read strictly by :mod:`core.requests`) plus the export options; being under ``/export/`` they go
  through the export rate limit (``server.limits``). The HTTP API (``server.api``) calls the same functions.
* The export panel (``components.export``) downloads a figure through ``dcc.Download`` (errors and the rate limit
  become a visible message) and the cells through links to the routes (a cell table can be large).

A figure is built from a list of :class:`FigurePanel`: one (the map or the UMAP), or with ``panels=species`` /
``panels=gallery`` one per species side by side or per section of the gallery (:func:`render_comparison`). Their
choice and colouring come from :mod:`core.compare` (as the views on screen), each panel is rendered by the same
:func:`figure_panel`, and :func:`rendering.figures.export_panel_grid` lays them out at one scale with one legend,
colour bar or two-gene key: more panels, not a second rendering path.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core.compare import (compare_datasets, first_section, gallery_sections, hand_gene_range, shared_gene_range,
                          slot_colouring)
from core.context import ViewerContext
from core.render import picture_spread_px, render_rgba, shown_gene_range, two_gene_ranges
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES
from core.errors import ViewError
from core.requests import (CELL_FORMATS, CELL_KEYS, FIGURE_KEYS, MAX_EXPORT_CELLS, MAX_EXPORT_VALUES, MAX_FIGURE_PANELS,
                           MIN_PANEL_PX, CellOptions, FigureOptions, PanelRequest, cell_options, figure_options,
                           panel_request)
from core.picture import PictureRequest, view_picture  # noqa: F401  (the API's picture of a view)
from core.state import ViewState, frame_bounds, strict_view, to_query
from core.viewport import Window, padded

log = logging.getLogger(__name__)

#: Colour map of gene pictures (the render route's default, also the legend's).
GENE_CMAP = "viridis"
#: Path prefix of the export routes (rate-limited by ``server.limits``).
EXPORT_FIGURE_PATH = "/export/figure.<fmt>"
EXPORT_CELLS_PATH = "/export/cells.<fmt>"
MIMETYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "csv": "text/csv",
             "h5ad": "application/x-hdf5"}


# ---------------------------------------------------------------------------------------------- the view
def view_frame(context: ViewerContext, state: ViewState) -> Window:
    """Padded bounds of what the view draws (section, slab plane, or the whole UMAP)."""
    bounds = frame_bounds(context.catalog, state)
    if bounds is None:
        raise ViewError("dataset", f"unknown dataset {state.dataset!r}")
    return padded(bounds)


def view_window(context: ViewerContext, state: ViewState) -> Window:
    """The data window of a view: its viewport clipped to the cells' frame (the whole frame without one).

    Raises
    ------
    ViewError
        Naming ``x0`` when the viewport misses the cells.
    """
    frame = view_frame(context, state)
    if state.viewport is None:
        return frame
    v = state.viewport
    x0, x1 = max(v.x0, frame.x0), min(v.x1, frame.x1)
    y0, y1 = max(v.y0, frame.y0), min(v.y1, frame.y1)
    if not (x0 < x1 and y0 < y1):
        raise ViewError("x0", f"the view x0..x1, y0..y1 misses the cells (they lie in "
                                       f"{frame.x0:.4g}..{frame.x1:.4g}, {frame.y0:.4g}..{frame.y1:.4g})")
    return Window(x0, x1, y0, y1)


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
@dataclass(frozen=True)
class LegendCounts:
    """Cells per category drawn bright in one view (inside its window; with a highlighted term, only its cells).

    Attributes
    ----------
    names, colors : list of str
        Every category of the colour-by column and its ``#rrggbb``.
    counts : numpy.ndarray
        ``(len(names),)`` int64 cells per category.
    dimmed : bool
        Whether cells outside the highlighted term are drawn (dimmed) in the window.
    """

    names: list
    colors: list
    counts: np.ndarray
    dimmed: bool


def legend_counts(context: ViewerContext, state: ViewState, window: Window) -> LegendCounts | None:
    """The categories drawn in a view and their cells (None for a gene or two-gene view)."""
    if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
        return None
    atlas = context.atlas
    where = _where(context, state)
    cells = atlas.cells(state.dataset, **where)
    column = cells[state.color_by]
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    inside = _inside(x, y, window)
    highlight = _highlight_mask(cells, state)
    shown = inside if highlight is None else inside & highlight
    codes = np.asarray(column.cat.codes, dtype=np.int64)[shown]
    categories = [str(name) for name in column.cat.categories]
    counts = np.bincount(codes[codes >= 0], minlength=len(categories))
    colors = list(atlas.colors(state.dataset, state.color_by))
    dimmed = bool(highlight is not None and np.any(inside & ~highlight))
    return LegendCounts(categories, colors, counts.astype(np.int64), dimmed)


def legend_entries(found: Sequence[LegendCounts], limit: int) -> list[tuple[str, str]]:
    """ONE legend of one or several views: the categories with cells in any of them, the most cells (summed over
    the views, by name) first; the colour is the first view's. More than ``limit`` end with a "+ N more" line; a
    dimmed rest with one grey "other cells (dimmed)" entry.

    Returns
    -------
    list of (label, ``#rrggbb``)
    """
    from rendering.colors import DIM_GREY

    if limit <= 0:
        return []
    totals: dict[str, int] = {}
    colours: dict[str, str] = {}
    for item in found:
        for name, colour, count in zip(item.names, item.colors, item.counts):
            if count > 0:
                totals[name] = totals.get(name, 0) + int(count)
                colours.setdefault(name, colour)
    present = sorted(totals, key=lambda name: -totals[name])  # stable: ties keep the first view's order
    entries = [(name, colours[name]) for name in present[:limit]]
    if len(present) > limit:
        entries.append((f"+ {len(present) - limit} more with fewer cells", "#ffffff"))
    if any(item.dimmed for item in found):
        entries.append(("other cells (dimmed)", DIM_GREY))
    return entries


def visible_legend(context: ViewerContext, state: ViewState, window: Window, limit: int) -> list[tuple[str, str]]:
    """Legend of the categories drawn in the view, the most frequent first.

    Only cells inside ``window`` count (and, with a highlighted term, only its cells: the others are drawn
    dimmed, listed as one grey entry). More than ``limit`` categories end with a "+ N more" line.

    Returns
    -------
    list of (label, ``#rrggbb``)
    """
    if limit <= 0:
        return []
    found = legend_counts(context, state, window)
    return legend_entries([found], limit) if found is not None else []


def gene_colorbar(context: ViewerContext, picture: PictureRequest) -> tuple[str, float, float, str] | None:
    """``(cmap, vmin, vmax, label)`` of a gene picture (the range the picture was coloured over), else None."""
    if picture.color_by != COLOR_BY_GENE or not picture.gene:
        return None
    vmin, vmax = shown_gene_range(context, picture)
    return GENE_CMAP, float(vmin), float(vmax), f"{picture.gene} (log2 expression)"


def picture_two_gene_key(context: ViewerContext, picture: PictureRequest, gene_ranges: tuple | None = None) -> Any:
    """The 2-D colour key (:class:`rendering.figures.TwoGeneKey`) of a two-gene picture, else None: its genes,
    the ranges it is coloured over (``gene_ranges``, else :func:`core.render.two_gene_ranges`, as
    :func:`core.render.render_rgba` uses them), its mode and thresholds, in the theme the route draws."""
    from rendering.figures import TwoGeneKey

    if picture.color_by != COLOR_BY_TWO_GENES or not picture.gene2:
        return None
    range_a, range_b = gene_ranges or two_gene_ranges(context, picture)
    return TwoGeneKey(picture.gene, picture.gene2, range_a, range_b, mode=picture.blend_mode,
                      threshold_a=picture.threshold_a or 0.0, threshold_b=picture.threshold_b or 0.0)


def _colour_text(state: ViewState) -> str:
    if state.color_by == COLOR_BY_TWO_GENES:
        from rendering.blend import DEFAULT_THEME, THEMES

        word_a, word_b, _ = THEMES[DEFAULT_THEME].colour_words()  # the theme the picture route draws in
        return f"{state.gene} ({word_a}) and {state.gene2} ({word_b})"
    if state.color_by == COLOR_BY_GENE:
        return f"{state.gene} expression"
    if state.color_by == COLOR_BY_REGION:
        return "region"
    return state.color_by


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
    title = f"{where} · {_colour_text(state)}"
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
    two_gene_key : rendering.figures.TwoGeneKey or None
        The 2-D colour key of a two-gene view (:func:`picture_two_gene_key`).
    """

    rgba: np.ndarray
    window: Window
    y_down: bool
    units: str
    title: str
    species: str
    legend: list
    colorbar: tuple | None
    two_gene_key: Any = None


def figure_panel(context: ViewerContext, state: ViewState, options: FigureOptions, *,
                 max_px: int | None = None, window: Window | None = None, size_px: tuple[int, int] | None = None,
                 title: str | None = None, with_legend: bool = True, spread_px: int | None = None,
                 gene_ranges: tuple | None = None) -> FigurePanel:
    """Render one view for a figure of ``options``' size: cells at print resolution plus legend or colour bar.

    Parameters
    ----------
    max_px : int, optional
        Largest raster side; default ``settings.max_export_px``.
    window : Window, optional
        Data window to draw; default the view's (:func:`view_window`).
    size_px : (int, int), optional
        Raster size; default as large as the whole figure (:func:`rendering.figures.export_raster_px`). A panel
        of a grid passes its box at the figure's dpi.
    title : str, optional
        Panel title; default the figure's (``options.title``, else automatic).
    with_legend : bool
        Count the visible categories (a grid draws one legend of all its panels instead).
    spread_px : int, optional
        Dot radius of the cells; default from their density (:func:`core.render.picture_spread_px`).
    gene_ranges : ((float, float), (float, float)), optional
        Ranges of a two-gene view's genes (a comparison's shared pair); default each gene's in the dataset.
    """
    from rendering.figures import MAX_FIGURE_PX, export_raster_px
    from rendering.raster import Viewport

    entry = context.catalog.get(state.dataset)
    window = window or view_window(context, state)
    limit = min(max_px or context.settings.max_export_px, MAX_FIGURE_PX)
    if size_px is None:
        shape = Viewport(*window, 1, 1)
        width_px, height_px = export_raster_px(shape, options.width_in, options.height_in, options.dpi,
                                               max_px=limit)
    else:
        width_px, height_px = (max(1, min(int(v), limit)) for v in size_px)
    picture = view_picture(state, window, width_px, height_px)
    rgba = render_rgba(context, picture, spread_px=spread_px, gene_ranges=gene_ranges)
    if title is None:
        title = auto_title(context, state) if options.title is None else options.title
    return FigurePanel(
        rgba=rgba, window=window, y_down=entry.spatial, units="mm" if entry.spatial else "",
        title=title, species=entry.species or "",
        legend=visible_legend(context, state, window, options.legend_entries) if with_legend else [],
        colorbar=gene_colorbar(context, picture), two_gene_key=picture_two_gene_key(context, picture, gene_ranges),
    )


def compose_figure(panels: Sequence[FigurePanel], options: FigureOptions, grid: Any = None) -> bytes:
    """The figure file of ``panels``: one view as today, or several laid out by ``grid``.

    Parameters
    ----------
    panels : sequence of FigurePanel
        One panel (its legend, colour bar, title and species are the figure's), or one per box of ``grid``.
    grid : rendering.figures.PanelGrid, optional
        The plan of a figure of several panels (:func:`plan_comparison`): their boxes at one scale, the ONE
        legend or colour bar, the heading.

    Raises
    ------
    ViewError
        For several panels without a grid, or a grid of another number of panels.
    """
    from rendering.figures import export_figure, export_panel_grid
    from rendering.raster import Viewport

    if grid is not None:
        if len(panels) != len(grid.geometry.boxes):
            raise ViewError("panels", f"{len(panels)} pictures for a grid of {len(grid.geometry.boxes)}")
        return export_panel_grid([p.rgba for p in panels], [p.window for p in panels], grid, fmt=options.fmt,
                                 dpi=options.dpi, y_down=all(p.y_down for p in panels))
    if len(panels) != 1:
        raise ViewError("panels", f"a figure of {len(panels)} views needs a panel grid")
    panel = panels[0]
    height, width = panel.rgba.shape[:2]
    viewport = Viewport(*panel.window, width, height, max_px=max(width, height))
    return export_figure(
        panel.rgba, viewport, fmt=options.fmt, width_in=options.width_in, height_in=options.height_in,
        dpi=options.dpi, title=panel.title, species=panel.species, legend=panel.legend or None,
        colorbar=panel.colorbar, y_down=panel.y_down, units=panel.units, two_gene_key=panel.two_gene_key,
    )


def render_figure(context: ViewerContext, state: ViewState, options: FigureOptions) -> bytes:
    """The figure of one view as ``options.fmt`` bytes (PNG exactly ``width_px x height_px`` with its dpi).

    Raises
    ------
    ViewError
        When the view misses the cells.
    """
    return compose_figure([figure_panel(context, state, options)], options)


# ---------------------------------------------------------------------------------------------- panels
@dataclass(frozen=True)
class PanelView:
    """One panel of a comparison figure before it is drawn.

    Attributes
    ----------
    state : ViewState
        Its own view: dataset, section (and its slab plane), colouring carried over from the main view.
    window : Window
        The whole section (padded, as the map frames it).
    title : str
        Species and platform then section (side by side), or the section (gallery); a colouring that could not
        be carried over says so on a last line.
    gene_ranges : ((float, float), (float, float)) or None
        A two-gene panel's ranges, the same for every two-gene panel of the figure (its one key).
    """

    state: ViewState
    window: Window
    title: str
    gene_ranges: tuple | None = None


@dataclass(frozen=True)
class ComparisonPlan:
    """A comparison figure before its cells are drawn: the views and their layout (see :func:`plan_comparison`)."""

    kind: str
    views: tuple[PanelView, ...]
    grid: Any  # rendering.figures.PanelGrid
    heading: str


def _two_genes(state: ViewState) -> dict | None:
    if state.color_by != COLOR_BY_TWO_GENES or not state.gene2:
        return None
    return {"gene2": state.gene2, "blend_mode": state.blend_mode, "threshold_a": state.threshold_a,
            "threshold_b": state.threshold_b}


def _panel_state(context: ViewerContext, dataset: str, section: str, colouring: Any,
                 gene_range: tuple[float, float] | None) -> ViewState:
    """The view of one panel: ``colouring`` (``core.compare.SlotColouring``) on ``section`` of ``dataset``."""
    entry = context.catalog.get(dataset)
    extra = colouring.extra or {}
    by_gene = colouring.color_by == COLOR_BY_GENE
    return ViewState(
        dataset=dataset, slab_plane=entry.sections[section].slab_plane, section=section,
        color_by=colouring.color_by, gene=colouring.gene,
        term=colouring.term[1] if colouring.term else None, term_level=colouring.term[0] if colouring.term else None,
        vmin=gene_range[0] if by_gene and gene_range else None, vmax=gene_range[1] if by_gene and gene_range else None,
        gene2=extra.get("gene2"), blend_mode=extra.get("blend_mode") or "blend",
        threshold_a=extra.get("threshold_a"), threshold_b=extra.get("threshold_b"),
    )


def comparison_views(context: ViewerContext, state: ViewState, request: PanelRequest) -> list[PanelView]:
    """The panels of a side-by-side or gallery figure, chosen and coloured as the map card shows them (:mod:`core.compare`).

    * ``species``: the side-by-side datasets (``compare_datasets``: the first of each species), each on the
      section asked (else its first), coloured by ``slot_colouring`` (the term only at a level shared across
      species); a gene on ONE range for all: the range set by hand (``vmin``/``vmax``), else from the lowest
      default low end to the highest default high end over the species measuring it (``shared_gene_range``).
      Two genes likewise: each gene on one range over the species whose panel draws both (one 2-D key).
    * ``gallery``: every section of the view's dataset (``gallery_sections``), coloured like the map (any level's
      term); a gene on the range set by hand, else the DATASET's default range (one range for all sections); two
      genes on their dataset default ranges.
    """

    term = {"level": state.term_level, "name": state.term} if state.term and state.term_level else None
    views = []
    if request.kind == "species":
        datasets = compare_datasets(context)
        gene_range = shared_gene_range(context, datasets, state.gene, state.vmin, state.vmax)
        colourings = [slot_colouring(context, dataset, state.color_by, state.gene, term, _two_genes(state))
                      for dataset in datasets]
        both = [d for d, c in zip(datasets, colourings) if c.color_by == COLOR_BY_TWO_GENES]
        pair = None
        if both:  # two-gene pictures take no hand range: the shared default ranges of the species drawing both
            pair = (shared_gene_range(context, both, state.gene, None, None),
                    shared_gene_range(context, both, state.gene2, None, None))
        for slot, (dataset, colouring) in enumerate(zip(datasets, colourings)):
            entry = context.catalog.get(dataset)
            asked = request.sections[slot] if slot < len(request.sections) else None
            section = asked or first_section(context, dataset)
            lines = [f"{entry.species or dataset} · {entry.platform}", section]
            if colouring.note:
                lines.append(colouring.note)
            views.append(PanelView(_panel_state(context, dataset, section, colouring, gene_range),
                                   padded(entry.sections[section].bounds), "\n".join(lines),
                                   pair if colouring.color_by == COLOR_BY_TWO_GENES else None))
        return views
    entry = context.catalog.get(state.dataset)
    colouring = slot_colouring(context, entry.name, state.color_by, state.gene, term, _two_genes(state),
                               shared_only=False)
    gene_range = hand_gene_range(state.vmin, state.vmax)
    pair = None
    if colouring.color_by == COLOR_BY_TWO_GENES:
        pair = (context.gene_range(entry.name, colouring.gene),
                context.gene_range(entry.name, colouring.extra["gene2"]))
    for section in gallery_sections(context, entry.name):
        title = section if not colouring.note else f"{section}\n{colouring.note}"
        views.append(PanelView(_panel_state(context, entry.name, section, colouring, gene_range),
                               padded(entry.sections[section].bounds), title, pair))
    return views


def comparison_title(context: ViewerContext, state: ViewState, request: PanelRequest, n_panels: int) -> str:
    """Default title of a comparison figure: which panels and how they are coloured (and the highlighted term)."""
    if request.kind == "species":
        title = f"Species side by side · {_colour_text(state)}"
    else:
        title = f"{state.dataset} · {n_panels} sections · {_colour_text(state)}"
    return title + (f" · {state.term}" if state.term else "")


def plan_comparison(context: ViewerContext, state: ViewState, options: FigureOptions,
                    request: PanelRequest) -> ComparisonPlan:
    """The views and layout of a side-by-side (a row) or gallery (the columns giving the largest panels) figure.

    All panels share ONE scale (inches per mm; see :mod:`rendering.figures`), ONE legend of the categories
    visible in any panel (most cells first), ONE colour bar or ONE two-gene key (the ranges of
    :func:`comparison_views`), and each has its own scale bar (one length for all). Nothing is rendered yet: the
    preview of the export panel shows this plan.

    Raises
    ------
    ViewError
        Naming ``panels`` when the panels would be smaller than :data:`MIN_PANEL_PX` (or find no room) at this
        figure size and dpi.
    """
    from rendering.figures import plan_panel_grid

    views = comparison_views(context, state, request)
    if len(views) > MAX_FIGURE_PANELS:
        raise ViewError("panels", f"{len(views)} panels; a figure holds at most {MAX_FIGURE_PANELS}")
    found = [legend_counts(context, v.state, v.window) for v in views]
    legend = legend_entries([f for f in found if f is not None], options.legend_entries)
    colorbar = None
    for view in views:
        if view.state.color_by == COLOR_BY_GENE:
            colorbar = gene_colorbar(context, view_picture(view.state, view.window, 1, 1))
            break
    key = next((picture_two_gene_key(context, view_picture(v.state, v.window, 1, 1), v.gene_ranges) for v in views
                if v.state.color_by == COLOR_BY_TWO_GENES), None)
    heading = comparison_title(context, state, request, len(views)) if options.title is None else options.title
    species = ""
    if request.kind == "gallery":
        species = context.catalog.get(state.dataset).species or ""
    grid = plan_panel_grid(
        [(v.window.width, v.window.height) for v in views], [v.title for v in views],
        width_in=options.width_in, height_in=options.height_in, dpi=options.dpi, heading=heading, species=species,
        legend=legend, colorbar=colorbar, n_cols=len(views) if request.kind == "species" else None,
        two_gene_key=key,
    )
    sizes = grid.raster_px(options.dpi) if grid.geometry.boxes else [(0, 0)]
    smallest = min(min(size) for size in sizes)
    if smallest < MIN_PANEL_PX:
        what = "sections" if request.kind == "gallery" else "species"
        raise ViewError(
            "panels", f"{len(views)} {what} in a {options.width_px} x {options.height_px} px figure leave panels "
                      f"of {smallest} px (at least {MIN_PANEL_PX}): make the figure larger (up to max_export_px) "
                      f"or the legend shorter")
    return ComparisonPlan(request.kind, tuple(views), grid, heading)


def comparison_spread_px(context: ViewerContext, views: Sequence[PanelView], sizes: Sequence[tuple[int, int]]) -> int:
    """One dot radius for every panel of a comparison figure: the panels share one scale, so one radius in
    pixels is one cell size in mm on paper. It is the largest of the panels' own (density) radii: the sparsest
    panel's cells meet their neighbours, the denser panels read as solid tissue instead of scattered pixels."""
    radii = [picture_spread_px(context, view_picture(view.state, view.window, *size))
             for view, size in zip(views, sizes) if min(size) > 0]
    return max(radii, default=0)


def render_comparison(context: ViewerContext, state: ViewState, options: FigureOptions,
                      request: PanelRequest) -> bytes:
    """The side-by-side or gallery figure as ``options.fmt`` bytes: every panel re-rendered through the ONE
    rendering path (:func:`figure_panel`) at its box's size at the figure's dpi, then composed
    (:func:`compose_figure`). The panels' rasters together never exceed the figure's pixels (their boxes lie
    inside it), so the export size limit bounds them too.

    Raises
    ------
    ViewError
        See :func:`plan_comparison`.
    """
    plan = plan_comparison(context, state, options, request)
    sizes = plan.grid.raster_px(options.dpi)
    spread = comparison_spread_px(context, plan.views, sizes)
    panels = [figure_panel(context, view.state, options, window=view.window, size_px=size, title=view.title,
                           with_legend=False, spread_px=spread, gene_ranges=view.gene_ranges)
              for view, size in zip(plan.views, sizes)]
    return compose_figure(panels, options, plan.grid)


# ---------------------------------------------------------------------------------------------- cells
def cells_mask(context: ViewerContext, state: ViewState, cells: Any, selection: dict | None) -> np.ndarray:
    """``(n,)`` bool mask of the cells of a view: inside its viewport (all without one) and its selection
    (``{"kind", "xs", "ys"}``, read from the app's one mask cache)."""
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    mask = np.ones(len(cells), dtype=bool) if state.viewport is None else _inside(x, y, state.viewport)
    if selection is not None:
        mask = mask & context.masks.mask(state.dataset, _where(context, state), selection)
    return mask


def count_cells(context: ViewerContext, state: ViewState, selection: dict | None = None) -> int:
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
    ViewError
        Naming ``selection`` (too many cells) or ``genes`` (too many values).
    """
    from data_layer.analysis import export_cells_csv

    atlas = context.atlas
    where = _where(context, state)
    cells = atlas.cells(state.dataset, **where)
    mask = cells_mask(context, state, cells, options.selection)
    n_cells = int(np.count_nonzero(mask))
    if n_cells > MAX_EXPORT_CELLS:
        raise ViewError("selection", f"the view holds {n_cells:,} cells; an export is limited to "
                                              f"{MAX_EXPORT_CELLS:,} (zoom in or select)")
    if n_cells * len(options.genes) > MAX_EXPORT_VALUES:
        raise ViewError("genes", f"{n_cells:,} cells x {len(options.genes)} genes is over "
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


def export_filename(state: ViewState, kind: str, fmt: str, panels: str | None = None) -> str:
    """A safe download name: ``<dataset>_<section or plane>_<colour>.<fmt>`` (``kind`` = figure|cells; the colour
    is the level, the gene, or ``<gene>-<gene2>``);
    a figure of ``panels`` is ``species-side-by-side_<colour>`` or ``<dataset>_gallery_<colour>``."""
    parts = [state.dataset or "atlas", state.section or state.slab_plane or "umap"]
    if panels == "species":
        parts = ["species-side-by-side"]
    elif panels == "gallery":
        parts = [state.dataset or "atlas", "gallery"]
    if state.color_by == COLOR_BY_GENE and state.gene:
        parts.append(state.gene)
    elif state.color_by == COLOR_BY_TWO_GENES and state.gene and state.gene2:
        parts.append(f"{state.gene}-{state.gene2}")
    else:
        parts.append(state.color_by)
    if kind == "cells":
        parts.append("cells")
    name = "_".join(_UNSAFE.sub("-", str(p)).strip("-") for p in parts if p)
    return f"{name[:150]}.{fmt}"


# ---------------------------------------------------------------------------------------------- routes
def read_view(context: ViewerContext, args: dict[str, str], extra_keys: Sequence[str]) -> ViewState:
    """The view of a request, strictly (see :func:`core.state.strict_view`)."""
    return strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                       term_lookup=context.lookups.term_level, extra_keys=extra_keys)


def figure_request(context: ViewerContext, args: dict[str, str], fmt: str,
                   extra_keys: Sequence[str] = FIGURE_KEYS) -> tuple[ViewState, FigureOptions, PanelRequest | None]:
    """Parse a figure request strictly: the view, the options and the panels (None = the one view)."""
    state = read_view(context, args, extra_keys)
    options = figure_options(args, fmt=fmt, max_export_px=context.settings.max_export_px)
    request = panel_request(args, context.catalog, state, compare_datasets(context))
    return state, options, request


def figure_from_args(context: ViewerContext, args: dict[str, str], fmt: str,
                     extra_keys: Sequence[str] = FIGURE_KEYS) -> tuple[bytes, ViewState]:
    """Parse, render and return a figure of a request's parameters (the route's, the API's and the export
    panel's body): the one view, or with ``panels=species|gallery`` the side-by-side or gallery figure."""
    state, options, request = figure_request(context, args, fmt, extra_keys)
    if request is None:
        return render_figure(context, state, options), state
    return render_comparison(context, state, options, request), state


def cells_from_args(context: ViewerContext, args: dict[str, str], fmt: str) -> tuple[bytes, ViewState, int]:
    """Parse and export the cells of a request's parameters (the route's and the API's body)."""
    if fmt not in CELL_FORMATS:
        raise ViewError("format", f"{fmt[:20]!r} is not one of {', '.join(CELL_FORMATS)}")
    state = read_view(context, args, CELL_KEYS)
    entry = context.catalog.get(state.dataset)
    options = cell_options(args, state, fmt=fmt, gene_lookup=context.lookups.gene_symbol,
                           has_genes=entry.has_genes)
    data, n_cells = export_cells(context, state, options)
    return data, state, n_cells
