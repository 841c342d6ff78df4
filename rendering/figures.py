"""Publication figures: a cell picture with axes in mm, scale bar, legend or colour bar, title and species.

The cells are ONE embedded raster (``imshow`` with the viewport as extent, no resampling in vector formats);
everything else (axes, ticks, scale bar, legend, colour bar labels, title, species) is vector text and lines,
so a journal figure can be edited in Illustrator/Inkscape: SVG keeps text as ``<text>`` (``svg.fonttype =
'none'``) and PDF embeds TrueType fonts (``pdf.fonttype = 42``).

A figure of several pictures (species side by side, a section gallery) is laid out by :func:`plan_panel_grid` and
drawn by :func:`export_panel_grid`: one raster per panel, each titled and with its own scale bar, ONE legend,
colour bar or two-gene key for all. Every panel is drawn at the SAME scale (inches per mm), not stretched to the
same size: a macaque section then looks smaller than a human one, as it is, and one scale bar length reads the same
on every panel, which is what a paper comparing tissue needs (equal extents would give each panel its own
magnification).
Panels carry no tick axes: slab coordinates differ between species and sections, and the scale bars (one length
for all, each hanging under its panel's lower right corner, off the tissue) give the size.

Legends of hundreds of categories (a cluster level) are planned by :func:`plan_legend`: in the taxonomy's order,
beside the picture or in columns under it, whichever leaves the cells the larger part of the figure; the font
shrinks down to :data:`LEGEND_PT_STEPS`' smallest and, when even then not every term fits, the terms with the fewest
cells are counted in one "+ N more" line. A one-picture figure's scale bar goes in the picture's corner with the
fewest cells, its label on a small box of the page's colour.

A two-gene picture (:mod:`rendering.blend`) gets a 2-D colour key where a gene picture gets its colour bar
(:class:`TwoGeneKey`): a small square raster of the SAME colour table the cells were drawn with (gene A low to high
left to right, gene B bottom to top), vector axis labels naming both genes and the ranges the picture used, and in
the "both above thresholds" mode the thresholds (grey below them in the square, a dashed line and a note).

The raster is drawn as given: the caller re-renders the cells at the export resolution first (see
:func:`export_raster_px` for the size to ask :mod:`rendering.raster` for), otherwise a 1000-pixel screen picture
is stretched over a 300-dpi figure.

Only matplotlib's object API is used (``Figure`` + ``FigureCanvasAgg``, never ``pyplot``), so no global figure
manager is touched; the few rcParams that only exist globally (font types, PDF compression) are set inside
``rc_context`` under a module lock, so concurrent exports in a threaded server do not see each other's settings.
"""
from __future__ import annotations

import io
import logging
import math
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rendering.blend import DEFAULT_THEME, MODES, legend_2d_rgba
from rendering.colors import cmap_lut, parse_hex
from rendering.raster import Viewport

logger = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")
#: Bounds of an export request (a request cannot ask for a 100,000-pixel picture).
MIN_DPI, MAX_DPI = 50, 1200
MAX_FIGURE_PX = 12_000
MAX_SIZE_IN = 40.0
_RC_LOCK = threading.Lock()


def export_raster_px(
    viewport: Viewport, width_in: float, height_in: float, dpi: float, *, max_px: int = MAX_FIGURE_PX
) -> tuple[int, int]:
    """Picture size to render before :func:`export_figure`: the viewport's aspect, as large as the figure.

    The cells' axes take only part of the figure (legend, labels), so a raster as large as the whole figure in
    pixels is never upsampled on paper.

    Returns
    -------
    tuple of int
        ``(width_px, height_px)``, each ``<= max_px``.
    """
    figure_w = width_in * dpi
    figure_h = height_in * dpi
    aspect = (viewport.x1 - viewport.x0) / (viewport.y1 - viewport.y0)  # data units are equal on both axes
    width_px = min(figure_w, figure_h * aspect)
    height_px = width_px / aspect
    scale = min(1.0, max_px / max(width_px, height_px))
    return max(1, int(round(width_px * scale))), max(1, int(round(height_px * scale)))


def _nice_scale_bar_mm(span_mm: float) -> float:
    """Largest 1/2/5 x 10^k length not above a fifth of the span."""
    target = span_mm / 5.0
    exponent = math.floor(math.log10(target))
    for mantissa in (5.0, 2.0, 1.0):
        length = mantissa * 10.0**exponent
        if length <= target:
            return length
    return 10.0**exponent  # pragma: no cover - unreachable: 1 x 10^floor(log10(t)) <= t


def _scale_bar_label(length_mm: float) -> str:
    if length_mm >= 1.0:
        return f"{length_mm:g} mm"
    return f"{length_mm * 1000:g} µm"


def _listed_cmap(name: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap(cmap_lut(name)[:, :3] / 255.0, name=name)


def _validate(rgba, fmt, width_in, height_in, dpi) -> np.ndarray:
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"export_figure needs an (H, W, 4) uint8 picture, got shape {rgba.shape} dtype {rgba.dtype}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} must be one of {FORMATS}")
    for name, value in (("width_in", width_in), ("height_in", height_in)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_SIZE_IN):
            raise ValueError(f"{name}={value!r} must be a size in inches in (0, {MAX_SIZE_IN:g}]")
    if not (isinstance(dpi, (int, float)) and MIN_DPI <= dpi <= MAX_DPI):
        raise ValueError(f"dpi={dpi!r} must be between {MIN_DPI} and {MAX_DPI}")
    for name, inches in (("width_in", width_in), ("height_in", height_in)):
        if inches * dpi > MAX_FIGURE_PX:
            raise ValueError(f"{name}={inches!r} at dpi={dpi!r} is {inches * dpi:.0f} px, over {MAX_FIGURE_PX} px")
    return rgba


# ---------------------------------------------------------------------------------------------- legends
#: Legend entries a figure lists at most (a request's bound); past them, and past what fits, the terms with the
#: fewest cells are left out and counted in one "+ N more" line.
MAX_LEGEND_ENTRIES = 400
#: Font sizes (points) a legend may use: the largest at which every entry fits, down to the smallest.
LEGEND_PT_STEPS = (7.0, 6.5, 6.0, 5.5, 5.0, 4.5)
#: Largest share of the figure a legend takes: of its height under the picture, of its width beside it.
LEGEND_BELOW_SHARE = 0.36
LEGEND_RIGHT_SHARE = 0.33
#: Legend geometry in font sizes, as :func:`_draw_legend` draws it.
_HANDLE_EM, _HANDLE_PAD_EM, _COLUMN_GAP_EM, _LABEL_GAP_EM = 1.0, 0.5, 1.2, 0.35
#: Colour of the "+ N more" line (drawn without a swatch).
MORE_COLOUR = "none"


def more_label(n: int) -> str:
    """The line counting the ``n`` terms a legend leaves out."""
    return f"+ {n:,} more with fewer cells"


@dataclass(frozen=True)
class LegendPlan:
    """How a figure's legend is drawn (:func:`plan_legend`).

    Attributes
    ----------
    entries : tuple of (label, colour)
        What is listed, in order: the kept terms in the order given (the taxonomy's), a "+ N more" line
        (colour :data:`MORE_COLOUR`) when terms were left out, then the notes (entries given with a ``None``
        count: "other cells (dimmed)", the gene key's colours).
    fontsize : float
    ncols : int
    below : bool
        Under the picture (columns across the figure) rather than beside it.
    width_in, height_in : float
        Its size as drawn.
    n_terms, n_left_out : int
        Terms listed, terms left out.
    """

    entries: tuple
    fontsize: float
    ncols: int
    below: bool
    width_in: float
    height_in: float
    n_terms: int = 0
    n_left_out: int = 0


def _split_legend(legend: Sequence[tuple]) -> tuple[list, list]:
    """``(terms, notes)`` of legend items: ``(label, colour, n cells)`` and ``(label, colour)`` are terms (the
    latter ranked by their place, before any counted one), ``(label, colour, None)`` are notes."""
    terms, notes = [], []
    for item in legend:
        if len(item) >= 3 and item[2] is None:
            notes.append((str(item[0]), str(item[1])))
        else:
            terms.append((str(item[0]), str(item[1]), float(item[2]) if len(item) >= 3 else math.inf))
    return terms, notes


