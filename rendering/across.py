"""The figure of one cell type across species: the panel of the viewer as one publication figure.

From the top: the term (its level and taxonomy), its annotation as the release gives it (abbreviations spelled out
with their ontology identifiers), then three charts sharing one row per species' cells (the term's share of the
cells, its cells per region as stacked bars in the release's region colours, and the dot plot of its conserved
markers, a ring marking each dot whose test against the rest of that species' cells holds), and under them the
species' maps side by side at ONE scale (inches per mm, :func:`rendering.figures.grid_geometry`), each titled and
with the same scale bar length.

:func:`plan_across` lays the figure out first (the maps' boxes give the size their rasters are rendered at), then
:func:`build_across` draws it; text stays vector text in SVG and PDF (:func:`rendering.figures.save_figure`). Plain
values in, no Dash, no store.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rendering.figures import (FIGURE_PAD_IN, PANEL_GAP_IN, PANEL_SCALE_BAR_PT, SCALE_BAR_FOOTER_IN, GridGeometry,
                               _add_scale_bar_under, _listed_cmap, _nice_scale_bar_mm, _validate, grid_geometry)

#: Font sizes (points): the term, the line under it, chart titles and labels, the annotation, map titles.
TERM_PT = 13.0
SUB_PT = 8.5
CHART_TITLE_PT = 8.0
LABEL_PT = 7.0
ANNOTATION_PT = 7.5
MAP_TITLE_PT = 7.0
#: Height of one species row of the charts (inches) and the charts' band's share of the figure at most.
ROW_IN = 0.24
MAX_CHARTS_SHARE = 0.5
#: Room under the charts for the genes' names and the region legend (inches), and the y labels' width.
CHARTS_FOOTER_IN = 0.95
LABELS_IN = 1.25
_LINE = 1.3 / 72  # inches per point of a text line
_CMAP = "viridis"


@dataclass(frozen=True)
class AcrossLayout:
    """Where the parts of the figure go (inches from the bottom left; boxes are ``(left, bottom, width, height)``).

    Attributes
    ----------
    width_in, height_in : float
    annotation_lines : tuple of str
        The annotation wrapped to the figure's width.
    charts_top, charts_bottom : float
        The band of the three charts (their plot areas lie inside it).
    share_box, regions_box, dots_box : tuple
    maps : GridGeometry
        The maps' boxes at one scale (empty boxes when they do not fit).
    scale_bar_mm : float
        ONE scale bar length for every map (0 without maps).
    """

    width_in: float
    height_in: float
    annotation_lines: tuple[str, ...]
    charts_top: float
    charts_bottom: float
    share_box: tuple
    regions_box: tuple
    dots_box: tuple
    maps: GridGeometry | None
    scale_bar_mm: float

    def map_raster_px(self, dpi: float) -> list[tuple[int, int]]:
        """Pixel size of each map's raster at ``dpi`` (its box)."""
        if self.maps is None:
            return []
        return [(max(1, round(w * dpi)), max(1, round(h * dpi))) for _, _, w, h in self.maps.boxes]


def _title_size_in(text: str, pt: float) -> tuple[float, float]:
    lines = text.split("\n")
    return max(len(line) for line in lines) * pt * 0.55 / 72, len(lines) * pt * _LINE


