"""Figures of a view for papers: PNG, SVG and PDF, of the one view or of several panels.

* :func:`render_figure` draws a publication figure of a view: the cells are re-rendered at the figure's resolution
  through the ONE rendering path of the picture route (:func:`core.render.render_rgba`), then
  :func:`rendering.figures.export_figure` adds vector axes, scale bar, the legend of the categories VISIBLE in the
  view (in taxonomy order; those with the fewest cells counted in a "+ N more" line when they do not all fit),
  the colour bar or the two-gene 2-D colour key, title and species.
* A figure is built from a list of :class:`FigurePanel`: one (the map or the UMAP), or with ``panels=species`` /
  ``panels=gallery`` one per species side by side or per section of the gallery (:func:`render_comparison`).
  Their choice and colouring come from :mod:`core.compare` (as the views on screen), each panel is rendered by the
  same :func:`figure_panel`, and :func:`rendering.figures.export_panel_grid` lays them out at one scale with one
  legend, colour bar or two-gene key: more panels, not a second rendering path.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rendering.colors import GENE_KEY_ENTRIES, NUMERIC_KEY_ENTRIES

from core.compare import (compare_datasets, first_section, gallery_sections, hand_gene_range, shared_gene_range,
                          side_by_side_range, slot_colouring)
from core.context import ViewerContext
from core.render import (picture_dot_radius_px, render_rgba, shown_column_range, shown_gene_range,
                         two_gene_ranges)
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES
from core.errors import ViewError
from core.requests import MAX_FIGURE_PANELS, MIN_PANEL_PX, FigureOptions, PanelRequest
from core.picture import PictureRequest, view_picture
from core.state import ViewState
from core.viewport import Window, padded
from core.scope import highlight_mask, inside_window, view_window, where_of

log = logging.getLogger(__name__)

#: Colour map of gene pictures (the render route's default, also the legend's).
GENE_CMAP = "viridis"


# ---------------------------------------------------------------------------------------------- text
def plain_text(text: str | None) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so a title, a term or a gene name is never
    parsed as mathtext (``cost $5 and $10`` stays text; ``$\\foo$`` is no error)."""
    return "" if text is None else str(text).replace("$", "\\$")


def _plain_legend(legend: Sequence[tuple] | None) -> list[tuple]:
    return [(plain_text(item[0]), *item[1:]) for item in legend or ()]


def _notes(entries: Sequence[tuple[str, str]]) -> list[tuple]:
    """Legend notes (listed always, after the terms): ``(label, colour, None)``."""
    return [(label, colour, None) for label, colour in entries]


def _plain_colorbar(colorbar: tuple | None) -> tuple | None:
    return None if colorbar is None else (*colorbar[:3], plain_text(colorbar[3]))


def _plain_key(key: Any) -> Any:
    if key is None:
        return None
    return dataclasses.replace(key, gene_a=plain_text(key.gene_a), gene_b=plain_text(key.gene_b))


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
    """The categories drawn in a view and their cells (None for a gene, two-gene or numeric-column view)."""
    entry = context.catalog.get(state.dataset)
    if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) or entry is None or entry.is_numeric(state.color_by):
        return None
    atlas = context.atlas
    where = where_of(context, state)
    cells = atlas.cells(state.dataset, **where)
    column = cells[state.color_by]
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    inside = inside_window(x, y, window)
    highlight = highlight_mask(cells, state)
    shown = inside if highlight is None else inside & highlight
    codes = np.asarray(column.cat.codes, dtype=np.int64)[shown]
    categories = [str(name) for name in column.cat.categories]
    counts = np.bincount(codes[codes >= 0], minlength=len(categories))
    colors = list(atlas.colors(state.dataset, state.color_by))
    dimmed = bool(highlight is not None and np.any(inside & ~highlight))
    return LegendCounts(categories, colors, counts.astype(np.int64), dimmed)


def legend_entries(found: Sequence[LegendCounts], limit: int) -> list[tuple]:
    """ONE legend of one or several views: the categories with cells in any of them, in the taxonomy's order (the
    order of the column's categories, which follows the release's terms; a later view's own categories after the
    first's), each with its cells summed over the views (by name); the colour is the first view's. A dimmed rest
    ends it with one grey "other cells (dimmed)" note. Which terms a figure lists when they do not all fit (those
    with the most cells, at most ``limit``) is :func:`rendering.figures.plan_legend`'s to decide.

    Returns
    -------
    list of (label, ``#rrggbb``, n cells), then notes as (label, ``#rrggbb``, None); empty when ``limit <= 0``
    """
    from rendering.colors import DIM_GREY

    if limit <= 0:
        return []
    totals: dict[str, int] = {}
    colours: dict[str, str] = {}
    rank: dict[str, tuple[int, int]] = {}
    for index, item in enumerate(found):
        for position, (name, colour, count) in enumerate(zip(item.names, item.colors, item.counts)):
            rank.setdefault(name, (index, position))
            if count > 0:
                totals[name] = totals.get(name, 0) + int(count)
                colours.setdefault(name, colour)
    entries: list[tuple] = [(name, colours[name], totals[name]) for name in sorted(totals, key=rank.__getitem__)]
    if any(item.dimmed for item in found):
        entries.append(("other cells (dimmed)", DIM_GREY, None))
    return entries