def _kept_entries(terms: list, notes: list, keep: int) -> tuple:
    """The ``keep`` terms with the most cells (in their given order), a "+ N more" line, the notes."""
    keep = max(0, min(keep, len(terms)))
    ranked = sorted(range(len(terms)), key=lambda i: -terms[i][2])[:keep]  # stable: ties keep the given order
    entries = [(terms[i][0], terms[i][1]) for i in sorted(ranked)]
    if keep < len(terms):
        entries.append((more_label(len(terms) - keep), MORE_COLOUR))
    return tuple(entries + notes)


def _widest_in(figure, renderer, labels: Sequence[str], fontsize: float) -> float:
    """Width (inches) of the widest of ``labels`` at ``fontsize`` (one text artist measures them all)."""
    if not labels:
        return 0.0
    artist = figure.text(0, 0, "", fontsize=fontsize)
    widest = 0.0
    for label in labels:
        artist.set_text(label)
        widest = max(widest, float(artist.get_window_extent(renderer).width))
    artist.remove()
    return widest / figure.dpi


def _legend_size_in(figure, renderer, entries: Sequence[tuple[str, str]], fontsize: float,
                    ncols: int) -> tuple[float, float]:
    drawn = _draw_legend(figure, entries, ncols, (0.0, 0.0), fontsize=fontsize)
    box = drawn.get_window_extent(renderer)
    drawn.remove()
    return float(box.width / figure.dpi), float(box.height / figure.dpi)