def plan_across(width_in: float, height_in: float, n_rows: int, annotation: str,
                map_extents: Sequence[tuple[float, float]], map_titles: Sequence[str]) -> AcrossLayout:
    """Lay out a figure of ``n_rows`` species rows and maps of ``map_extents`` (mm) titled ``map_titles``."""
    pad = FIGURE_PAD_IN + 0.04
    top = height_in - pad
    top -= TERM_PT * _LINE + 0.04  # the term
    chars = max(20, int((width_in - 2 * pad) * 72 / (ANNOTATION_PT * 0.52)))
    lines = tuple(textwrap.wrap(annotation, chars)) if annotation else ()
    top -= len(lines) * ANNOTATION_PT * _LINE + 0.1
    band = min(CHART_TITLE_PT * _LINE + 0.12 + ROW_IN * max(1, n_rows) + CHARTS_FOOTER_IN,
               MAX_CHARTS_SHARE * height_in)
    charts_top, charts_bottom = top, top - band
    plot_top = charts_top - CHART_TITLE_PT * _LINE - 0.12
    plot_bottom = charts_bottom + CHARTS_FOOTER_IN
    plot_h = max(0.1, plot_top - plot_bottom)
    left = pad + LABELS_IN
    usable = width_in - left - pad - 0.7  # the dot plot's colour bar at the right
    gap = 0.25
    share_w, regions_w = 0.2 * usable, 0.32 * usable
    dots_w = usable - share_w - regions_w - 2 * gap
    share_box = (left, plot_bottom, share_w, plot_h)
    regions_box = (left + share_w + gap, plot_bottom, regions_w, plot_h)
    dots_box = (left + share_w + regions_w + 2 * gap, plot_bottom, dots_w, plot_h)
    maps = None
    scale_bar = 0.0
    if map_extents:
        footer = PANEL_SCALE_BAR_PT / 72 * 1.3 + SCALE_BAR_FOOTER_IN
        area = (pad, pad, width_in - 2 * pad, charts_bottom - 0.15 - pad)
        if area[3] > 0.3:
            maps = grid_geometry(list(map_extents), [_title_size_in(t, MAP_TITLE_PT) for t in map_titles], area,
                                 n_cols=len(map_extents), gap_in=PANEL_GAP_IN * 2, footer_in=footer)
            if not maps.boxes:
                maps = None
        if maps is not None:
            scale_bar = _nice_scale_bar_mm(min(w for w, _ in map_extents))
    return AcrossLayout(width_in, height_in, lines, charts_top, charts_bottom, share_box, regions_box, dots_box,
                        maps, scale_bar)


@dataclass(frozen=True)
class AcrossContent:
    """What the figure shows, plain values.

    Attributes
    ----------
    term, subtitle, color : str
        The term, the line beside it (level · taxonomy) and its colour.
    annotation : str
        ``STR = striatum (DHBA:10333); ...``.
    rows : tuple of str
        Species' cells, top to bottom.
    shares : tuple of float
        The term's share of each row's cells (NaN without cells).
    regions : tuple of (row, region, fraction, colour)
    genes : tuple of str
    mean, fraction : ndarray, shape (rows, genes)
        NaN where the row does not measure the gene.
    held : ndarray of bool, shape (rows, genes)
        The gene's test against the rest of the row's species' cells holds (higher, adjusted p < 0.05).
    dots_note : str
        The line under the dot plot.
    """

    term: str
    subtitle: str
    color: str
    annotation: str
    rows: tuple
    shares: tuple
    regions: tuple
    genes: tuple
    mean: np.ndarray
    fraction: np.ndarray
    held: np.ndarray
    dots_note: str = ""


def _axes(figure, layout: AcrossLayout, box):
    left, bottom, w, h = box
    return figure.add_axes((left / layout.width_in, bottom / layout.height_in, w / layout.width_in,
                            h / layout.height_in))