def visible_legend(context: ViewerContext, state: ViewState, window: Window, limit: int) -> list[tuple]:
    """Legend of the categories drawn in the view, in taxonomy order with their cells (:func:`legend_entries`).

    Only cells inside ``window`` count (and, with a highlighted term, only its cells: the others are drawn
    dimmed, listed as one grey note).
    """
    if limit <= 0:
        return []
    found = legend_counts(context, state, window)
    return legend_entries([found], limit) if found is not None else []


def gene_colorbar(context: ViewerContext, picture: PictureRequest) -> tuple[str, float, float, str] | None:
    """``(cmap, vmin, vmax, label)`` of a gene or numeric-column picture (the range the picture was coloured
    over, :func:`core.render.shown_gene_range` / :func:`core.render.shown_column_range`), else None."""
    entry = context.catalog.get(picture.dataset)
    if entry is not None and entry.is_numeric(picture.color_by):
        vmin, vmax = shown_column_range(context, picture)
        return GENE_CMAP, float(vmin), float(vmax), column_colorbar_label(picture.color_by)
    if picture.color_by != COLOR_BY_GENE or not picture.gene:
        return None
    vmin, vmax = shown_gene_range(context, picture)
    return GENE_CMAP, float(vmin), float(vmax), f"{picture.gene} (log2 expression)"


def column_colorbar_label(column: str) -> str:
    """Label of a numeric cell column's colour bar: its name as the release writes it, and how its default range
    is chosen."""
    return f"{column} (range: 1st–99th percentile of cells)"


def key_entries(context: ViewerContext, state: ViewState) -> tuple:
    """The entries beside a colour bar: cells off the map (a gene's non-expressing and not measured cells, a
    numeric column's cells without a value)."""
    entry = context.catalog.get(state.dataset)
    return NUMERIC_KEY_ENTRIES if entry is not None and entry.is_numeric(state.color_by) else GENE_KEY_ENTRIES


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
        where = f"{entry.name} UMAP" + (f" of {state.embedding}" if state.embedding else "")
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
    outlines : tuple of core.outlines.RegionOutline
        The region outlines drawn over the cells, cut to the tissue and named (empty without them).
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
    outlines: tuple = ()


def panel_outlines(context: ViewerContext, state: ViewState, options: FigureOptions) -> tuple:
    """The region outlines a figure of ``state`` draws (``options.outlines``): those the map shows, the slab
    plane's cut to the section's (or the plane's) tissue (:func:`core.outlines.view_outlines`), names as plain
    text."""
    from core.outlines import figure_outlines, view_outlines

    entry = context.catalog.get(state.dataset)
    if not options.outlines or entry is None or not entry.spatial or not state.slab_plane:
        return ()
    found = figure_outlines(view_outlines(context, entry.name, state.slab_plane, state.section or None))
    return tuple(dataclasses.replace(outline, label=plain_text(outline.label)) for outline in found)


