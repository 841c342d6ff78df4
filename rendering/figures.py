"""Publication figures: a cell picture with axes in mm, scale bar, legend or colour bar, title and species.

The cells are ONE embedded raster (``imshow`` with the viewport as extent, no resampling in vector formats);
everything else (axes, ticks, scale bar, legend, colour bar labels, title, species) is vector text and lines,
so a journal figure can be edited in Illustrator/Inkscape: SVG keeps text as ``<text>`` (``svg.fonttype =
'none'``) and PDF embeds TrueType fonts (``pdf.fonttype = 42``).

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
import threading
from collections.abc import Sequence

import numpy as np

from rendering.colors import cmap_lut, parse_hex
from rendering.raster import Viewport

logger = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")
#: Bounds of an export request (a request cannot ask for a 100,000-pixel picture).
MIN_DPI, MAX_DPI = 50, 1200
MAX_FIGURE_PX = 12_000
MAX_SIZE_IN = 40.0
#: Legend entries shown at most; the rest are summarised in one line.
MAX_LEGEND_ENTRIES = 60

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
) -> bytes:
    """Draw a publication figure around a cell picture.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8 picture from :mod:`rendering.raster` for ``viewport``, rendered with the SAME
        ``y_down`` (row 0 = top); render it at :func:`export_raster_px` size, with
        ``spread_px=auto_spread_px(n_cells_in_view, that_viewport)`` so cells stay visible at print resolution.
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
    legend : list of (label, hex colour), optional
        Categories to list (the visible ones), in order; more than :data:`MAX_LEGEND_ENTRIES` are summarised.
    colorbar : (cmap, vmin, vmax, label), optional
        Colour bar for a numeric picture, same table as the picture.
    y_down : bool
        The picture's orientation (y axis reversed, as the atlas draws sections).
    scale_bar_mm : bool
        Draw a scale bar (length 1/2/5 x 10^k mm, about a fifth of the width); only when ``units == "mm"``.
    units : str
        Data units, for the axis labels (``"mm"`` for sections; e.g. ``""`` for a UMAP).
    show_axes : bool
        Draw the x/y axes with ticks.

    Returns
    -------
    bytes
        The file in ``fmt``.

    Raises
    ------
    ValueError
        On a bad picture, format, size or dpi (naming it).
    """
    rgba = _validate(rgba, fmt, width_in, height_in, dpi)
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
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
    unit_suffix = f" ({units})" if units else ""
    if show_axes:
        axes.set_xlabel(f"x{unit_suffix}")
        axes.set_ylabel(f"y{unit_suffix}")
    else:
        axes.set_axis_off()
    # figure-level, not axes titles: a narrow section's axes is shorter than its title, which then ran into the
    # species and the legend; constrained layout makes room for the suptitle above the axes AND the legend
    if title or species:
        heading = figure.suptitle(title or " ", x=0.01, ha="left", fontsize=11)  # y: set by the layout
        if species:  # right after the title (measured), so it never lands on the legend at the top right
            right = heading.get_window_extent(figure.canvas.get_renderer()).x1 / figure.bbox.width if title else 0.01
            top = 1.0 - figure.get_layout_engine().get()["h_pad"] / height_in  # where the layout puts the title
            figure.text(right + (0.012 if title else 0.0), top, species, ha="left", va="top", fontsize=10,
                        fontstyle="italic")

    if scale_bar_mm and units == "mm":
        from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

        length = _nice_scale_bar_mm(viewport.x1 - viewport.x0)
        axes.add_artist(
            AnchoredSizeBar(
                axes.transData, length, _scale_bar_label(length), loc="lower right", frameon=False,
                size_vertical=0, pad=0.6, sep=3, color="black", fontproperties={"size": 8},
            )
        )

    if legend:
        entries = list(legend)
        handles = [Patch(facecolor=np.asarray(parse_hex(color)) / 255.0, edgecolor="none", label=str(label))
                   for label, color in entries[:MAX_LEGEND_ENTRIES]]
        if len(entries) > MAX_LEGEND_ENTRIES:
            handles.append(Patch(facecolor="none", edgecolor="none",
                                 label=f"... and {len(entries) - MAX_LEGEND_ENTRIES} more"))
        n_cols = 1 if len(handles) <= 20 else 2 if len(handles) <= 40 else 3
        figure.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False, ncols=n_cols,
                      handlelength=1.0, handleheight=1.0, borderaxespad=0.2)
    if colorbar is not None:
        cmap_name, vmin, vmax, label = colorbar
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
            raise ValueError(f"colorbar range vmin={vmin!r}, vmax={vmax!r} must be finite with vmin < vmax")
        mappable = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=_listed_cmap(cmap_name))
        bar = figure.colorbar(mappable, ax=axes, shrink=0.6, pad=0.02)
        bar.set_label(label, fontsize=9)
        bar.ax.tick_params(labelsize=8)

    _keep_labels_inside(figure, axes)
    metadata = {"png": {"Software": "abc-atlas-viewer"},
                "svg": {"Date": None, "Creator": "abc-atlas-viewer"},
                "pdf": {"CreationDate": None, "Creator": "abc-atlas-viewer"}}[fmt]
    if title:
        metadata["Title"] = title
    buffer = io.BytesIO()
    with _RC_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "atlas"}):
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, facecolor="white")
    return buffer.getvalue()