def _rows_axis(axes, rows: Sequence[str], labels: bool) -> None:
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels(rows if labels else [""] * len(rows), fontsize=LABEL_PT)
    axes.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def build_across(layout: AcrossLayout, content: AcrossContent, maps: Sequence[tuple[np.ndarray, tuple, str]], *,
                 fmt: str = "png", dpi: float = 150, y_down: bool = True):
    """The matplotlib ``Figure`` of ``content`` laid out by ``layout``; ``maps`` are ``(rgba, (x0, x1, y0, y1),
    title)`` per box of ``layout.maps`` (rendered at :meth:`AcrossLayout.map_raster_px`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    width_in, height_in = layout.width_in, layout.height_in
    figure = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(figure)
    pad = FIGURE_PAD_IN + 0.04
    y = 1 - pad / height_in
    term = figure.text(pad / width_in, y, content.term, ha="left", va="top", fontsize=TERM_PT, fontweight="bold",
                       gid="across-term")
    renderer = figure.canvas.get_renderer()
    x = term.get_window_extent(renderer).x1 / figure.bbox.width + 0.01
    figure.text(x, y - 0.02 / height_in, content.subtitle, ha="left", va="top", fontsize=SUB_PT, color="#555555")
    y_in = height_in - pad - TERM_PT * _LINE - 0.04
    for line in layout.annotation_lines:
        figure.text(pad / width_in, y_in / height_in, line, ha="left", va="top", fontsize=ANNOTATION_PT)
        y_in -= ANNOTATION_PT * _LINE
    rows = list(content.rows)
    title_y = (layout.charts_top - 0.02) / height_in

    # share of cells
    axes = _axes(figure, layout, layout.share_box)
    shares = np.array([s if s == s else 0.0 for s in content.shares], dtype=float)
    axes.barh(range(len(rows)), shares * 100, color=content.color, height=0.6)
    top = max(float(shares.max()) * 100 if len(shares) else 0.0, 1e-9)
    for i, s in enumerate(content.shares):
        text = "–" if s != s else (f"{100 * s:.2f}%" if s < 0.1 else f"{100 * s:.1f}%")
        axes.text(shares[i] * 100 + top * 0.02, i, text, va="center", ha="left", fontsize=LABEL_PT - 0.5)
    axes.set_xlim(0, top * 1.35)
    axes.tick_params(axis="x", labelsize=LABEL_PT - 1)
    axes.set_xlabel("% of the species' cells", fontsize=LABEL_PT - 0.5)
    _rows_axis(axes, rows, True)
    box = layout.share_box
    figure.text(box[0] / width_in, title_y, "Share of cells", ha="left", va="top", fontsize=CHART_TITLE_PT,
                fontweight="bold")

    # regions: stacked bars
    axes = _axes(figure, layout, layout.regions_box)
    names: list[str] = []
    colours: dict[str, str] = {}
    for _, region, _, colour in content.regions:
        if region not in colours:
            names.append(region)
            colours[region] = colour
    left = np.zeros(len(rows))
    index = {row: i for i, row in enumerate(rows)}
    for name in names:
        widths = np.zeros(len(rows))
        for row, region, fraction, _ in content.regions:
            if region == name and row in index:
                widths[index[row]] = fraction
        axes.barh(range(len(rows)), widths * 100, left=left * 100, color=colours[name], height=0.6, linewidth=0)
        left += widths
    axes.set_xlim(0, 100)
    axes.tick_params(axis="x", labelsize=LABEL_PT - 1)
    axes.set_xlabel("% of the term's cells", fontsize=LABEL_PT - 0.5)
    _rows_axis(axes, rows, False)
    box = layout.regions_box
    figure.text(box[0] / width_in, title_y, "Regions of its cells", ha="left", va="top", fontsize=CHART_TITLE_PT,
                fontweight="bold")
    if names:
        figure.legend(handles=[Patch(color=colours[n], label=n) for n in names], loc="upper left",
                      bbox_to_anchor=(box[0] / width_in, (box[1] - 0.42) / height_in), ncol=min(5, len(names)),
                      fontsize=LABEL_PT - 1, frameon=False, handlelength=0.9, columnspacing=0.8, borderaxespad=0)
    elif rows:
        axes.text(50, (len(rows) - 1) / 2, "no region known", ha="center", va="center", fontsize=LABEL_PT,
                  color="#777777")

    # the dot plot of the conserved markers
    axes = _axes(figure, layout, layout.dots_box)
    genes = list(content.genes)
    box = layout.dots_box
    figure.text(box[0] / width_in, title_y, "Conserved marker genes", ha="left", va="top", fontsize=CHART_TITLE_PT,
                fontweight="bold")
    if genes and rows:
        mean, fraction = np.asarray(content.mean, float), np.asarray(content.fraction, float)
        ok = np.isfinite(mean) & np.isfinite(fraction)
        jj, ii = np.meshgrid(np.arange(len(genes)), np.arange(len(rows)))
        vmax = float(np.nanmax(np.where(ok, mean, np.nan))) if ok.any() else 1.0
        vmax = vmax if vmax > 0 else 1.0
        # dot diameter at most a row's height: area in pt^2
        row_pt = min(ROW_IN, box[2] / max(1, len(genes))) * 72 * 0.85
        sizes = np.clip(fraction, 0, 1) * row_pt ** 2
        held = np.asarray(content.held, bool)
        dots = axes.scatter(jj[ok], ii[ok], s=sizes[ok], c=mean[ok], cmap=_listed_cmap(_CMAP), vmin=0, vmax=vmax,
                            edgecolors=np.where(held[ok], "black", "none"), linewidths=0.8)
        axes.set_xlim(-0.6, len(genes) - 0.4)
        axes.set_xticks(range(len(genes)))
        widest_in = max(len(g) for g in genes) * LABEL_PT * 0.6 / 72
        if widest_in < box[2] / len(genes) * 0.95:  # level names read best
            axes.set_xticklabels(genes, fontsize=LABEL_PT)
        else:
            axes.set_xticklabels(genes, fontsize=LABEL_PT, rotation=45, ha="right", rotation_mode="anchor")
        axes.tick_params(axis="x", length=0)
        axes.grid(color="#eeeeee", linewidth=0.5)
        axes.set_axisbelow(True)
        cax = figure.add_axes(((box[0] + box[2] + 0.15) / width_in, (box[1] + box[3] * 0.35) / height_in,
                               0.09 / width_in, box[3] * 0.65 / height_in))
        bar = figure.colorbar(dots, cax=cax)
        bar.set_label("mean log2", fontsize=LABEL_PT - 1)
        bar.ax.tick_params(labelsize=LABEL_PT - 1.5)
        key = [Line2D([], [], marker="o", linestyle="", markersize=math.sqrt(f) * row_pt, color="#888888",
                      label=f"{int(round(100 * f))}%") for f in (0.25, 0.5, 1.0)]
        key.append(Line2D([], [], marker="o", linestyle="", markersize=row_pt * 0.7, markerfacecolor="white",
                          markeredgecolor="black", label="test holds"))
        figure.legend(handles=key, loc="upper left", bbox_to_anchor=(box[0] / width_in, (box[1] - 0.5) / height_in),
                      ncol=4, fontsize=LABEL_PT - 1, frameon=False, borderaxespad=0, handletextpad=0.3,
                      title="dot area: cells expressing", title_fontsize=LABEL_PT - 1, alignment="left")
    else:
        axes.set_xticks([])
        axes.text(0.5, 0.5, "no gene is measured in every species' cells", transform=axes.transAxes, ha="center",
                  va="center", fontsize=LABEL_PT, color="#777777")
    _rows_axis(axes, rows, False)
    if content.dots_note:
        figure.text((box[0] + box[2]) / width_in, (layout.charts_bottom + 0.02) / height_in, content.dots_note,
                    ha="right", va="bottom", fontsize=LABEL_PT - 1.5, color="#555555")

    # the maps side by side at one scale
    if layout.maps is not None:
        if len(maps) != len(layout.maps.boxes):
            raise ValueError(f"{len(maps)} maps for {len(layout.maps.boxes)} boxes")
        for (rgba, window, title), box, (tx, ty) in zip(maps, layout.maps.boxes, layout.maps.title_anchors):
            rgba = _validate(rgba, fmt, width_in, height_in, dpi)
            x0, x1, y0, y1 = window
            axes = _axes(figure, layout, box)
            low, high = (y1, y0) if y_down else (y0, y1)
            axes.imshow(rgba, extent=(x0, x1, low, high), origin="upper", interpolation="none", aspect="auto")
            axes.set_xlim(x0, x1)
            axes.set_ylim(low, high)
            axes.set_axis_off()
            if layout.scale_bar_mm > 0:
                _add_scale_bar_under(axes, layout.scale_bar_mm, fontsize=PANEL_SCALE_BAR_PT)
            figure.text(tx / width_in, ty / height_in, title, ha="center", va="top", fontsize=MAP_TITLE_PT,
                        multialignment="center")
    return figure