def figure_panel(context: ViewerContext, state: ViewState, options: FigureOptions, *,
                 max_px: int | None = None, window: Window | None = None, size_px: tuple[int, int] | None = None,
                 title: str | None = None, with_legend: bool = True, dot_radius_px: float | None = None,
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
    dot_radius_px : float, optional
        Dot radius of the cells; default from their density and size in the figure's raster
        (:func:`core.render.picture_dot_radius_px`).
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
    picture = view_picture(state, window, width_px, height_px, numeric=entry.is_numeric(state.color_by))
    rgba = render_rgba(context, picture, dot_radius_px=dot_radius_px, gene_ranges=gene_ranges)
    if title is None:
        title = auto_title(context, state) if options.title is None else options.title
    colorbar = gene_colorbar(context, picture)
    if not with_legend:
        legend = []
    elif colorbar is not None:  # the colours of the cells off the colour bar
        legend = _notes(key_entries(context, state))
    else:
        legend = visible_legend(context, state, window, options.legend_entries)
    return FigurePanel(
        rgba=rgba, window=window, y_down=entry.spatial, units="mm" if entry.spatial else "",
        title=title, species=entry.species or "", legend=legend, colorbar=colorbar,
        two_gene_key=picture_two_gene_key(context, picture, gene_ranges),
        outlines=panel_outlines(context, state, options),
    )


def compose_figure(panels: Sequence[FigurePanel], options: FigureOptions, grid: Any = None) -> bytes:
    """The figure file of ``panels`` (:func:`figure_of` saved as ``options.fmt``)."""
    from rendering.figures import save_figure

    figure = figure_of(panels, options, grid)
    title = grid.heading if grid is not None else plain_text(panels[0].title)
    return save_figure(figure, options.fmt, options.dpi, title)


def figure_of(panels: Sequence[FigurePanel], options: FigureOptions, grid: Any = None) -> Any:
    """The matplotlib figure of ``panels``: one view, or several laid out by ``grid``.

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
    from rendering.figures import build_figure, build_panel_grid
    from rendering.raster import Viewport

    if grid is not None:
        if len(panels) != len(grid.geometry.boxes):
            raise ViewError("panels", f"{len(panels)} pictures for a grid of {len(grid.geometry.boxes)}")
        return build_panel_grid([p.rgba for p in panels], [p.window for p in panels], grid, fmt=options.fmt,
                                dpi=options.dpi, y_down=all(p.y_down for p in panels),
                                outlines=[p.outlines for p in panels])
    if len(panels) != 1:
        raise ViewError("panels", f"a figure of {len(panels)} views needs a panel grid")
    panel = panels[0]
    height, width = panel.rgba.shape[:2]
    viewport = Viewport(*panel.window, width, height, max_px=max(width, height))
    return build_figure(
        panel.rgba, viewport, fmt=options.fmt, width_in=options.width_in, height_in=options.height_in,
        dpi=options.dpi, title=plain_text(panel.title), species=plain_text(panel.species),
        legend=_plain_legend(panel.legend) or None, colorbar=_plain_colorbar(panel.colorbar), y_down=panel.y_down,
        units=panel.units, two_gene_key=_plain_key(panel.two_gene_key), legend_limit=options.legend_entries,
        outlines=panel.outlines,
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
    by_gene = colouring.color_by == COLOR_BY_GENE or entry.is_numeric(colouring.color_by)
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
      species); a gene (or a numeric cell column) on ONE range for all, the maps' (``side_by_side_range``): the
      range set by hand (``vmin``/``vmax``, genes only), else from the lowest default low end to the highest
      default high end over the species measuring it.
      Two genes likewise: each gene on one range over the species whose panel draws both (one 2-D key).
    * ``gallery``: every section of the view's dataset (``gallery_sections``), coloured like the map (any level's
      term); a gene on the range set by hand, else the DATASET's default range (one range for all sections); two
      genes on their dataset default ranges.
    """

    term = {"level": state.term_level, "name": state.term} if state.term and state.term_level else None
    views = []
    if request.kind == "species":
        datasets = compare_datasets(context)
        colourings = [slot_colouring(context, dataset, state.color_by, state.gene, term, _two_genes(state))
                      for dataset in datasets]
        gene_range = side_by_side_range(context, datasets, state.color_by, state.gene, state.vmin, state.vmax)
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
    gene_range = None if entry.is_numeric(colouring.color_by) else hand_gene_range(state.vmin, state.vmax)
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
    visible in any panel (taxonomy order), ONE colour bar or ONE two-gene key (the ranges of
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
        numeric = context.catalog.get(view.state.dataset).is_numeric(view.state.color_by)
        colorbar = gene_colorbar(context, view_picture(view.state, view.window, 1, 1, numeric=numeric))
        if colorbar is not None:
            legend = [*legend, *_notes(key_entries(context, view.state))]  # the cells off the colour bar
            break
    key = next((picture_two_gene_key(context, view_picture(v.state, v.window, 1, 1), v.gene_ranges) for v in views
                if v.state.color_by == COLOR_BY_TWO_GENES), None)
    heading = comparison_title(context, state, request, len(views)) if options.title is None else options.title
    species = ""
    if request.kind == "gallery":
        species = context.catalog.get(state.dataset).species or ""
    grid = plan_panel_grid(
        [(v.window.width, v.window.height) for v in views], [plain_text(v.title) for v in views],
        width_in=options.width_in, height_in=options.height_in, dpi=options.dpi, heading=plain_text(heading),
        species=plain_text(species), legend=_plain_legend(legend), colorbar=_plain_colorbar(colorbar),
        n_cols=len(views) if request.kind == "species" else None, two_gene_key=_plain_key(key),
        legend_limit=options.legend_entries,
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


def comparison_dot_radius_px(context: ViewerContext, views: Sequence[PanelView],
                             sizes: Sequence[tuple[int, int]]) -> float:
    """One dot radius for every panel of a comparison figure: the panels share one scale, so one radius in
    pixels is one cell size in mm on paper. It is the largest of the panels' own (density) radii: the sparsest
    panel's cells meet their neighbours, the denser panels read as solid tissue instead of scattered pixels."""
    radii = [picture_dot_radius_px(context, view_picture(view.state, view.window, *size))
             for view, size in zip(views, sizes) if min(size) > 0]
    return max(radii, default=0.0)


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
    radius = comparison_dot_radius_px(context, plan.views, sizes)
    panels = [figure_panel(context, view.state, options, window=view.window, size_px=size, title=view.title,
                           with_legend=False, dot_radius_px=radius, gene_ranges=view.gene_ranges)
              for view, size in zip(plan.views, sizes)]
    return compose_figure(panels, options, plan.grid)


