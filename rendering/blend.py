"""Two genes in one picture: a two-channel colour blend with a 2-D legend, or only the cells expressing both.

Built on the aggregation helpers of :mod:`rendering.raster` (one datashader pass, index rasters, the
nearest-fill spread and the colour-table compositor), so it shares their orientation rules and speed.

How a pixel gets its colour
---------------------------
Each gene is scaled to ``0..1`` over its fixed shown range and aggregated per pixel with ``max`` (rare
expressing cells stay visible when zoomed out), each channel independently: a pixel is "both" when its cells
reach both maxima, which at low zoom can be two neighbouring cells. The two scaled values pick a cell of a
``BLEND_LEVELS x BLEND_LEVELS`` colour table, which is also the 2-D legend (:func:`legend_2d_rgba`), so the
legend always matches the picture.

Colours (why these)
-------------------
* ``theme="dark"`` (default; a fluorescence-style picture on a near-black background): **magenta** (gene A)
  and **green** (gene B), both high -> **white**, as two fluorescence channels add up. Magenta/green is the
  colour-blind-safe replacement for red/green recommended for two-channel microscopy: magenta carries blue,
  which deuteranopes and protanopes (about 1 in 12 men) still see, so the two channels never collapse into
  one hue, and the sum is white for everyone (under protanopia magenta reads violet-blue, green reads
  olive-yellow). Cells expressing neither stay a dark grey, so the tissue remains visible.
* ``theme="light"`` (for a white page): the bivariate scheme of J. Stevens ("Bivariate choropleth maps: a
  how-to guide", 2015): light grey (neither), **pink** ``#be64ac`` (A), **teal** ``#5ac8c8`` (B), **dark
  blue** ``#3b4994`` (both), interpolated bilinearly. Pink and teal differ in lightness and on the blue-yellow
  axis that colour-blind readers keep; "both" is the darkest colour, so it stands out on white.

Both themes interpolate their four corner colours bilinearly (:class:`BlendTheme`).

Cells with no value (NaN in both genes: no expression row) are a neutral grey distinct from "expresses
neither". ``mode="both"`` draws only the cells whose values exceed ``threshold_a`` AND ``threshold_b``, in
their blend colour, on top of every other cell drawn in a flat dim grey.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence

import datashader as ds
import numpy as np

from rendering.colors import TRANSPARENT, parse_hex, to_rgba
from rendering.png import encode_png
from rendering.raster import (
    Viewport,
    _aggregate,
    _check_length,
    _composite,
    _coords,
    _orient,
    _spread,
)

logger = logging.getLogger(__name__)

#: Levels per channel of the blend table (32 x 32 colours: finer than the eye separates in a 2-D legend).
BLEND_LEVELS = 32
MODES = ("blend", "both")


@dataclasses.dataclass(frozen=True)
class BlendTheme:
    """Corner colours of a two-gene colour table and the greys around it (all ``#rrggbb``).

    The table interpolates the four corners ``low`` (neither gene), ``color_a``, ``color_b`` and ``color_both``
    bilinearly, so the corners are exact and a pixel's colour moves smoothly with either value.
    """

    name: str
    low: str
    color_a: str
    color_b: str
    color_both: str
    nan: str
    dimmed: str
    background: str | tuple[int, int, int, int]
    #: Names of ``color_a``, ``color_b`` and ``color_both`` for text (a figure title, a legend); empty: the hex codes.
    words: tuple[str, str, str] = ("", "", "")

    def colour_words(self) -> tuple[str, str, str]:
        """``(gene A colour, gene B colour, both colour)`` in words, e.g. ``("magenta", "green", "white")``."""
        hexes = (self.color_a, self.color_b, self.color_both)
        return tuple(word or code for word, code in zip(self.words, hexes))  # type: ignore[return-value]


THEMES: dict[str, BlendTheme] = {
    "dark": BlendTheme("dark", low="#303030", color_a="#ff00ff", color_b="#00ff00", color_both="#ffffff",
                       nan="#6e6e6e", dimmed="#404040", background="#0a0a0a", words=("magenta", "green", "white")),
    "light": BlendTheme("light", low="#e8e8e8", color_a="#be64ac", color_b="#5ac8c8", color_both="#3b4994",
                        nan="#b0b0b0", dimmed="#dcdcdc", background=TRANSPARENT, words=("pink", "teal", "dark blue")),
}
#: The theme of the viewer's two-gene pictures (the picture route passes none, so :func:`render_two_genes` uses it)
#: and therefore of their 2-D legend, their figure key and the colour words of a figure's title.
DEFAULT_THEME = "dark"


def _theme(theme: str | BlendTheme) -> BlendTheme:
    if isinstance(theme, BlendTheme):
        return theme
    if theme not in THEMES:
        raise ValueError(f"theme={theme!r} must be one of {', '.join(THEMES)}")
    return THEMES[theme]


@functools.lru_cache(maxsize=8)
def _blend_table_cached(theme: BlendTheme, levels: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, levels)
    a = t[:, None]  # rows: gene A level
    b = t[None, :]  # columns: gene B level
    low, ca, cb, cab = (np.asarray(parse_hex(c), dtype=np.float64) for c in
                        (theme.low, theme.color_a, theme.color_b, theme.color_both))
    rgb = ((1 - a) * (1 - b))[..., None] * low + (a * (1 - b))[..., None] * ca \
        + ((1 - a) * b)[..., None] * cb + (a * b)[..., None] * cab
    table = np.empty((levels, levels, 4), dtype=np.uint8)
    table[..., :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    table[..., 3] = 255
    table.setflags(write=False)
    return table


def blend_table(theme: str | BlendTheme = DEFAULT_THEME, levels: int = BLEND_LEVELS) -> np.ndarray:
    """The colour table of a theme.

    Returns
    -------
    numpy.ndarray
        ``(levels, levels, 4)`` uint8 RGBA, read-only: entry ``[i, j]`` is the colour of gene A at level ``i``
        and gene B at level ``j`` (0 = at or below the range's low end, ``levels - 1`` = at or above its top).
    """
    if levels < 2:
        raise ValueError(f"levels={levels} must be at least 2")
    return _blend_table_cached(_theme(theme), int(levels))


def blend_color(level_a: float, level_b: float, theme: str | BlendTheme = DEFAULT_THEME) -> tuple[int, int, int, int]:
    """RGBA of scaled values ``level_a, level_b`` in ``0..1`` (as the picture draws them)."""
    table = blend_table(theme)
    n = table.shape[0]
    i = min(max(int(math.floor(float(level_a) * n)), 0), n - 1)
    j = min(max(int(math.floor(float(level_b) * n)), 0), n - 1)
    return tuple(int(c) for c in table[i, j])  # type: ignore[return-value]


def _check_range(name: str, rng: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={rng!r} must be a pair (low, high)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}=({lo!r}, {hi!r}) must be finite with low < high")
    return lo, hi


def _levels(agg: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """Aggregate (finite values; -inf = no value) -> int level 0..n-1 (no value -> 0)."""
    finite = np.isfinite(agg)
    out = np.zeros(agg.shape, dtype=np.int32)
    scaled = (agg[finite] - lo) * (n / (hi - lo))
    out[finite] = np.clip(np.floor(scaled), 0, n - 1).astype(np.int32)
    return out


def render_two_genes(
    x: np.ndarray,
    y: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    viewport: Viewport,
    *,
    range_a: Sequence[float],
    range_b: Sequence[float],
    mode: str = "blend",
    threshold_a: float = 0.0,
    threshold_b: float = 0.0,
    theme: str | BlendTheme = DEFAULT_THEME,
    background: str | Sequence[int] | None = None,
    spread_px: int = 0,
    y_down: bool = False,
    dot_radius_px: float | None = None,
) -> np.ndarray:
    """Picture of cells coloured by two genes at once.

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n,)`` float cell coordinates.
    values_a, values_b : numpy.ndarray
        ``(n,)`` float values of gene A and gene B (log2); NaN = no value.
    viewport : Viewport
        Window and picture size.
    range_a, range_b : pair of float
        Fixed shown ranges ``(low, high)`` (e.g. :func:`rendering.raster.default_gene_range` of each gene):
        at or below ``low`` a channel is off, at or above ``high`` it is full.
    mode : {"blend", "both"}
        ``blend``: every cell in its two-gene colour. ``both``: only cells with ``value_a > threshold_a`` and
        ``value_b > threshold_b`` in their colour, drawn over all other cells in the theme's dim grey.
    threshold_a, threshold_b : float
        Thresholds of ``mode="both"`` (default 0: detected at all).
    theme : {"dark", "light"} or BlendTheme
        Colour scheme (see the module docstring).
    background : str or tuple, optional
        Colour of empty pixels; default the theme's (near black for ``dark``, transparent for ``light``).
    spread_px : int
        Enlarge cells into empty neighbouring pixels up to this radius.
    y_down : bool
        Display orientation (see :mod:`rendering.raster`).
    dot_radius_px : float, optional
        Draw each cell as a dot of this radius in pixels (:func:`rendering.raster.dot_radius_px`); overrides
        ``spread_px``.

    Returns
    -------
    numpy.ndarray
        ``(viewport.height_px, viewport.width_px, 4)`` uint8 RGBA, row 0 = top of the picture. Empty pixels are
        ``background``: to make the theme's background fill the whole plot (not only the picture's window), give
        the plot area :func:`plot_background` as its colour.

    Raises
    ------
    ValueError
        Arrays of different lengths, a bad range, mode or theme.
    """
    x, y = _coords(x, y)
    n = x.shape[0]
    va = np.asarray(values_a)
    vb = np.asarray(values_b)
    _check_length("values_a", va, n)
    _check_length("values_b", vb, n)
    va = va if np.issubdtype(va.dtype, np.floating) else va.astype(np.float32)
    vb = vb if np.issubdtype(vb.dtype, np.floating) else vb.astype(np.float32)
    lo_a, hi_a = _check_range("range_a", range_a)
    lo_b, hi_b = _check_range("range_b", range_b)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    th = _theme(theme)
    table = blend_table(th)
    levels = table.shape[0]
    lut = np.concatenate([table.reshape(-1, 4), np.asarray(to_rgba(th.nan), np.uint8)[None]], axis=0)
    nan_index = levels * levels
    bg = to_rgba(th.background if background is None else background)

    # -inf stands for "no value": max skips NaN (= not in this layer) but keeps -inf, so a pixel of cells
    # without values is told from an empty one.
    neg = np.float32(-np.inf)
    sa = np.where(np.isnan(va), neg, va).astype(np.float32, copy=False)
    sb = np.where(np.isnan(vb), neg, vb).astype(np.float32, copy=False)
    nan32 = np.float32(np.nan)
    if mode == "blend":
        columns = {"a": sa, "b": sb}
        reductions = {"a": ds.max("a"), "b": ds.max("b")}
    else:
        both = (va > float(threshold_a)) & (vb > float(threshold_b))  # NaN compares False
        # under layer: 0 = a cell with a value, -inf = a cell without (NaN grey)
        no_value = np.isnan(va) & np.isnan(vb)
        columns = {"a": np.where(both, sa, nan32), "b": np.where(both, sb, nan32),
                   "under": np.where(both, nan32, np.where(no_value, neg, np.float32(0)))}
        reductions = {"a": ds.max("a"), "b": ds.max("b"), "under": ds.max("under")}
    aggs = _aggregate(x, y, columns, reductions, viewport)

    agg_a, agg_b = aggs["a"], aggs["b"]
    top = np.full(agg_a.shape, -1, dtype=np.int32)
    drawn = ~np.isnan(agg_a)
    top[drawn] = (_levels(agg_a, lo_a, hi_a, levels) * levels + _levels(agg_b, lo_b, hi_b, levels))[drawn]
    top[drawn & np.isneginf(agg_a) & np.isneginf(agg_b)] = nan_index
    top = _spread(top, spread_px, dot_radius_px)
    if mode == "blend":
        image = _composite(top, lut, None, None, bg)
    else:
        under_agg = aggs["under"]
        under = np.full(under_agg.shape, -1, dtype=np.int32)
        under[under_agg == 0] = 0
        under[np.isneginf(under_agg)] = 1
        under = _spread(under, spread_px, dot_radius_px)
        under_lut = np.stack([np.asarray(to_rgba(th.dimmed), np.uint8), np.asarray(to_rgba(th.nan), np.uint8)])
        image = _composite(top, lut, under, under_lut, bg)
    return _orient(image, y_down)


def plot_background(theme: str | BlendTheme = DEFAULT_THEME) -> str:
    """The colour a plot area showing a two-gene picture should have so that the picture's background fills the
    plot exactly, as CSS: ``#rrggbb`` (``rgba(0,0,0,0)`` for a transparent theme background).

    A picture covers its data window; where the plot shows more than that window (its aspect ratio is kept) the
    plot's own colour shows, and a white plot around a near-black picture reads as strips.
    """
    background = to_rgba(_theme(theme).background)
    if background[3] == 0:
        return "rgba(0,0,0,0)"
    return "#{:02x}{:02x}{:02x}".format(*background[:3])


@dataclasses.dataclass(frozen=True)
class Legend2D:
    """The 2-D legend of a two-gene picture.

    Attributes
    ----------
    png : bytes
        The legend picture: gene A grows left to right, gene B bottom to top.
    rgba : numpy.ndarray
        ``(size_px, size_px, 4)`` uint8, the same picture (row 0 = top = gene B high).
    range_a, range_b : tuple of float
        The value ranges along x (gene A) and y (gene B).
    gene_a, gene_b : str
        Axis titles.
    """

    png: bytes
    rgba: np.ndarray
    range_a: tuple[float, float]
    range_b: tuple[float, float]
    gene_a: str
    gene_b: str

    def to_dict(self) -> dict:
        """JSON-able description (PNG as a ``data:`` URI) for a ``dcc.Store`` or an HTTP answer."""
        import base64

        return {"src": "data:image/png;base64," + base64.b64encode(self.png).decode("ascii"),
                "range_a": list(self.range_a), "range_b": list(self.range_b),
                "gene_a": self.gene_a, "gene_b": self.gene_b}


def legend_2d_rgba(size_px: int, theme: str | BlendTheme = DEFAULT_THEME, *, mode: str = "blend",
                   range_a: Sequence[float] = (0.0, 1.0), range_b: Sequence[float] = (0.0, 1.0),
                   threshold_a: float = 0.0, threshold_b: float = 0.0) -> np.ndarray:
    """The blend table drawn as a square: gene A along x (left low), gene B along y (bottom low).

    Pixel column ``p`` shows the colour :func:`render_two_genes` gives gene A at the value of the column's left
    edge (the same levels: ``floor(p * BLEND_LEVELS / size_px)``), row likewise for gene B, so the four corner
    pixels are exactly the colours of (low, low), (high, low), (low, high) and (high, high).

    Parameters
    ----------
    size_px : int
        Side of the square (2..2048).
    theme : {"dark", "light"} or BlendTheme
    mode : {"blend", "both"}
        ``"both"``: the part of the square at or below a threshold (a pixel's centre value ``<= threshold_a``
        along x or ``<= threshold_b`` along y) is the theme's dim grey, as such cells are drawn in that mode.
    range_a, range_b : pair of float
        The shown ranges of the picture (only needed to place the thresholds of ``mode="both"``).
    threshold_a, threshold_b : float
        The thresholds of ``mode="both"``.

    Returns
    -------
    numpy.ndarray
        ``(size_px, size_px, 4)`` uint8 RGBA, row 0 = top of the picture.
    """
    size_px = int(size_px)
    if not 2 <= size_px <= 2048:
        raise ValueError(f"legend size {size_px} px must be in 2..2048")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    th = _theme(theme)
    table = blend_table(th)
    n = table.shape[0]
    idx = np.minimum((np.arange(size_px) * n) // size_px, n - 1)
    rows_b = idx[::-1]  # top row = gene B high
    rgba = np.ascontiguousarray(table[idx[None, :], rows_b[:, None]])
    if mode == "both":
        lo_a, hi_a = _check_range("range_a", range_a)
        lo_b, hi_b = _check_range("range_b", range_b)
        centre = (np.arange(size_px) + 0.5) / size_px
        below_a = lo_a + centre * (hi_a - lo_a) <= float(threshold_a)  # per column
        below_b = (lo_b + centre * (hi_b - lo_b) <= float(threshold_b))[::-1]  # per row, top = high
        rgba[below_b[:, None] | below_a[None, :]] = to_rgba(th.dimmed)
    return rgba


def legend_2d_png(size_px: int = 96, *, range_a: Sequence[float] = (0.0, 1.0), range_b: Sequence[float] = (0.0, 1.0),
                  gene_a: str = "A", gene_b: str = "B", theme: str | BlendTheme = DEFAULT_THEME) -> Legend2D:
    """The 2-D legend of :func:`render_two_genes` as a PNG with its value ranges.

    Returns
    -------
    Legend2D
        ``png`` bytes, the ``rgba`` array, ``range_a``/``range_b`` and the gene names.
    """
    rgba = legend_2d_rgba(size_px, theme)
    return Legend2D(encode_png(rgba), rgba, _check_range("range_a", range_a), _check_range("range_b", range_b),
                    str(gene_a), str(gene_b))