def plan_legend(figure, renderer, legend: Sequence[tuple], *, max_width_in: float, max_height_in: float,
                below: bool, limit: int = MAX_LEGEND_ENTRIES) -> LegendPlan:
    """Fit a legend into ``max_width_in`` x ``max_height_in`` inches.

    At the largest font of :data:`LEGEND_PT_STEPS` at which every term fits; failing that, at the smallest, the
    terms with the most cells that fit, still in their given (taxonomy) order, and a "+ N more" line counting the
    rest. Under the picture the legend takes as many columns as the width holds (as low as it can be); beside it
    as few as the height needs (as narrow as it can be).

    Parameters
    ----------
    legend : sequence of (label, colour, count), (label, colour) or (label, colour, None)
        Terms with their cells (or without: kept first, by their place), in the order to list them; notes
        (``None`` for a count: "other cells (dimmed)", a gene key's colours) are listed last, always.
    below : bool
        The box lies under the picture rather than beside it.
    limit : int
        Most terms listed (at most :data:`MAX_LEGEND_ENTRIES`).

    Returns
    -------
    LegendPlan
        Measured with ``renderer``, at the figure's dpi.
    """
    terms, notes = _split_legend(legend)
    limit = max(0, min(int(limit), MAX_LEGEND_ENTRIES))
    longest = _widest_in(figure, renderer, [label for label, *_ in terms + notes], 10.0)
    text_h = _text_size_in(figure, renderer, "Ag", 10.0)[1]

    def estimate(points: float, n_entries: int) -> tuple[int, int]:
        """``(ncols, capacity)`` for ``n_entries`` at ``points`` (the longest label sets every column)."""
        em = points / 72.0
        column = longest * points / 10.0 + (_HANDLE_EM + _HANDLE_PAD_EM + _COLUMN_GAP_EM) * em
        row = max(_HANDLE_EM * em, text_h * points / 10.0) + _LABEL_GAP_EM * em
        most_cols = max(1, int((max_width_in + _COLUMN_GAP_EM * em) // column))
        rows = max(1, int((max_height_in + _LABEL_GAP_EM * em) // row))
        if below:
            return min(most_cols, max(1, n_entries)), most_cols * rows
        return min(most_cols, max(1, math.ceil(n_entries / rows))), most_cols * rows

    def measured(entries: tuple, points: float, ncols: int) -> tuple[int, float, float]:
        width, height = _legend_size_in(figure, renderer, entries, points, ncols)
        while ncols > 1 and width > max_width_in:  # the estimate is an upper bound; this is for odd fonts
            ncols -= 1
            width, height = _legend_size_in(figure, renderer, entries, points, ncols)
        if not below:  # beside: as few columns as the height allows
            while ncols > 1:
                w2, h2 = _legend_size_in(figure, renderer, entries, points, ncols - 1)
                if h2 > max_height_in:
                    break
                ncols, width, height = ncols - 1, w2, h2
        return ncols, width, height

    keep = min(limit, len(terms))
    for points in LEGEND_PT_STEPS:
        entries = _kept_entries(terms, notes, keep)
        ncols, capacity = estimate(points, len(entries))
        if len(entries) <= capacity or points == LEGEND_PT_STEPS[-1]:
            break
    if len(entries) > capacity:  # the smallest font does not hold them all: the most frequent terms that fit
        keep = max(0, min(keep, capacity - len(notes) - 1))
        entries = _kept_entries(terms, notes, keep)
        ncols, _ = estimate(points, len(entries))
    ncols, width, height = measured(entries, points, ncols)
    while keep > 0 and (height > max_height_in or width > max_width_in):
        if ncols == 1 and width > max_width_in and height <= max_height_in:
            break  # one column of names longer than the box: drawn as they are
        keep = max(0, keep - max(1, ncols))
        entries = _kept_entries(terms, notes, keep)
        ncols, width, height = measured(entries, points, estimate(points, len(entries))[0])
    return LegendPlan(entries, points, ncols, below, width, height, keep, len(terms) - keep)


def _legend_handles(entries: Sequence[tuple[str, str]]) -> list:
    """Colour patches of planned legend entries (none for the "+ N more" line)."""
    from matplotlib.patches import Patch

    return [Patch(facecolor="none" if colour == MORE_COLOUR else np.asarray(parse_hex(colour)) / 255.0,
                  edgecolor="none", label=str(label)) for label, colour in entries]


def _draw_legend(figure, entries: Sequence[tuple[str, str]], ncols: int, anchor: tuple[float, float], *,
                 fontsize: float = 7.0, loc: str = "upper right"):
    """The legend at ``anchor`` (inches from the figure's lower left; ``loc`` names the corner it is)."""
    width_in, height_in = figure.get_size_inches()
    return figure.legend(handles=_legend_handles(entries), loc=loc, fontsize=fontsize, frameon=False, ncols=ncols,
                         handlelength=_HANDLE_EM, handleheight=_HANDLE_EM, handletextpad=_HANDLE_PAD_EM,
                         columnspacing=_COLUMN_GAP_EM, labelspacing=_LABEL_GAP_EM, borderaxespad=0.0,
                         borderpad=0.0, bbox_to_anchor=(anchor[0] / width_in, anchor[1] / height_in),
                         bbox_transform=figure.transFigure)


def _picture_area_in2(box_w: float, box_h: float, aspect: float) -> float:
    """Area (square inches) of a picture of width/height ``aspect`` fitted into ``box_w`` x ``box_h``."""
    if box_w <= 0 or box_h <= 0:
        return 0.0
    width = min(box_w, box_h * aspect)
    return width * width / aspect


def better_legend(beside: tuple[LegendPlan, float], below: tuple[LegendPlan, float]) -> LegendPlan:
    """Of two ``(plan, picture size)`` options the one leaving the larger picture; but the one listing more terms
    when its picture is at least 80 % as large (a legend naming every term is worth a little room)."""
    (plan_a, size_a), (plan_b, size_b) = beside, below
    if plan_a.n_left_out != plan_b.n_left_out:
        fuller, other = ((plan_a, size_a), (plan_b, size_b)) if plan_a.n_left_out < plan_b.n_left_out else (
            (plan_b, size_b), (plan_a, size_a))
        if fuller[1] >= 0.8 * other[1]:
            return fuller[0]
        return other[0]
    return plan_a if size_a >= size_b else plan_b


#: Room the axes' tick labels and axis labels take left of and under the picture (inches), and a heading's height.
_AXIS_W_IN, _AXIS_H_IN, _HEADING_IN = 0.55, 0.45, 0.3


def plan_figure_legend(figure, legend: Sequence[tuple], *, aspect: float, heading: bool, show_axes: bool,
                       band_in: float = 0.0, limit: int = MAX_LEGEND_ENTRIES) -> LegendPlan:
    """The legend of a one-picture figure (:func:`export_figure`): beside the picture (at most
    :data:`LEGEND_RIGHT_SHARE` of the width) or in columns under it (at most :data:`LEGEND_BELOW_SHARE` of the
    height), whichever leaves the picture of width/height ``aspect`` larger (:func:`better_legend`).

    ``band_in`` is the width a colour bar or two-gene key takes at the right.
    """
    renderer = figure.canvas.get_renderer()
    width_in, height_in = figure.get_size_inches()
    pad, gap = FIGURE_PAD_IN, PANEL_GAP_IN
    box_w = width_in - 2 * pad - band_in - (_AXIS_W_IN if show_axes else 0.0)
    box_h = height_in - 2 * pad - (_HEADING_IN if heading else 0.0) - (_AXIS_H_IN if show_axes else 0.0)
    beside = plan_legend(figure, renderer, legend, max_width_in=LEGEND_RIGHT_SHARE * box_w,
                         max_height_in=height_in - 2 * pad - (_HEADING_IN if heading else 0.0), below=False,
                         limit=limit)
    below = plan_legend(figure, renderer, legend, max_width_in=width_in - 2 * pad,
                        max_height_in=LEGEND_BELOW_SHARE * height_in, below=True, limit=limit)
    return better_legend((beside, _picture_area_in2(box_w - beside.width_in - gap, box_h, aspect)),
                         (below, _picture_area_in2(box_w, box_h - below.height_in - gap, aspect)))


#: Corners a scale bar may take, the first preferred on a tie.
_CORNERS = ("lower right", "lower left", "upper right", "upper left")


def _painted(rgba: np.ndarray) -> np.ndarray:
    """Pixels with cells drawn: not transparent and not (near) white."""
    return (rgba[..., 3] > 0) & (rgba[..., :3].min(axis=2) < 245)


def emptiest_corner(occupied: np.ndarray, width_share: float, height_share: float) -> str:
    """The corner of a grid (row 0 at the top as displayed) whose ``width_share`` x ``height_share`` box holds
    the smallest share of ``occupied`` squares, the first of :data:`_CORNERS` on a tie: where a scale bar and its
    label sit off the tissue. The figure's picture (:func:`_scale_bar_corner`) and the map on screen
    (``core.scope.scale_bar_corner``, a grid of the cells' positions) use this one rule.

    Parameters
    ----------
    occupied : numpy.ndarray
        ``(rows, cols)`` bool (or counts) grid over the picture.
    width_share, height_share : float
        The box's share of the grid's width and height (clipped to 1).

    Returns
    -------
    str
        One of ``"lower right"``, ``"lower left"``, ``"upper right"``, ``"upper left"``.
    """
    occupied = np.asarray(occupied)
    height, width = occupied.shape[:2]
    box_w, box_h = max(1, int(width * min(1.0, width_share))), max(1, int(height * min(1.0, height_share)))
    boxes = {"lower right": occupied[height - box_h:, width - box_w:], "lower left": occupied[height - box_h:, :box_w],
             "upper right": occupied[:box_h, width - box_w:], "upper left": occupied[:box_h, :box_w]}
    return min(_CORNERS, key=lambda corner: float(boxes[corner].mean()))


def _scale_bar_corner(rgba: np.ndarray, width_share: float, height_share: float) -> str:
    """The corner of the picture whose ``width_share`` x ``height_share`` box holds the fewest drawn cells (the
    scale bar and its label go there, off the tissue)."""
    return emptiest_corner(_painted(rgba), width_share, height_share)


def _bar_colour(rgba: np.ndarray, corner: str = "lower right") -> str:
    """``"black"``, or ``"white"`` when the picture's ``corner`` (where the scale bar goes) is dark, as a
    two-gene picture's black background is (transparent pixels count as the white page)."""
    height, width = rgba.shape[:2]
    rows = slice(height - max(1, height // 5), None) if corner.startswith("lower") else slice(0, max(1, height // 5))
    cols = slice(width - max(1, width // 3), None) if corner.endswith("right") else slice(0, max(1, width // 3))
    corner_px = rgba[rows, cols].astype(np.float32)
    alpha = corner_px[..., 3:4] / 255.0
    shown = corner_px[..., :3] * alpha + 255.0 * (1.0 - alpha)
    luminance = float(np.mean(shown @ np.array([0.299, 0.587, 0.114], dtype=np.float32)))
    return "white" if luminance < 110 else "black"


def _add_scale_bar(axes, length: float, fontsize: float = 8, pad: float = 0.6, color: str | None = None,
                   rgba: np.ndarray | None = None):
    """A ``length`` (data units, mm) bar labelled in mm or µm, in the corner of ``axes`` with the fewest cells of
    ``rgba`` (the picture drawn in it; lower right without one), its label on a box of the page's colour so it
    reads even where a cell lies under it."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    corner = "lower right"
    if rgba is not None:
        x0, x1 = axes.get_xlim()
        share = abs(length / (x1 - x0)) if x1 != x0 else 0.2
        bbox = axes.get_window_extent()
        label_share = 2.6 * fontsize / 72.0 * axes.figure.dpi / max(1.0, bbox.height)
        corner = _scale_bar_corner(rgba, share + 0.08, label_share + 0.06)
    if color is None:
        color = _bar_colour(rgba, corner) if rgba is not None else "black"
    bar = AnchoredSizeBar(axes.transData, length, _scale_bar_label(length), loc=corner, frameon=False,
                          size_vertical=0, pad=pad, sep=3 if fontsize >= 8 else 2, color=color,
                          fontproperties={"size": fontsize})
    backing = {"facecolor": "black" if color == "white" else "white", "alpha": 0.75, "edgecolor": "none",
               "boxstyle": "round,pad=0.15"}
    for text in bar.txt_label.get_children():  # a box, not a stroke: path effects would turn the text into paths
        text.set_bbox(backing)
    axes.add_artist(bar)
    return bar


#: Region outlines in figures: line width and name size (points).
OUTLINE_LINE_PT, OUTLINE_NAME_PT = 0.8, 6.5
#: Region names in the panels of a comparison figure (smaller pictures).
PANEL_OUTLINE_NAME_PT = 5.0


def draw_outlines(axes, outlines: Sequence, fontsize: float = OUTLINE_NAME_PT, gid: str = "region-outline") -> list:
    """Region outlines over the cells of ``axes``: one ``LineCollection`` per region in its colour (vector lines,
    clipped to the axes), its name (the colour darkened, so pale outlines still read) at its ``name_xy`` on a
    light box edged in the outline's colour, when that point is in view.

    Parameters
    ----------
    outlines : sequence
        Objects with ``label`` (str), ``color`` (``#rrggbb``), ``rings`` (``(k, 2)`` arrays in data units) and
        ``name_xy`` (``(x, y)`` or None), e.g. ``core.outlines.RegionOutline``; labels are drawn as given (pass
        plain text).
    gid : str
        Start of the collections' ids (``<g id=...>`` in an SVG; unique per panel of a figure).

    Returns
    -------
    list
        The artists added (collections and texts).
    """
    from matplotlib.collections import LineCollection

    x_lo, x_hi = sorted(axes.get_xlim())
    y_lo, y_hi = sorted(axes.get_ylim())
    artists = []
    for outline in outlines or ():
        if not outline.rings:
            continue
        lines = LineCollection(list(outline.rings), colors=outline.color, linewidths=OUTLINE_LINE_PT, zorder=2,
                               label=outline.label)
        lines.set_gid(f"{gid}-{len(artists)}")
        axes.add_collection(lines, autolim=False)
        artists.append(lines)
        if outline.name_xy is not None:
            x, y = outline.name_xy
            if x_lo <= x <= x_hi and y_lo <= y <= y_hi:
                artists.append(axes.text(x, y, outline.label, color=_darker(outline.color), fontsize=fontsize,
                                         fontweight="bold", ha="center", va="center", zorder=3, clip_on=True,
                                         bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": outline.color,
                                               "linewidth": 0.5, "boxstyle": "round,pad=0.15"}))
    return artists


def _darker(colour: str, share: float = 0.45) -> str:
    """``colour`` mixed with ``share`` of black: a pale outline colour still reads as text on white."""
    try:
        red, green, blue = parse_hex(colour)[:3]
    except (ValueError, TypeError):
        return "black"
    return "#" + "".join(f"{int(round(v * (1.0 - share))):02x}" for v in (red, green, blue))


def _add_scale_bar_under(axes, length: float, fontsize: float = 6.5):
    """A ``length`` (mm) scale bar hanging under the lower right corner of ``axes`` (in the room a panel grid keeps
    there), its label under it: never on the tissue."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar = AnchoredSizeBar(axes.transData, length, _scale_bar_label(length), loc="upper right", frameon=False,
                          size_vertical=0, pad=0.0, borderpad=0.0, sep=2, color="black",
                          fontproperties={"size": fontsize}, bbox_to_anchor=(1.0, -0.02),
                          bbox_transform=axes.transAxes)
    bar.set_clip_on(False)
    axes.add_artist(bar)
    return bar


def _colorbar_mappable(colorbar: tuple[str, float, float, str]):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap_name, vmin, vmax, _ = colorbar
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"colorbar range vmin={vmin!r}, vmax={vmax!r} must be finite with vmin < vmax")
    return ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=_listed_cmap(cmap_name))


def save_figure(figure, fmt: str, dpi: float, title: str) -> bytes:
    """The figure as ``fmt`` bytes: vector text in SVG/PDF, reproducible metadata, white background."""
    import matplotlib

    metadata = {"png": {"Software": "abc-atlas-viewer"},
                "svg": {"Date": None, "Creator": "abc-atlas-viewer"},
                "pdf": {"CreationDate": None, "Creator": "abc-atlas-viewer"}}[fmt]
    if title:
        metadata["Title"] = title
    buffer = io.BytesIO()
    with _RC_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "atlas"}):
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, facecolor="white")
    return buffer.getvalue()


def _keep_labels_inside(figure, axes, pad_in: float = 3 / 72) -> None:
    """Lay the figure out, and if the axes' labels stick out on the left or bottom, shrink the axes to fit.

    Constrained layout is not exact for an equal-aspect axes squeezed both by a figure legend outside and by the
    heading: a near-square UMAP with a two-column legend put its y label a few pixels left of the figure. The
    positions found are then frozen (layout engine "none") with the axes moved in by the overflow.
    """
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    width_in, height_in = figure.get_size_inches()
    box = axes.get_tightbbox(renderer).transformed(figure.dpi_scale_trans.inverted())
    left, bottom = max(0.0, pad_in - box.x0), max(0.0, pad_in - box.y0)
    if left == 0.0 and bottom == 0.0:
        return
    figure.set_layout_engine("none")
    position = axes.get_position(original=True)
    axes.set_position([position.x0 + left / width_in, position.y0 + bottom / height_in,
                       position.width - left / width_in, position.height - bottom / height_in])


# ---------------------------------------------------------------------------------------------- two-gene key
#: Font sizes (points) of the 2-D colour key: heading, gene symbols, range ends, threshold note.
KEY_HEADING_PT = 7.5
KEY_LABEL_PT = 8.0
KEY_TICK_PT = 7.0
KEY_NOTE_PT = 6.5
#: Side of the key's square (inches): at most, at least; between them a share of the figure (see _key_side_in).
KEY_MAX_IN = 1.1
KEY_MIN_IN = 0.55
#: Space between the picture (or the panels) and the key's labels (inches).
KEY_GAP_IN = 0.15


def _key_number(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class TwoGeneKey:
    """The 2-D colour key of a two-gene picture (:func:`rendering.blend.render_two_genes`) in a figure.

    Attributes
    ----------
    gene_a, gene_b : str
        Gene symbols: gene A along x (the picture's first gene), gene B along y.
    range_a, range_b : (float, float)
        The ranges the picture was coloured over (log2 expression): low end = channel off, high end = full.
    mode : {"blend", "both"}
        ``"both"``: only cells with ``value_a > threshold_a`` and ``value_b > threshold_b`` are coloured.
    threshold_a, threshold_b : float
    theme : str
        The picture's blend theme (:data:`rendering.blend.DEFAULT_THEME` for the viewer's pictures).
    """

    gene_a: str
    gene_b: str
    range_a: tuple[float, float]
    range_b: tuple[float, float]
    mode: str = "blend"
    threshold_a: float = 0.0
    threshold_b: float = 0.0
    theme: str = DEFAULT_THEME

    def __post_init__(self) -> None:
        for name in ("range_a", "range_b"):
            low, high = (float(v) for v in getattr(self, name))
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"two-gene key {name}=({low!r}, {high!r}) must be finite with low < high")
            object.__setattr__(self, name, (low, high))
        if self.mode not in MODES:
            raise ValueError(f"two-gene key mode={self.mode!r} must be one of {MODES}")

    def rgba(self, size_px: int) -> np.ndarray:
        """The key's square (:func:`rendering.blend.legend_2d_rgba`: the picture's own colour table).

        Returns
        -------
        numpy.ndarray
            ``(size_px, size_px, 4)`` uint8, row 0 = top = gene B high, column 0 = gene A low.
        """
        return legend_2d_rgba(size_px, self.theme, mode=self.mode, range_a=self.range_a, range_b=self.range_b,
                              threshold_a=self.threshold_a, threshold_b=self.threshold_b)

    @property
    def note(self) -> str:
        """What the "both" mode colours (the picture draws every other cell flat grey); empty for a blend."""
        if self.mode != "both":
            return ""
        nbsp = "\u00a0"  # a condition is never broken over two lines
        return (f"Coloured: cells with {self.gene_a}{nbsp}>{nbsp}{self.threshold_a:g} and "
                f"{self.gene_b}{nbsp}>{nbsp}{self.threshold_b:g}; all other cells grey")


def _key_side_in(width_in: float, height_in: float) -> float:
    """Side of the key's square: a fifth of a narrow figure's width, :data:`KEY_MAX_IN` on a wide one."""
    return min(KEY_MAX_IN, max(KEY_MIN_IN, min(0.18 * width_in, 0.4 * height_in)))


def _wrap(figure, renderer, text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines no wider than ``width_in`` (measured), at least 12 characters a line."""
    for chars in range(len(text), 11, -1):
        wrapped = textwrap.fill(text, chars)
        if _text_size_in(figure, renderer, wrapped, fontsize)[0] <= width_in:
            return wrapped
    return textwrap.fill(text, 12)


def _draw_two_gene_key(figure, key: TwoGeneKey, side_in: float, dpi: float):
    """Draw ``key`` as an axes of ``side_in`` inches square at the figure's lower left (move it with
    :func:`_place_key`): the square, the range ends as ticks, the genes as axis labels, a heading, and in "both"
    mode the thresholds as dashed lines and a note under the x label. Not managed by a layout engine."""
    width_in, height_in = figure.get_size_inches()
    axes = figure.add_axes((0.0, 0.0, side_in / width_in, side_in / height_in))
    axes.set_in_layout(False)
    (low_a, high_a), (low_b, high_b) = key.range_a, key.range_b
    size_px = int(min(2048, max(64, round(side_in * dpi))))
    axes.imshow(key.rgba(size_px), extent=(low_a, high_a, low_b, high_b), origin="upper", interpolation="none",
                aspect="auto")
    axes.set_xlim(low_a, high_a)
    axes.set_ylim(low_b, high_b)
    axes.set_xticks([low_a, high_a], [_key_number(low_a), _key_number(high_a)])
    axes.set_yticks([low_b, high_b], [_key_number(low_b), _key_number(high_b)])
    axes.tick_params(labelsize=KEY_TICK_PT, length=2.0, width=0.5, pad=1.5)
    for spine in axes.spines.values():
        spine.set_linewidth(0.5)
    axes.set_xlabel(key.gene_a, fontsize=KEY_LABEL_PT, labelpad=1.0)
    axes.set_ylabel(key.gene_b, fontsize=KEY_LABEL_PT, labelpad=1.0)
    axes.set_title("log2 expression", fontsize=KEY_HEADING_PT, pad=4.0, loc="left")  # clear of the top tick
    if key.mode == "both":
        line = {"color": "#b0b0b0", "linewidth": 0.6, "linestyle": (0, (2, 1.5))}
        if low_a < key.threshold_a < high_a:
            axes.axvline(key.threshold_a, **line)
        if low_b < key.threshold_b < high_b:
            axes.axhline(key.threshold_b, **line)
        renderer = figure.canvas.get_renderer()
        note = _wrap(figure, renderer, key.note, side_in + 0.3, KEY_NOTE_PT)
        # under the x label (x: the square's left edge, y: the label's bottom), wherever the axes moves
        axes.annotate(note, xy=(0.0, 0.0), xycoords=(axes.transAxes, axes.xaxis.label), xytext=(0.0, -2.0),
                      textcoords="offset points", ha="left", va="top", fontsize=KEY_NOTE_PT, annotation_clip=False)
    return axes


def _key_extents(figure, axes) -> tuple[float, float, float, float]:
    """``(left, right, below, above)``: inches the key's labels and note reach beyond its square."""
    renderer = figure.canvas.get_renderer()
    tight = axes.get_tightbbox(renderer)
    square = axes.get_window_extent(renderer)
    dpi = figure.dpi
    return (max(0.0, (square.x0 - tight.x0) / dpi), max(0.0, (tight.x1 - square.x1) / dpi),
            max(0.0, (square.y0 - tight.y0) / dpi), max(0.0, (tight.y1 - square.y1) / dpi))


def _place_key(figure, axes, box: Box) -> None:
    width_in, height_in = figure.get_size_inches()
    left, bottom, width, height = box
    axes.set_position((left / width_in, bottom / height_in, width / width_in, height / height_in))


def export_figure(
    rgba: np.ndarray,
    viewport: Viewport,
    *,
    fmt: str = "png",
    width_in: float = 7.0,
    height_in: float = 5.0,
    dpi: float = 300,
    title: str = "",
    species: str = "",
    legend: Sequence[tuple[str, str]] | None = None,
    colorbar: tuple[str, float, float, str] | None = None,
    y_down: bool = True,
    scale_bar_mm: bool = True,
    units: str = "mm",
    show_axes: bool = True,
    two_gene_key: TwoGeneKey | None = None,
    legend_limit: int = MAX_LEGEND_ENTRIES,
    outlines: Sequence = (),
) -> bytes:
    """Draw a publication figure around a cell picture.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8 picture from :mod:`rendering.raster` for ``viewport``, rendered with the SAME
        ``y_down`` (row 0 = top); render it at :func:`export_raster_px` size, with
        ``dot_radius_px=dot_radius_px(n_cells_in_view, that_viewport, ...)`` so cells stay visible at print
        resolution (or the older ``spread_px=auto_spread_px(...)``).
    viewport : Viewport
        Data window the picture covers (its pixel size is not used).
    fmt : {"png", "svg", "pdf"}
        Output format.
    width_in, height_in : float
        Figure size in inches.
    dpi : float
        Resolution: a PNG is exactly ``round(width_in * dpi) x round(height_in * dpi)`` pixels with this dpi in
        its metadata; for SVG/PDF it only sets the raster's nominal resolution.
    title, species : str
        Title (top left) and species (top right, italic); vector text.
    legend : list of (label, hex colour, n cells) or (label, hex colour), optional
        Categories to list (the visible ones) in the order to list them (the taxonomy's), with their cells (those
        without are kept first); entries with a ``None`` count are notes listed after them, always. The legend goes beside the picture or, for many
        categories, in columns under it, whichever leaves the picture larger (:func:`plan_figure_legend`); the
        categories with the fewest cells past ``legend_limit`` or past what fits are counted in a "+ N more" line.
    colorbar : (cmap, vmin, vmax, label), optional
        Colour bar for a numeric picture, same table as the picture. A gene picture's key also lists the cells that
        do not express and those not measured: pass ``legend=list(rendering.colors.GENE_KEY_ENTRIES)`` with it.
    y_down : bool
        The picture's orientation (y axis reversed, as the atlas draws sections).
    scale_bar_mm : bool
        Draw a scale bar (length 1/2/5 x 10^k mm, about a fifth of the width); only when ``units == "mm"``.
    units : str
        Data units, for the axis labels (``"mm"`` for sections; e.g. ``""`` for a UMAP).
    show_axes : bool
        Draw the x/y axes with ticks.
    two_gene_key : TwoGeneKey, optional
        The 2-D colour key of a two-gene picture, right of the picture (top aligned), where a colour bar goes.
    legend_limit : int
        Most categories listed (0: no legend).
    outlines : sequence
        Region outlines over the cells (:func:`draw_outlines`: objects with ``label``, ``color``, ``rings`` and
        ``name_xy``), each named at its ``name_xy`` in its colour.

    Returns
    -------
    bytes
        The file in ``fmt``.

    Raises
    ------
    ValueError
        On a bad picture, format, size or dpi (naming it).
    """
    figure = build_figure(rgba, viewport, fmt=fmt, width_in=width_in, height_in=height_in, dpi=dpi, title=title,
                          species=species, legend=legend, colorbar=colorbar, y_down=y_down, scale_bar_mm=scale_bar_mm,
                          units=units, show_axes=show_axes, two_gene_key=two_gene_key, legend_limit=legend_limit,
                          outlines=outlines)
    return save_figure(figure, fmt, dpi, title)


def build_figure(
    rgba: np.ndarray,
    viewport: Viewport,
    *,
    fmt: str = "png",
    width_in: float = 7.0,
    height_in: float = 5.0,
    dpi: float = 300,
    title: str = "",
    species: str = "",
    legend: Sequence[tuple[str, str]] | None = None,
    colorbar: tuple[str, float, float, str] | None = None,
    y_down: bool = True,
    scale_bar_mm: bool = True,
    units: str = "mm",
    show_axes: bool = True,
    two_gene_key: TwoGeneKey | None = None,
    legend_limit: int = MAX_LEGEND_ENTRIES,
    outlines: Sequence = (),
):
    """The matplotlib ``Figure`` :func:`export_figure` saves (same parameters; for measuring its layout)."""
    rgba = _validate(rgba, fmt, width_in, height_in, dpi)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    key_axes = None
    if two_gene_key is not None:  # keep a band on the right free for the key and its labels
        key_side = _key_side_in(width_in, height_in)
        key_axes = _draw_two_gene_key(figure, two_gene_key, key_side, dpi)
        key_extents = _key_extents(figure, key_axes)
        band_in = KEY_GAP_IN + key_extents[0] + key_side + key_extents[1] + FIGURE_PAD_IN
        figure.get_layout_engine().set(rect=(0.0, 0.0, max(0.3, 1.0 - band_in / width_in), 1.0))
    axes = figure.add_subplot()
    bottom, top = (viewport.y1, viewport.y0) if y_down else (viewport.y0, viewport.y1)
    axes.imshow(
        rgba,
        extent=(viewport.x0, viewport.x1, bottom, top),
        origin="upper",
        interpolation="none",  # vector formats embed the raster as is; Agg draws nearest
        aspect="equal",
    )
    axes.set_xlim(viewport.x0, viewport.x1)
    axes.set_ylim(bottom, top)
    draw_outlines(axes, outlines)
    if show_axes:  # coordinates without a unit are a UMAP's, named as the page names them
        axes.set_xlabel(f"x ({units})" if units else "UMAP 1")
        axes.set_ylabel(f"y ({units})" if units else "UMAP 2")
    else:
        axes.set_axis_off()
    # figure-level, not axes titles: a narrow section's axes is shorter than its title, which then ran into the
    # species and the legend; constrained layout makes room for the suptitle above the axes AND the legend
    if title or species:
        renderer = figure.canvas.get_renderer()
        room = width_in * 0.98 - 2 * FIGURE_PAD_IN - _text_size_in(figure, renderer, species, 10.0,
                                                                 fontstyle="italic")[0] - 0.1
        if title and _text_size_in(figure, renderer, title, 11.0)[0] > room:  # a long title wraps, never runs off
            title_shown = _wrap(figure, renderer, title, max(room, 1.0), 11.0)
        else:
            title_shown = title
        heading = figure.suptitle(title_shown or " ", x=0.01, ha="left", fontsize=11)  # y: set by the layout
        if species:  # right after the title (measured), so it never lands on the legend at the top right
            right = heading.get_window_extent(figure.canvas.get_renderer()).x1 / figure.bbox.width if title else 0.01
            top = 1.0 - figure.get_layout_engine().get()["h_pad"] / height_in  # where the layout puts the title
            figure.text(right + (0.012 if title else 0.0), top, species, ha="left", va="top", fontsize=10,
                        fontstyle="italic")

    if scale_bar_mm and units == "mm":
        _add_scale_bar(axes, _nice_scale_bar_mm(viewport.x1 - viewport.x0), rgba=rgba)

    if legend and legend_limit > 0:
        band_in = COLORBAR_BAND_IN if colorbar is not None else 0.0
        if key_axes is not None:
            band_in = max(band_in, KEY_GAP_IN + key_extents[0] + key_side + key_extents[1])
        plan = plan_figure_legend(figure, legend, aspect=(viewport.x1 - viewport.x0) / (viewport.y1 - viewport.y0),
                                  heading=bool(title or species), show_axes=show_axes, band_in=band_in,
                                  limit=legend_limit)
        figure.legend(handles=_legend_handles(plan.entries), fontsize=plan.fontsize, frameon=False,
                      loc="outside lower center" if plan.below else "outside right upper", ncols=plan.ncols,
                      handlelength=_HANDLE_EM, handleheight=_HANDLE_EM, handletextpad=_HANDLE_PAD_EM,
                      columnspacing=_COLUMN_GAP_EM, labelspacing=_LABEL_GAP_EM, borderaxespad=0.2)
    if colorbar is not None:
        bar = figure.colorbar(_colorbar_mappable(colorbar), ax=axes, shrink=0.6, pad=0.02)
        bar.set_label(colorbar[3], fontsize=9)
        bar.ax.tick_params(labelsize=8)

    _keep_labels_inside(figure, axes)
    if key_axes is not None:
        _place_single_key(figure, axes, key_axes, key_side, key_extents)
    return figure


def _place_single_key(figure, axes, key_axes, side_in: float, extents: tuple[float, float, float, float]) -> None:
    """Put the key right of the laid-out picture, its heading level with the picture's top (raised if its note
    would leave the figure), and freeze the layout so the picture stays where the key was measured against."""
    figure.draw_without_rendering()  # the picture's final box (equal aspect applied)
    picture = axes.get_window_extent(figure.canvas.get_renderer())
    figure.set_layout_engine("none")
    left_x, _, below, above = extents
    height_in = figure.get_size_inches()[1]
    dpi = figure.dpi
    bottom = picture.y1 / dpi - above - side_in
    bottom = min(max(bottom, FIGURE_PAD_IN + below), height_in - FIGURE_PAD_IN - above - side_in)
    _place_key(figure, key_axes, (picture.x1 / dpi + KEY_GAP_IN + left_x, bottom, side_in, side_in))


# ---------------------------------------------------------------------------------------------- several panels
#: Space between panel columns and rows, and around the figure (inches).
PANEL_GAP_IN = 0.12
FIGURE_PAD_IN = 0.08
#: Font sizes (points): figure heading, panel titles, scale bar labels of panels, legend.
HEADING_PT = 11.0
PANEL_TITLE_PT = 7.5
MIN_PANEL_TITLE_PT = 5.0
TITLE_PT_STEPS = (7.5, 7.0, 6.5, 6.0, 5.5, 5.0)
PANEL_SCALE_BAR_PT = 6.5
#: Room under a panel for its scale bar besides the label's height: the bar and the gaps (inches).
SCALE_BAR_FOOTER_IN = 0.09
LEGEND_PT = 7.0
#: Width of the colour bar and of the band holding it with its tick labels and label (inches).
COLORBAR_WIDTH_IN = 0.13
COLORBAR_BAND_IN = 0.95
#: Longest colour bar (inches).
COLORBAR_MAX_IN = 3.0

Box = tuple[float, float, float, float]  # (left, bottom, width, height), inches from the figure's bottom left


@dataclass(frozen=True)
class GridGeometry:
    """Where the panels of a grid go inside an area, all at one scale.

    Attributes
    ----------
    in_per_unit : float
        Inches per data unit (mm) of EVERY panel; 0 when nothing fits.
    n_cols, n_rows : int
    boxes : tuple of Box
        Each panel's picture, ``(left, bottom, width, height)`` in inches; ``width = extent_width * in_per_unit``
        and ``height = extent_height * in_per_unit`` (its own extent, its own size).
    title_anchors : tuple of (float, float)
        Each panel title's top centre in inches (the centre of its column, the top of its row).
    right_in : float
        Right edge of the last column (inches).
    """

    in_per_unit: float
    n_cols: int
    n_rows: int
    boxes: tuple[Box, ...]
    title_anchors: tuple[tuple[float, float], ...]
    right_in: float = 0.0


def grid_geometry(
    extents: Sequence[tuple[float, float]],
    title_sizes_in: Sequence[tuple[float, float]],
    area: Box,
    *,
    n_cols: int,
    gap_in: float = PANEL_GAP_IN,
    footer_in: float = 0.0,
) -> GridGeometry:
    """Lay ``extents`` out in rows of ``n_cols`` inside ``area`` at the largest scale common to all of them.

    A column is as wide as its widest picture (or its widest title, whichever is wider); a row as tall as its
    tallest picture plus its tallest title. Pictures sit centred in their column and at the top of their row
    (under their title); the grid starts at the top left of ``area``.

    Parameters
    ----------
    extents : sequence of (float, float)
        ``(width, height)`` in data units (mm) of each panel's window, panel order = reading order.
    title_sizes_in : sequence of (float, float)
        ``(width, height)`` in inches of each panel's title (``(0, 0)`` without one).
    area : Box
        ``(left, bottom, width, height)`` available, inches.
    n_cols : int
        Columns (``>= 1``; more than ``len(extents)`` is clipped).
    footer_in : float
        Room kept under every row's pictures (inches; the scale bars hang there, off the tissue).

    Returns
    -------
    GridGeometry
        ``in_per_unit == 0`` (and empty boxes) when the titles and gaps alone do not fit.
    """
    n = len(extents)
    if n == 0:
        raise ValueError("grid_geometry needs at least one panel")
    if len(title_sizes_in) != n:
        raise ValueError(f"{len(title_sizes_in)} title sizes for {n} panels")
    for width, height in extents:
        if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
            raise ValueError(f"panel extent {(width, height)!r} must be positive and finite")
    n_cols = max(1, min(int(n_cols), n))
    n_rows = math.ceil(n / n_cols)
    left, bottom, area_w, area_h = area
    columns = [list(range(c, n, n_cols)) for c in range(n_cols)]
    rows = [list(range(r * n_cols, min(n, (r + 1) * n_cols))) for r in range(n_rows)]
    col_units = [max(extents[i][0] for i in col) for col in columns]
    col_titles = [max(title_sizes_in[i][0] for i in col) for col in columns]
    row_units = [max(extents[i][1] for i in row) for row in rows]
    row_titles = [max(title_sizes_in[i][1] for i in row) for row in rows]
    empty = GridGeometry(0.0, n_cols, n_rows, (), ())

    scale = (area_h - sum(row_titles) - footer_in * n_rows - gap_in * (n_rows - 1)) / sum(row_units)  # the height

    def used_width(s: float) -> float:
        return sum(max(u * s, t) for u, t in zip(col_units, col_titles)) + gap_in * (n_cols - 1)

    if scale <= 0 or used_width(0.0) > area_w:
        return empty
    if used_width(scale) > area_w:  # the width binds: largest s with used_width(s) <= area_w (increasing in s)
        low, high = 0.0, scale
        for _ in range(60):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if used_width(middle) <= area_w else (low, middle)
        scale = low
    if scale <= 0:
        return empty
    col_w = [max(u * scale, t) for u, t in zip(col_units, col_titles)]
    col_x = [left]
    for width in col_w[:-1]:
        col_x.append(col_x[-1] + width + gap_in)
    row_top = [bottom + area_h]
    for r in range(n_rows - 1):
        row_top.append(row_top[-1] - row_titles[r] - row_units[r] * scale - footer_in - gap_in)
    boxes, anchors = [], []
    for i, (width, height) in enumerate(extents):
        r, c = divmod(i, n_cols)
        w, h = width * scale, height * scale
        top = row_top[r] - row_titles[r]
        boxes.append((col_x[c] + 0.5 * (col_w[c] - w), top - h, w, h))
        anchors.append((col_x[c] + 0.5 * col_w[c], row_top[r]))
    return GridGeometry(scale, n_cols, n_rows, tuple(boxes), tuple(anchors), col_x[-1] + col_w[-1])


def best_columns(extents: Sequence[tuple[float, float]], title_sizes_in: Sequence[tuple[float, float]],
                 area: Box, *, gap_in: float = PANEL_GAP_IN, footer_in: float = 0.0) -> GridGeometry:
    """The grid of ``extents`` (see :func:`grid_geometry`) whose number of columns gives the largest scale.

    Ties go to fewer columns (a taller, easier-to-read grid of the same scale).
    """
    best = None
    for n_cols in range(1, len(extents) + 1):
        geometry = grid_geometry(extents, title_sizes_in, area, n_cols=n_cols, gap_in=gap_in, footer_in=footer_in)
        if best is None or geometry.in_per_unit > best.in_per_unit * (1 + 1e-9):
            best = geometry
    return best


@dataclass(frozen=True)
class PanelGrid:
    """The plan of a multi-panel figure (:func:`plan_panel_grid`), drawn by :func:`export_panel_grid`.

    Attributes
    ----------
    width_in, height_in : float
        Figure size.
    geometry : GridGeometry
        The panels' pictures and titles; one scale for all.
    titles : tuple of str
        Panel titles (may hold line breaks).
    title_pt : float
        Their font size.
    heading : str
        Figure title; ``species`` beside it in italics.
    species : str
    legend : tuple of (label, colour)
        The planned entries (:attr:`LegendPlan.entries`).
    legend_ncols : int
    legend_anchor : (float, float) or None
        The legend's ``legend_loc`` point, inches: its upper right beside the panels, its top centre under them.
    colorbar : (cmap, vmin, vmax, label) or None
    colorbar_box : Box or None
    scale_bar : float
        ONE scale bar length (data units, mm) drawn on every panel: the same length reads the same everywhere.
    units : str
        ``"mm"`` draws the scale bars.
    two_gene_key : TwoGeneKey or None
        ONE 2-D colour key for the two-gene panels (they share its ranges).
    two_gene_key_box : Box or None
        Its square (inches); its labels and note lie around it, inside the figure.
    legend_pt : float
        The legend's font size.
    legend_loc : str
        ``"upper right"`` or ``"upper center"``.
    """

    width_in: float
    height_in: float
    geometry: GridGeometry
    titles: tuple[str, ...]
    title_pt: float
    heading: str
    species: str
    legend: tuple
    legend_ncols: int
    legend_anchor: tuple[float, float] | None
    colorbar: tuple | None
    colorbar_box: Box | None
    scale_bar: float
    units: str
    two_gene_key: TwoGeneKey | None = None
    two_gene_key_box: Box | None = None
    legend_pt: float = 7.0
    legend_loc: str = "upper right"

    @property
    def in_per_unit(self) -> float:
        return self.geometry.in_per_unit

    def raster_px(self, dpi: float) -> list[tuple[int, int]]:
        """``(width_px, height_px)`` to render each panel's cells at: its box at ``dpi`` (never upsampled)."""
        return [(max(1, int(round(w * dpi))), max(1, int(round(h * dpi)))) for _, _, w, h in self.geometry.boxes]


def _measure_figure(width_in: float, height_in: float, dpi: float):
    """A scratch figure at the export's dpi: text extents change with it (hinting; 9 % between 100 and 300 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure, figure.canvas.get_renderer()


def _text_size_in(figure, renderer, text: str, fontsize: float, **kwargs) -> tuple[float, float]:
    if not text:
        return 0.0, 0.0
    artist = figure.text(0, 0, text, fontsize=fontsize, **kwargs)
    box = artist.get_window_extent(renderer)
    artist.remove()
    return float(box.width / figure.dpi), float(box.height / figure.dpi)


def plan_panel_grid(
    extents: Sequence[tuple[float, float]],
    titles: Sequence[str],
    *,
    width_in: float,
    height_in: float,
    dpi: float = 300,
    heading: str = "",
    species: str = "",
    legend: Sequence[tuple[str, str]] | None = None,
    colorbar: tuple[str, float, float, str] | None = None,
    n_cols: int | None = None,
    units: str = "mm",
    two_gene_key: TwoGeneKey | None = None,
    legend_limit: int = MAX_LEGEND_ENTRIES,
) -> PanelGrid:
    """Plan a figure of several panels: heading at the top, ONE legend beside the panels or in columns under them
    (whichever gives the larger panels, :func:`better_legend`), a colour bar or key at the right, the panels in a
    grid at one common scale in the rest (text measured with matplotlib's renderer).

    Parameters
    ----------
    extents : sequence of (float, float)
        ``(width, height)`` of each panel's data window (mm).
    titles : sequence of str
        One title per panel (line breaks allowed).
    width_in, height_in : float
        Figure size (inches).
    dpi : float
        The export's resolution (text is measured at it).
    heading, species : str
        Figure title and species (italics, after the title).
    legend, colorbar, two_gene_key, legend_limit
        As in :func:`export_figure`; shared by all panels (the key left of a colour bar when there are both).
    n_cols : int, optional
        Columns; None chooses the number giving the largest panels (:func:`best_columns`). A row: ``len(extents)``.
    units : str
        ``"mm"``: a scale bar on every panel.

    Panel titles are :data:`PANEL_TITLE_PT`, or smaller (down to :data:`MIN_PANEL_TITLE_PT`) when long titles
    (section labels) over narrow pictures would shrink the panels by more than a tenth.

    Returns
    -------
    PanelGrid
        ``in_per_unit == 0`` when the text leaves no room for pictures (the caller refuses such a figure).
    """
    if len(titles) != len(extents):
        raise ValueError(f"{len(titles)} titles for {len(extents)} panels")
    figure, renderer = _measure_figure(width_in, height_in, dpi)
    pad, gap = FIGURE_PAD_IN, PANEL_GAP_IN
    heading_h = 0.0
    if heading or species:
        heading_h = max(_text_size_in(figure, renderer, heading or "Ag", HEADING_PT)[1],
                        _text_size_in(figure, renderer, species, 10.0, fontstyle="italic")[1]) + gap
    top = height_in - pad - heading_h
    measured = [_text_size_in(figure, renderer, text, PANEL_TITLE_PT) for text in titles]
    footer = 0.0  # under each row: the scale bars (bar, gap, label), off the pictures
    if units == "mm":
        footer = _text_size_in(figure, renderer, "2 mm", PANEL_SCALE_BAR_PT)[1] + SCALE_BAR_FOOTER_IN

    def arrange(plan: LegendPlan | None) -> dict:
        """The grid with ``plan``'s legend beside (upper right) or under (bottom centre) the panels."""
        right, bottom, anchor, loc = width_in - pad, pad, None, "upper right"
        if plan is not None and plan.below:
            anchor, loc = (0.5 * width_in, pad), "lower center"
            bottom = pad + plan.height_in + gap
        elif plan is not None:
            anchor = (right, top)
            right -= plan.width_in + gap
        colorbar_box = None
        if colorbar is not None:
            right -= COLORBAR_BAND_IN
            bar_h = min(COLORBAR_MAX_IN, 0.6 * (top - bottom))
            colorbar_box = (right + gap, top - bar_h, COLORBAR_WIDTH_IN, bar_h)
        key_box = None
        if two_gene_key is not None:  # measured as drawn: the square plus its labels, heading and note
            side = _key_side_in(width_in, height_in)
            key_axes = _draw_two_gene_key(figure, two_gene_key, side, dpi)
            left_x, right_x, under, above = _key_extents(figure, key_axes)
            key_axes.remove()
            if top - above - side - under < bottom and side > KEY_MIN_IN:  # a short figure: a smaller square
                side = max(KEY_MIN_IN, top - bottom - above - under)
                key_axes = _draw_two_gene_key(figure, two_gene_key, side, dpi)
                left_x, right_x, under, above = _key_extents(figure, key_axes)
                key_axes.remove()
            right -= right_x + side
            key_box = (right, top - above - side, side, side)
            right -= left_x + KEY_GAP_IN
        area = (pad, bottom, max(0.0, right - pad), max(0.0, top - bottom))

        def layout(points: float) -> GridGeometry:
            ratio = points / PANEL_TITLE_PT  # text extents scale with the font size (+3 %: hinting, a little air)
            sizes = [(1.03 * w * ratio, h * ratio + 0.04 if h else 0.0) for w, h in measured]
            if n_cols is None:
                return best_columns(extents, sizes, area, footer_in=footer)
            return grid_geometry(extents, sizes, area, n_cols=n_cols, footer_in=footer)

        options = [(points, layout(points)) for points in TITLE_PT_STEPS]
        largest = max(geometry.in_per_unit for _, geometry in options)
        title_pt, geometry = next((p, g) for p, g in options if g.in_per_unit >= 0.9 * largest)
        if geometry.boxes:  # centre the grid and the legend (or colour bar) beside it across the figure
            slack = max(0.0, area[0] + area[2] - geometry.right_in)
            shift = 0.5 * slack
            geometry = GridGeometry(
                geometry.in_per_unit, geometry.n_cols, geometry.n_rows,
                tuple((left + shift, low, w, h) for left, low, w, h in geometry.boxes),
                tuple((x + shift, y) for x, y in geometry.title_anchors), geometry.right_in + shift)
            if anchor is not None and loc == "upper right":
                anchor = (anchor[0] - slack + shift, anchor[1])
            elif anchor is not None:  # under the panels: right below the lowest row's scale bars
                lowest = min(low for _, low, _, _ in geometry.boxes) - footer - gap
                anchor, loc = (0.5 * width_in, max(lowest, pad + plan.height_in)), "upper center"
            if colorbar_box is not None:
                colorbar_box = (colorbar_box[0] - slack + shift, *colorbar_box[1:])
            if key_box is not None:
                key_box = (key_box[0] - slack + shift, *key_box[1:])
        return {"geometry": geometry, "title_pt": title_pt, "legend_anchor": anchor, "legend_loc": loc,
                "colorbar_box": colorbar_box, "two_gene_key_box": key_box}

    legend = tuple(legend or ())
    plan = None
    if legend and legend_limit > 0:
        beside = plan_legend(figure, renderer, legend, max_width_in=LEGEND_RIGHT_SHARE * (width_in - 2 * pad),
                             max_height_in=top - pad, below=False, limit=legend_limit)
        under = plan_legend(figure, renderer, legend, max_width_in=width_in - 2 * pad,
                            max_height_in=LEGEND_BELOW_SHARE * (top - pad), below=True, limit=legend_limit)
        arranged = {id(beside): arrange(beside), id(under): arrange(under)}
        plan = better_legend((beside, arranged[id(beside)]["geometry"].in_per_unit ** 2),
                             (under, arranged[id(under)]["geometry"].in_per_unit ** 2))
        chosen = arranged[id(plan)]
    else:
        chosen = arrange(None)
    scale_bar = _nice_scale_bar_mm(min(w for w, _ in extents)) if units == "mm" else 0.0
    return PanelGrid(width_in=width_in, height_in=height_in, titles=tuple(titles), heading=heading,
                     species=species, legend=plan.entries if plan else (), legend_ncols=plan.ncols if plan else 1,
                     legend_pt=plan.fontsize if plan else LEGEND_PT, colorbar=colorbar, scale_bar=scale_bar,
                     units=units, two_gene_key=two_gene_key, **chosen)


def export_panel_grid(
    pictures: Sequence[np.ndarray],
    windows: Sequence[Viewport | tuple[float, float, float, float]],
    grid: PanelGrid,
    *,
    fmt: str = "png",
    dpi: float = 300,
    y_down: bool = True,
) -> bytes:
    """Draw a planned multi-panel figure (:func:`plan_panel_grid`): one embedded raster per panel in its box,
    its title above it and a scale bar under it; the heading, the one legend or colour bar, the one two-gene key.

    Parameters
    ----------
    pictures : sequence of numpy.ndarray
        ``(H, W, 4)`` uint8 per panel, rendered for its window with the same ``y_down``, best at
        ``grid.raster_px(dpi)`` (any size is stretched over the panel's box).
    windows : sequence of Viewport or (x0, x1, y0, y1)
        Data window of each picture.
    grid : PanelGrid
    fmt, dpi, y_down
        As in :func:`export_figure`; a PNG is exactly ``round(width_in * dpi) x round(height_in * dpi)``.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        On a bad picture, format, size or dpi, a plan with no room for pictures, or a count mismatch.
    """
    figure = build_panel_grid(pictures, windows, grid, fmt=fmt, dpi=dpi, y_down=y_down)
    return save_figure(figure, fmt, dpi, grid.heading)


def build_panel_grid(
    pictures: Sequence[np.ndarray],
    windows: Sequence[Viewport | tuple[float, float, float, float]],
    grid: PanelGrid,
    *,
    fmt: str = "png",
    dpi: float = 300,
    y_down: bool = True,
    outlines: Sequence[Sequence] | None = None,
):
    """The matplotlib ``Figure`` :func:`export_panel_grid` saves (same parameters; for measuring its layout).
    ``outlines``: per panel, its region outlines (:func:`draw_outlines`; names at :data:`PANEL_OUTLINE_NAME_PT`)."""
    boxes = grid.geometry.boxes
    if not boxes:
        raise ValueError("the panel grid has no room for the pictures (in_per_unit == 0)")
    if not (len(pictures) == len(windows) == len(boxes)):
        raise ValueError(f"{len(pictures)} pictures and {len(windows)} windows for {len(boxes)} panels")
    pictures = [_validate(rgba, fmt, grid.width_in, grid.height_in, dpi) for rgba in pictures]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width_in, height_in = grid.width_in, grid.height_in
    figure = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(figure)
    for index, (rgba, window, box, text, (tx, ty)) in enumerate(zip(pictures, windows, boxes, grid.titles,
                                                                    grid.geometry.title_anchors)):
        x0, x1, y0, y1 = (window.x0, window.x1, window.y0, window.y1) if isinstance(window, Viewport) else window
        left, bottom, w, h = box
        axes = figure.add_axes((left / width_in, bottom / height_in, w / width_in, h / height_in))
        low, high = (y1, y0) if y_down else (y0, y1)
        # the box already has the window's aspect (one scale for x and y): "auto" keeps it exactly
        axes.imshow(rgba, extent=(x0, x1, low, high), origin="upper", interpolation="none", aspect="auto")
        axes.set_xlim(x0, x1)
        axes.set_ylim(low, high)
        axes.set_axis_off()
        if outlines is not None and index < len(outlines):
            draw_outlines(axes, outlines[index], fontsize=PANEL_OUTLINE_NAME_PT, gid=f"region-outline-p{index}")
        if grid.units == "mm" and grid.scale_bar > 0:
            _add_scale_bar_under(axes, grid.scale_bar, fontsize=PANEL_SCALE_BAR_PT)
        if text:
            figure.text(tx / width_in, ty / height_in, text, ha="center", va="top", fontsize=grid.title_pt,
                        multialignment="center")
    pad = FIGURE_PAD_IN
    if grid.heading or grid.species:
        heading = figure.text(pad / width_in, 1 - pad / height_in, grid.heading, ha="left", va="top",
                              fontsize=HEADING_PT)
        if grid.species:
            renderer = figure.canvas.get_renderer()
            x = heading.get_window_extent(renderer).x1 / figure.bbox.width + 0.012 if grid.heading else pad / width_in
            figure.text(x, 1 - pad / height_in, grid.species, ha="left", va="top", fontsize=10, fontstyle="italic")
    if grid.legend and grid.legend_anchor is not None:
        _draw_legend(figure, grid.legend, grid.legend_ncols, grid.legend_anchor, fontsize=grid.legend_pt,
                     loc=grid.legend_loc)
    if grid.colorbar is not None and grid.colorbar_box is not None:
        left, bottom, w, h = grid.colorbar_box
        cax = figure.add_axes((left / width_in, bottom / height_in, w / width_in, h / height_in))
        bar = figure.colorbar(_colorbar_mappable(grid.colorbar), cax=cax)
        bar.set_label(grid.colorbar[3], fontsize=9)
        bar.ax.tick_params(labelsize=8)
    if grid.two_gene_key is not None and grid.two_gene_key_box is not None:
        key_axes = _draw_two_gene_key(figure, grid.two_gene_key, grid.two_gene_key_box[2], dpi)
        _place_key(figure, key_axes, grid.two_gene_key_box)
    return figure
