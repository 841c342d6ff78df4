"""Cells -> RGBA rasters: datashader aggregation plus colour look-up tables, as pure functions of arrays.

Categorical pictures (taxonomy levels, regions) aggregate ONE integer code per cell with a pick-one reduction
(``ds.last``, the painter's algorithm: the cell later in array order wins a shared pixel, as in a scatter plot)
and map the code raster through a fixed code -> colour table. Memory is one ``(H, W)`` float64 aggregate whatever
the number of categories; per-category counts (``count_cat`` / ``by``) would need ``n_categories x H x W`` and
do not fit for 5,322 clusters. ``ds.last`` is also the fastest datashader reduction on the CPU (it only writes;
``max``/``first`` compare first), about 4x faster than ``ds.max`` at 4M cells.

Numeric pictures (genes) aggregate the value per pixel with ``max`` (default) or ``mean`` and map it through a
256-entry colour map table over a fixed, shown range ``[vmin, vmax]``. As a biologist reads a gene map, cells that
do not express the gene are light grey UNDER the expressing cells (whose dots are never covered by a neighbour's
zero), and cells without a value ("not measured", NaN) have a colour of their own.

Cell size: :func:`dot_radius_px` proposes a radius (a real number of pixels) from the density of the cells in view,
or their physical size when zoomed in, and :func:`spread_dots` draws dots whose area follows it continuously;
:func:`auto_spread_px` / :func:`spread_index` are the older whole-pixel disks.

Highlighting (a term, a selection) aggregates two layers in ONE datashader pass (a ``summary`` reduction): the
other cells, blended toward light grey, and the highlighted cells drawn on top with their own colour.

Orientation
-----------
Datashader's aggregate has row 0 at ``y0``. The returned picture has row 0 = the TOP of the picture as displayed:

* ``y_down=False`` (y grows upward, the usual plot): row 0 is at ``y1``; row ``r`` covers
  ``[y1 - (r + 1) * dy, y1 - r * dy)`` with ``dy = (y1 - y0) / height_px``.
* ``y_down=True`` (y axis reversed, y grows downward like image rows, as the atlas draws sections): row 0 is at
  ``y0``; row ``r`` covers ``[y0 + r * dy, y0 + (r + 1) * dy)``.

Column ``c`` always covers ``[x0 + c * dx, x0 + (c + 1) * dx)``. Place the picture in Plotly with
:meth:`Viewport.plotly_image` (``x=x0``, ``y=`` the top edge, ``sizex``, ``sizey``, ``sizing="stretch"``).

Every per-pixel step after the aggregation (aggregate -> index raster -> colours, the rows flipped into display
order in the same pass) is one numba loop, and colour tables are parsed once per colour list
(:func:`rendering.colors.cached_lut`). :mod:`rendering.blend` (two genes in one picture) builds on
:func:`_aggregate`, index rasters, :func:`spread_index` and :func:`_composite`.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Iterable, Sequence

import datashader as ds
import numba
import numpy as np
import pandas as pd

from rendering.colors import NAN_GREY, TRANSPARENT, ZERO_GREY, cached_lut, cmap_lut, dim_lut, to_rgba

logger = logging.getLogger(__name__)

#: Default upper bound on a picture side, in pixels (a request cannot ask for a 100,000-pixel picture).
DEFAULT_MAX_PX = 8192
#: Largest spread radius :func:`auto_spread_px` proposes.
MAX_AUTO_SPREAD_PX = 5
#: Diameter of a cell drawn at its physical size when a dataset gives none (mm): a brain cell body is about
#: 10 um across.
CELL_DIAMETER_MM = 0.010
#: Largest dot radius the density rule of :func:`dot_radius_px` proposes (px): larger dots of sparse cells read
#: as blobs, so beyond it only the physical size makes dots grow.
MAX_DENSITY_RADIUS_PX = 2.5
#: Largest dot radius :func:`dot_radius_px` proposes (px), a cell at physical size at the deepest zoom.
MAX_DOT_RADIUS_PX = 10.0
#: Number of entries of a numeric colour table (plus one for NaN).
N_NUMERIC_COLORS = 256

_HOW_NUMERIC = ("max", "mean")


@dataclasses.dataclass(frozen=True)
class Viewport:
    """The data window drawn and the picture size.

    Attributes
    ----------
    x0, x1, y0, y1 : float
        Data range drawn (e.g. slab mm or UMAP units), ``x0 < x1`` and ``y0 < y1`` whatever the display
        orientation.
    width_px, height_px : int
        Picture size in pixels, each in ``1..max_px``.
    max_px : int, init only
        Upper bound for ``width_px`` and ``height_px`` (default :data:`DEFAULT_MAX_PX`); not stored.

    Raises
    ------
    ValueError
        Naming the offending field: a range bound that is not a finite number, ``x0 >= x1`` or ``y0 >= y1``, a
        size that is not a positive integer or exceeds ``max_px``.
    """

    x0: float
    x1: float
    y0: float
    y1: float
    width_px: int
    height_px: int
    max_px: dataclasses.InitVar[int] = DEFAULT_MAX_PX

    def __post_init__(self, max_px: int) -> None:
        for name in ("x0", "x1", "y0", "y1"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Viewport.{name}={value!r} is not a number") from None
            if not math.isfinite(number):
                raise ValueError(f"Viewport.{name}={value!r} must be finite")
            object.__setattr__(self, name, number)
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            integral = isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())
            if isinstance(value, bool) or not integral:
                raise ValueError(f"Viewport.{name}={value!r} must be a whole number of pixels")
            if value < 1:
                raise ValueError(f"Viewport.{name}={value!r} must be positive")
            if value > max_px:
                raise ValueError(f"Viewport.{name}={value!r} exceeds the limit of {max_px} px")
            object.__setattr__(self, name, int(value))
        if not self.x0 < self.x1:
            raise ValueError(f"Viewport.x1={self.x1!r} must be greater than x0={self.x0!r}")
        if not self.y0 < self.y1:
            raise ValueError(f"Viewport.y1={self.y1!r} must be greater than y0={self.y0!r}")

    @property
    def x_per_px(self) -> float:
        """Data units per pixel along x."""
        return (self.x1 - self.x0) / self.width_px

    @property
    def y_per_px(self) -> float:
        """Data units per pixel along y."""
        return (self.y1 - self.y0) / self.height_px

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask ``(n,)`` of the cells inside the window (bounds included)."""
        x = np.asarray(x)
        y = np.asarray(y)
        if (x.ndim == 1 and x.shape == y.shape and x.dtype == y.dtype and x.dtype in (np.float32, np.float64)):
            # one pass instead of seven over millions of cells; bounds in the coordinates' dtype, as numpy compares
            kind = x.dtype.type
            return _inside_kernel(x, y, kind(self.x0), kind(self.x1), kind(self.y0), kind(self.y1))
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def count_inside(self, x: np.ndarray, y: np.ndarray) -> int:
        """Number of cells inside the window (bounds included): ``contains(x, y).sum()`` without the mask."""
        x = np.asarray(x)
        y = np.asarray(y)
        if (x.ndim == 1 and x.shape == y.shape and x.dtype == y.dtype and x.dtype in (np.float32, np.float64)):
            kind = x.dtype.type
            return int(_count_inside_kernel(x, y, kind(self.x0), kind(self.x1), kind(self.y0), kind(self.y1)))
        return int(np.count_nonzero(self.contains(x, y)))

    def plotly_image(self, *, y_down: bool) -> dict:
        """Placement of a picture rendered for this viewport as a Plotly layout image (without ``source``).

        ``y`` is the data value at the top edge of the picture: ``y0`` when the y axis is reversed
        (``y_down=True``), else ``y1``. Plotly draws a ``yanchor="top"`` image downward from there, so the
        picture covers exactly ``[x0, x1] x [y0, y1]`` in both orientations.
        """
        return {
            "xref": "x",
            "yref": "y",
            "x": self.x0,
            "y": self.y0 if y_down else self.y1,
            "sizex": self.x1 - self.x0,
            "sizey": self.y1 - self.y0,
            "xanchor": "left",
            "yanchor": "top",
            "sizing": "stretch",
            "layer": "below",
        }


# --------------------------------------------------------------------------------------------------------------
# Helpers shared by the renderers
# --------------------------------------------------------------------------------------------------------------


def _coords(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"x has {x.shape[0]} cells but y has {y.shape[0]}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float64)
    return x, y


def _check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of one value per cell ({n}), got shape {array.shape}")


def _aggregate(
    x: np.ndarray, y: np.ndarray, columns: dict[str, np.ndarray], reductions: dict, viewport: Viewport
) -> dict[str, np.ndarray]:
    """Run ONE datashader points pass computing every named reduction.

    Returns
    -------
    dict
        name -> ``(height_px, width_px)`` float64 aggregate, row 0 at ``y0`` (datashader's order).
    """
    frame = pd.DataFrame({"x": x, "y": y, **columns}, copy=False)
    canvas = ds.Canvas(
        plot_width=viewport.width_px,
        plot_height=viewport.height_px,
        x_range=(viewport.x0, viewport.x1),
        y_range=(viewport.y0, viewport.y1),
    )
    if len(reductions) == 1:
        (name, reduction), = reductions.items()
        agg = canvas.points(frame, "x", "y", agg=reduction)
        return {name: np.asarray(agg.values)}
    dataset = canvas.points(frame, "x", "y", agg=ds.summary(**reductions))
    return {name: np.asarray(dataset[name].values) for name in reductions}


def _codes_to_index(agg: np.ndarray) -> np.ndarray:
    """Float aggregate of codes (NaN = empty) -> int32 index raster (-1 = empty)."""
    return _codes_index_kernel(np.ascontiguousarray(agg))


# The per-pixel passes below are numba loops: one read and one write per pixel. The numpy versions (np.full,
# masks, fancy indexing, a flipped copy) made 4-6 passes over fresh 3 MB arrays and were two thirds of a 1000x800
# section picture's time before PNG encoding.


@numba.njit(cache=True, nogil=True)
def _codes_index_kernel(agg):  # pragma: no cover - compiled
    height, width = agg.shape
    index = np.empty((height, width), dtype=np.int32)
    for r in range(height):
        for c in range(width):
            value = agg[r, c]
            index[r, c] = -1 if np.isnan(value) else np.int32(value)
    return index


@numba.njit(cache=True, nogil=True)
def _inside_kernel(x, y, x0, x1, y0, y1):  # pragma: no cover - compiled
    inside = np.empty(x.shape[0], dtype=np.bool_)
    for i in range(x.shape[0]):
        inside[i] = (x[i] >= x0) and (x[i] <= x1) and (y[i] >= y0) and (y[i] <= y1)
    return inside


@numba.njit(cache=True, nogil=True)
def _count_inside_kernel(x, y, x0, x1, y0, y1):  # pragma: no cover - compiled
    n = 0
    for i in range(x.shape[0]):
        if (x[i] >= x0) and (x[i] <= x1) and (y[i] >= y0) and (y[i] <= y1):
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _has_nan_kernel(values):  # pragma: no cover - compiled
    for i in range(values.shape[0]):
        if np.isnan(values[i]):
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _nan_to_neg_inf_kernel(values):  # pragma: no cover - compiled
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        value = values[i]
        out[i] = -np.inf if np.isnan(value) else value
    return out


@numba.njit(cache=True, nogil=True)
def _codes_field_kernel(codes):  # pragma: no cover - compiled
    """Codes -> float32 aggregation column (code < 0 -> NaN, not drawn) and the largest code (-1 if none)."""
    field = np.empty(codes.shape[0], dtype=np.float32)
    top = -1
    for i in range(codes.shape[0]):
        code = codes[i]
        if code < 0:
            field[i] = np.nan
        else:
            field[i] = code
            if code > top:
                top = code
    return field, top


@numba.njit(cache=True, nogil=True)
def _paint_codes_kernel(agg, table, background, flip):  # pragma: no cover - compiled
    """Float aggregate of codes (NaN = empty) straight to uint32 RGBA words; ``flip`` writes row r to H-1-r."""
    height, width = agg.shape
    out = np.empty((height, width), dtype=np.uint32)
    n_colors = table.shape[0]
    for r in range(height):
        row = height - 1 - r if flip else r
        for c in range(width):
            value = agg[r, c]
            if np.isnan(value):
                out[row, c] = background
            else:
                code = np.int64(value)
                if code < 0 or code >= n_colors:
                    raise IndexError("a code has no colour in the colour table")
                out[row, c] = table[code]
    return out


@numba.njit(cache=True, nogil=True)
def _paint_kernel(top, top_table, under, under_table, background, flip):  # pragma: no cover - compiled
    """Index rasters (-1 = empty) to uint32 RGBA words; ``top`` wins; ``under`` is ignored when it is (0, 0)."""
    height, width = top.shape
    out = np.empty((height, width), dtype=np.uint32)
    has_under = under.shape[0] > 0
    n_top = top_table.shape[0]
    n_under = under_table.shape[0]
    for r in range(height):
        row = height - 1 - r if flip else r
        for c in range(width):
            t = top[r, c]
            if t >= 0:
                if t >= n_top:
                    raise IndexError("an index raster value is beyond its colour table")
                out[row, c] = top_table[t]
                continue
            if has_under:
                u = under[r, c]
                if u >= 0:
                    if u >= n_under:
                        raise IndexError("an index raster value is beyond its colour table")
                    out[row, c] = under_table[u]
                    continue
            out[row, c] = background
    return out


@numba.njit(cache=True, nogil=True)
def _paint_layers_kernel(indexes, table, offsets, background, flip):  # pragma: no cover - compiled
    """``(L, H, W)`` index rasters (-1 = empty) to uint32 RGBA words: the first layer drawn at a pixel wins; layer
    ``l``'s value ``v`` is ``table[offsets[l] + v]``."""
    n_layers, height, width = indexes.shape
    out = np.empty((height, width), dtype=np.uint32)
    n_table = table.shape[0]
    for r in range(height):
        row = height - 1 - r if flip else r
        for c in range(width):
            word = background
            for layer in range(n_layers):
                value = indexes[layer, r, c]
                if value >= 0:
                    k = offsets[layer] + value
                    if k >= n_table or (layer + 1 < n_layers and k >= offsets[layer + 1]):
                        raise IndexError("an index raster value is beyond its colour table")
                    word = table[k]
                    break
            out[row, c] = word
    return out


@numba.njit(cache=True, nogil=True)
def _values_index_kernel(agg, vmin, scale, n_colors, nan_only, neg_inf_is_nan):  # pragma: no cover - compiled
    """Numeric aggregate -> int32 index: ``floor((v - vmin) * scale)`` clipped to 0..n_colors-1, ``n_colors`` for
    a pixel of only-NaN cells (``nan_only`` mask, or ``-inf`` when ``neg_inf_is_nan``), -1 for empty."""
    height, width = agg.shape
    index = np.empty((height, width), dtype=np.int32)
    has_mask = nan_only.shape[0] > 0
    for r in range(height):
        for c in range(width):
            value = agg[r, c]
            if (has_mask and nan_only[r, c]) or (neg_inf_is_nan and value == -np.inf):
                index[r, c] = n_colors
            elif np.isfinite(value):
                level = np.floor((value - vmin) * scale)
                if level < 0:
                    index[r, c] = 0
                elif level > n_colors - 1:
                    index[r, c] = n_colors - 1
                else:
                    index[r, c] = np.int32(level)
            else:
                index[r, c] = -1
    return index


def _words(lut: np.ndarray) -> np.ndarray:
    """``(N, 4)`` uint8 RGBA table -> ``(N,)`` uint32 words (memory order, as the picture stores them)."""
    return np.ascontiguousarray(lut, dtype=np.uint8).view(np.uint32).ravel()


def _word(color: tuple[int, int, int, int]) -> np.uint32:
    return np.asarray(color, dtype=np.uint8).view(np.uint32)[0]


_NO_INDEX = np.zeros((0, 0), dtype=np.int32)
_NO_MASK = np.zeros((0, 0), dtype=np.bool_)
_NO_TABLE = np.zeros(0, dtype=np.uint32)


def _as_image(words: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint32 RGBA words -> ``(H, W, 4)`` uint8 view."""
    return words.view(np.uint8).reshape(words.shape[0], words.shape[1], 4)


def _paint(
    top_index: np.ndarray,
    top_lut: np.ndarray,
    under_index: np.ndarray | None,
    under_lut: np.ndarray | None,
    background: tuple[int, int, int, int],
    *,
    flip: bool,
) -> np.ndarray:
    """:func:`_composite` that also flips the rows when ``flip`` (the picture's display orientation) in the same
    pass. Returns ``(H, W, 4)`` uint8."""
    words = _paint_kernel(
        np.ascontiguousarray(top_index, dtype=np.int32), _words(top_lut),
        _NO_INDEX if under_index is None else np.ascontiguousarray(under_index, dtype=np.int32),
        _NO_TABLE if under_lut is None else _words(under_lut), _word(background), bool(flip),
    )
    return _as_image(words)


@functools.lru_cache(maxsize=16)
def _disk_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of a disk of ``radius`` px, nearest first (ties in a fixed order), centre excluded."""
    offsets = [
        (dy * dy + dx * dx, dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if 0 < dy * dy + dx * dx <= (radius + 0.5) ** 2
    ]
    offsets.sort()
    dys = np.array([o[1] for o in offsets], dtype=np.int64)
    dxs = np.array([o[2] for o in offsets], dtype=np.int64)
    return dys, dxs


def _paint_layers(layers: Sequence[tuple[np.ndarray, np.ndarray]], background: tuple[int, int, int, int], *,
                  flip: bool) -> np.ndarray:
    """Index rasters with their colour tables, first layer on top, to ``(H, W, 4)`` uint8 (rows flipped when
    ``flip``)."""
    indexes = np.ascontiguousarray(np.stack([np.asarray(index, dtype=np.int32) for index, _ in layers]))
    tables = [_words(lut) for _, lut in layers]
    offsets = np.cumsum([0] + [len(t) for t in tables[:-1]]).astype(np.int64)
    words = _paint_layers_kernel(indexes, np.ascontiguousarray(np.concatenate(tables)), offsets, _word(background),
                                 bool(flip))
    return _as_image(words)


# compiled when imported (an explicit signature): the picture route's warm-up need not know this kernel
@numba.njit("int32[:, ::1](int32[:, ::1], int64[::1], int64[::1], int64, int64, float64)", cache=True, nogil=True)
def _nearest_fill_dots(index, dys, dxs, radius, n_full, extra):  # pragma: no cover - compiled
    """Fill each empty pixel of ``index`` with its nearest drawn pixel at the offsets ``dys``/``dxs`` (nearest
    first, within ``radius``): the first ``n_full`` offsets always, offset ``n_full`` (one more pixel) only for
    the drawn pixels whose position hashes below ``extra`` (0..1)."""
    height, width = index.shape
    # Integral image of filled pixels, to skip empty pixels with nothing within the radius in O(1).
    integral = np.zeros((height + 1, width + 1), dtype=np.int32)
    for r in range(height):
        row_sum = 0
        for c in range(width):
            if index[r, c] >= 0:
                row_sum += 1
            integral[r + 1, c + 1] = integral[r, c + 1] + row_sum
    out = index.copy()
    threshold = np.uint32(min(max(extra, 0.0), 1.0) * 4294967295.0)
    for r in range(height):
        r_lo = max(r - radius, 0)
        r_hi = min(r + radius + 1, height)
        for c in range(width):
            if index[r, c] >= 0:
                continue
            c_lo = max(c - radius, 0)
            c_hi = min(c + radius + 1, width)
            if integral[r_hi, c_hi] - integral[r_lo, c_hi] - integral[r_hi, c_lo] + integral[r_lo, c_lo] == 0:
                continue
            for k in range(dys.shape[0]):
                rr = r + dys[k]
                cc = c + dxs[k]
                if 0 <= rr < height and 0 <= cc < width:
                    value = index[rr, cc]
                    if value >= 0:
                        if k >= n_full:
                            # the fractional pixel: only around a fixed share of the drawn pixels
                            h = np.uint32((np.uint32(rr) * np.uint32(73856093)) ^ (np.uint32(cc) * np.uint32(19349663)))
                            h = np.uint32(h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
                            h = np.uint32(h ^ (h >> np.uint32(16)))
                            if h >= threshold:
                                continue
                        out[r, c] = value
                        break
    return out


def spread_index(index: np.ndarray, spread_px: int) -> np.ndarray:
    """Enlarge drawn pixels into EMPTY neighbours up to ``spread_px`` away, nearest cell first.

    Unlike ``datashader.transfer_functions.spread`` (which composites every spread pixel over its neighbours),
    this never overwrites a pixel that already shows a cell, so dense tissue stays exact and sparse cells grow
    into a Voronoi-like tiling.

    Parameters
    ----------
    index : numpy.ndarray
        ``(H, W)`` int32 index raster, -1 = empty.
    spread_px : int
        Radius in pixels (0 = unchanged).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32, a new array.
    """
    spread_px = int(spread_px)
    if spread_px < 0:
        raise ValueError(f"spread_px={spread_px} must be >= 0")
    if spread_px == 0:
        return index
    dys, dxs = _disk_offsets(spread_px)
    return _nearest_fill_dots(np.ascontiguousarray(index, dtype=np.int32), dys, dxs, spread_px, len(dys), 0.0)


@functools.lru_cache(maxsize=64)
def _dot_offsets(n_pixels: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``n_pixels - 1`` pixel offsets nearest the centre (ties in a fixed angular order), nearest first, and
    the largest of their coordinates: a dot of ``n_pixels`` pixels grows one pixel at a time."""
    reach = int(math.ceil(math.sqrt(n_pixels / math.pi))) + 1
    offsets = sorted(
        (dy * dy + dx * dx, math.atan2(dy, dx) % (2 * math.pi), dy, dx)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if (dy, dx) != (0, 0)
    )[: max(0, n_pixels - 1)]
    dys = np.array([o[2] for o in offsets], dtype=np.int64)
    dxs = np.array([o[3] for o in offsets], dtype=np.int64)
    furthest = int(max([abs(o[2]) for o in offsets] + [abs(o[3]) for o in offsets] + [0]))
    return dys, dxs, furthest


def dot_area(radius_px: float) -> float:
    """Area in pixels of a dot of ``radius_px``: ``pi * r**2``, at least 1 (a cell is at least one pixel)."""
    if not (math.isfinite(radius_px) and radius_px >= 0):
        raise ValueError(f"radius_px={radius_px!r} must be a finite number >= 0")
    return max(1.0, math.pi * radius_px * radius_px)


def dot_pixels(radius_px: float) -> int:
    """Whole pixels every dot of ``radius_px`` covers: ``floor(pi * r**2)``, at least 1 (the fraction beyond is
    covered by some dots, see :func:`spread_dots`)."""
    return int(math.floor(dot_area(radius_px) + 1e-9))


def spread_dots(index: np.ndarray, radius_px: float) -> np.ndarray:
    """Draw every drawn pixel as a dot of radius ``radius_px`` (a real number), filling EMPTY pixels only.

    Unlike :func:`spread_index` (disks of whole-pixel radius: 1, 9, 21... pixels), a dot covers the
    ``floor(pi * r**2)`` pixels nearest its centre, and the fraction of a pixel beyond is drawn as one more pixel
    around that share of the pixels (chosen by a fixed hash of the pixel position): the painted area follows the
    radius continuously, so the picture changes smoothly with the window size or the zoom. Pixels showing a cell
    are never overwritten; an empty pixel takes the nearest drawn pixel among the dot's offsets.

    Parameters
    ----------
    index : numpy.ndarray
        ``(H, W)`` int32 index raster, -1 = empty.
    radius_px : float
        Dot radius in pixels (below about 0.56: a single pixel, unchanged).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32 (the input itself when the dot is one pixel).
    """
    area = dot_area(radius_px)
    n_pixels = dot_pixels(radius_px)
    extra = area - n_pixels  # share of the dots one pixel bigger
    if n_pixels == 1 and extra < 1e-6:
        return index
    dys, dxs, reach = _dot_offsets(n_pixels + 1)
    return _nearest_fill_dots(np.ascontiguousarray(index, dtype=np.int32), dys, dxs, reach, n_pixels - 1,
                              float(extra))


def _spread(index: np.ndarray, spread_px: int, dot_radius_px: float | None) -> np.ndarray:
    """The spread a renderer was asked for: a dot of ``dot_radius_px`` when given, else a disk of ``spread_px``."""
    if dot_radius_px is not None:
        return spread_dots(index, dot_radius_px)
    return spread_index(index, spread_px)


def _single_pixel(spread_px: int, dot_radius_px: float | None) -> bool:
    return dot_area(dot_radius_px) <= 1.0 + 1e-6 if dot_radius_px is not None else int(spread_px) == 0


def _composite(
    top_index: np.ndarray,
    top_lut: np.ndarray,
    under_index: np.ndarray | None,
    under_lut: np.ndarray | None,
    background: tuple[int, int, int, int],
) -> np.ndarray:
    """Map index rasters through colour tables; ``top`` wins wherever it is drawn.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)`` uint8 in the index rasters' row order.
    """
    return _paint(top_index, top_lut, under_index, under_lut, background, flip=False)


def _orient(image: np.ndarray, y_down: bool) -> np.ndarray:
    return image if y_down else np.ascontiguousarray(image[::-1])


def _highlight_mask(highlight, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Boolean mask of highlighted cells from a mask or a collection of codes."""
    if isinstance(highlight, np.ndarray) and highlight.dtype == bool:
        _check_length("highlight mask", highlight, codes.shape[0])
        return highlight
    if isinstance(highlight, (set, frozenset, dict)):
        wanted = np.fromiter((int(c) for c in highlight), dtype=np.int64, count=len(highlight))
    else:
        wanted = np.asarray(list(highlight) if not isinstance(highlight, np.ndarray) else highlight)
        if wanted.dtype == bool:
            _check_length("highlight mask", wanted, codes.shape[0])
            return wanted
        if wanted.size and not np.issubdtype(wanted.dtype, np.integer):
            raise ValueError(f"highlight must be a boolean mask or integer codes, got dtype {wanted.dtype}")
        wanted = wanted.astype(np.int64).ravel()
    by_code = np.zeros(n_codes + 1, dtype=bool)  # last entry: code -1 (not drawn)
    valid = wanted[(wanted >= 0) & (wanted < n_codes)]
    if valid.size != wanted.size:
        logger.debug("highlight: %d codes outside 0..%d ignored", wanted.size - valid.size, n_codes - 1)
    by_code[valid] = True
    return by_code[codes]


# --------------------------------------------------------------------------------------------------------------
# Public renderers
# --------------------------------------------------------------------------------------------------------------


def render_categorical(
    x: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    colors: Sequence[str] | np.ndarray,
    viewport: Viewport,
    *,
    highlight: np.ndarray | Iterable[int] | None = None,
    dim: float = 0.12,
    background: str | Sequence[int] = TRANSPARENT,
    spread_px: int = 0,
    y_down: bool = False,
    dot_radius_px: float | None = None,
) -> np.ndarray:
    """Picture of cells coloured by an integer category code.

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n,)`` float32/float64 cell coordinates in data units.
    codes : numpy.ndarray
        ``(n,)`` integer code per cell (e.g. ``Categorical.codes``); ``-1`` = not drawn.
    colors : sequence of str or numpy.ndarray
        FIXED code -> colour table: ``colors[code]`` is a ``#rrggbb`` string (any case), or an ``(N, 4)`` uint8
        table already built with :func:`rendering.colors.lut_from_hex`.
    viewport : Viewport
        Window and picture size.
    highlight : numpy.ndarray of bool or iterable of int, optional
        Either an ``(n,)`` boolean mask of cells or a collection of codes. Highlighted cells keep their colour
        and are drawn on top of the others, which are blended toward light grey.
    dim : float
        Share of their colour the non-highlighted cells keep (0 = plain light grey, 1 = no dimming).
    background : str or tuple
        Colour of empty pixels, hex or RGBA ints (default transparent).
    spread_px : int
        Enlarge cells into empty neighbouring pixels up to this radius (see :func:`auto_spread_px`).
    y_down : bool
        Display orientation; see the module docstring for which row is which y.
    dot_radius_px : float, optional
        Draw each cell as a dot of this radius in pixels instead (a real number, see :func:`dot_radius_px` and
        :func:`spread_dots`); overrides ``spread_px``.

    Returns
    -------
    numpy.ndarray
        ``(viewport.height_px, viewport.width_px, 4)`` uint8 RGBA, row 0 = top of the picture.

    Raises
    ------
    ValueError
        When arrays differ in length, codes are not integers or a code has no colour.
    """
    x, y = _coords(x, y)
    codes = np.asarray(codes)
    _check_length("codes", codes, x.shape[0])
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers (-1 = not drawn), got dtype {codes.dtype}")
    if isinstance(colors, np.ndarray) and colors.ndim == 2:
        lut = np.asarray(colors, dtype=np.uint8)
        if lut.shape[1] != 4:
            raise ValueError(f"a colour table must be (N, 4) uint8, got shape {colors.shape}")
    else:
        lut = cached_lut(colors)  # parsed once per colour list
    n_codes = len(lut)

    # NaN is skipped by the reduction: -1 cells are not drawn
    field, top_code = _codes_field_kernel(np.ascontiguousarray(codes))
    if top_code >= n_codes:
        raise ValueError(f"code {top_code} has no colour: the colour table has {n_codes} entries")
    background = to_rgba(background)
    if highlight is None:
        aggs = _aggregate(x, y, {"code": field}, {"top": ds.last("code")}, viewport)
        if _single_pixel(spread_px, dot_radius_px):  # one pass: aggregate -> picture rows in display order
            words = _paint_codes_kernel(np.ascontiguousarray(aggs["top"]), _words(lut), _word(background),
                                        not y_down)
            return _as_image(words)
        top = _spread(_codes_to_index(aggs["top"]), spread_px, dot_radius_px)
        return _paint(top, lut, None, None, background, flip=not y_down)
    mask = _highlight_mask(highlight, codes, n_codes)
    columns = {"under": np.where(mask, np.float32(np.nan), field), "top": np.where(mask, field, np.float32(np.nan))}
    aggs = _aggregate(x, y, columns, {"under": ds.last("under"), "top": ds.last("top")}, viewport)
    top = _spread(_codes_to_index(aggs["top"]), spread_px, dot_radius_px)
    under = _spread(_codes_to_index(aggs["under"]), spread_px, dot_radius_px)
    return _paint(top, lut, under, dim_lut(lut, dim), background, flip=not y_down)


def render_numeric(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    viewport: Viewport,
    *,
    vmin: float,
    vmax: float,
    cmap: str = "viridis",
    how: str = "max",
    highlight: np.ndarray | None = None,
    dim: float = 0.12,
    nan_color: str = NAN_GREY,
    background: str | Sequence[int] = TRANSPARENT,
    spread_px: int = 0,
    y_down: bool = False,
    zero_color: str | None = ZERO_GREY,
    expressed_above: float = 0.0,
    dot_radius_px: float | None = None,
) -> np.ndarray:
    """Picture of cells coloured by a number (e.g. a gene's log2 expression).

    By default (``zero_color`` given) the picture is drawn as a biologist reads a gene map: cells that do not
    express the gene (value at or below ``expressed_above``) in a light grey, the expressing cells in the colour
    map ON TOP of them (their dots are never covered by a neighbour's zero), cells without a value ("not
    measured", NaN) in ``nan_color``, distinct from both. With ``zero_color=None`` every cell with a value is
    coloured by the map, zeros at its low end.

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n,)`` float cell coordinates.
    values : numpy.ndarray
        ``(n,)`` float value per cell; NaN = no value (drawn ``nan_color``).
    viewport : Viewport
        Window and picture size.
    vmin, vmax : float
        Fixed shown range: values at or below ``vmin`` get the low end of the map, at or above ``vmax`` the high
        end (see :func:`default_gene_range`).
    cmap : str
        matplotlib or colorcet colour map name.
    how : {"max", "mean"}
        Per-pixel reduction of the cells sharing a pixel. ``max`` keeps rare expressing cells visible at low
        zoom; ``mean`` shows the average. A pixel whose cells all have NaN is ``nan_color``.
    highlight : numpy.ndarray of bool, optional
        ``(n,)`` mask; highlighted cells keep their colour on top, the others are blended toward light grey.
    dim : float
        Share of their colour the non-highlighted cells keep.
    nan_color : str
        Hex colour of NaN cells.
    background : str or tuple
        Colour of empty pixels.
    spread_px : int
        Enlarge cells into empty neighbouring pixels up to this radius.
    y_down : bool
        Display orientation; see the module docstring.
    zero_color : str or None
        Hex colour of the cells that do not express (:data:`rendering.colors.ZERO_GREY` by default); ``None``:
        colour them by the map like every other value.
    expressed_above : float
        A cell expresses when its value is above this (default 0: detected at all).
    dot_radius_px : float, optional
        Draw each cell as a dot of this radius in pixels (see :func:`dot_radius_px`); overrides ``spread_px``.

    Returns
    -------
    numpy.ndarray
        ``(viewport.height_px, viewport.width_px, 4)`` uint8 RGBA, row 0 = top of the picture.
    """
    if zero_color is not None:
        return _render_expression(x, y, values, viewport, vmin=vmin, vmax=vmax, cmap=cmap, how=how,
                                  highlight=highlight, dim=dim, nan_color=nan_color, zero_color=zero_color,
                                  expressed_above=expressed_above, background=background, spread_px=spread_px,
                                  dot_radius_px=dot_radius_px, y_down=y_down)
    x, y = _coords(x, y)
    values = np.asarray(values)
    _check_length("values", values, x.shape[0])
    if values.dtype not in (np.float32, np.float64):  # integers, float16 (exact in float32)
        values = values.astype(np.float32)
    if how not in _HOW_NUMERIC:
        raise ValueError(f"how={how!r} must be one of {_HOW_NUMERIC}")
    vmin = float(vmin)
    vmax = float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"the shown range vmin={vmin!r}, vmax={vmax!r} must be finite with vmin < vmax")
    lut = np.concatenate([cmap_lut(cmap, N_NUMERIC_COLORS), np.asarray(to_rgba(nan_color), np.uint8)[None]], axis=0)

    if highlight is None:
        layer_masks = {"top": None}
    else:
        mask = np.asarray(highlight)
        if mask.dtype != bool:
            raise ValueError(f"highlight for a numeric picture must be a boolean mask, got dtype {mask.dtype}")
        _check_length("highlight mask", mask, x.shape[0])
        layer_masks = {"top": mask, "under": ~mask}

    nan = values.dtype.type(np.nan)
    columns: dict[str, np.ndarray] = {}
    reductions: dict = {}
    if how == "max":
        # -inf stands for NaN: max skips NaN but keeps -inf, so a pixel of only-NaN cells is told from an empty one.
        # (a read-only scan first: most genes of most datasets have no NaN, and a fresh copy of millions of
        # values costs more in page faults than the scan)
        values = np.ascontiguousarray(values)
        sentinel = _nan_to_neg_inf_kernel(values) if _has_nan_kernel(values) else values
        for name, layer in layer_masks.items():
            columns[name] = sentinel if layer is None else np.where(layer, sentinel, nan)
            reductions[name] = ds.max(name)
    else:
        zero = values.dtype.type(0)
        for name, layer in layer_masks.items():
            columns[name] = values if layer is None else np.where(layer, values, nan)
            columns[name + "_present"] = (
                np.zeros_like(values) if layer is None else np.where(layer, zero, nan)
            )
            reductions[name] = ds.mean(name)
            reductions[name + "_n"] = ds.count(name + "_present")
    aggs = _aggregate(x, y, columns, reductions, viewport)

    indexes = {}
    scale = N_NUMERIC_COLORS / (vmax - vmin)
    for name in layer_masks:
        agg = np.ascontiguousarray(aggs[name])
        if how == "max":  # -inf marks a pixel of only-NaN cells (see above)
            index = _values_index_kernel(agg, vmin, scale, N_NUMERIC_COLORS, _NO_MASK, True)
        else:
            nan_only = (aggs[name + "_n"] > 0) & np.isnan(agg)
            index = _values_index_kernel(agg, vmin, scale, N_NUMERIC_COLORS, nan_only, False)
        indexes[name] = _spread(index, spread_px, dot_radius_px)
    if highlight is None:
        return _paint(indexes["top"], lut, None, None, to_rgba(background), flip=not y_down)
    return _paint(indexes["top"], lut, indexes["under"], dim_lut(lut, dim), to_rgba(background), flip=not y_down)


def _numeric_inputs(x, y, values, vmin, vmax, how):
    x, y = _coords(x, y)
    values = np.asarray(values)
    _check_length("values", values, x.shape[0])
    if values.dtype not in (np.float32, np.float64):  # integers, float16 (exact in float32)
        values = values.astype(np.float32)
    if how not in _HOW_NUMERIC:
        raise ValueError(f"how={how!r} must be one of {_HOW_NUMERIC}")
    vmin = float(vmin)
    vmax = float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"the shown range vmin={vmin!r}, vmax={vmax!r} must be finite with vmin < vmax")
    return x, y, values, vmin, vmax


#: Stands for "measured, not expressing" in the aggregation column of a gene picture: below every value, above
#: -inf (not measured), so a pixel's ``max`` tells expressing > not expressing > not measured > empty (NaN).
_NOT_EXPRESSING = -3.0e38


@numba.njit(cache=True, nogil=True)
def _expression_column_kernel(values, threshold, not_expressing):  # pragma: no cover - compiled
    """One pass: a value above ``threshold`` stays, another measured value becomes ``not_expressing``, NaN -inf."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        value = values[i]
        if np.isnan(value):
            out[i] = -np.inf
        elif value > threshold:
            out[i] = value
        else:
            out[i] = not_expressing
    return out


@numba.njit(cache=True, nogil=True)
def _split_expression_kernel(agg, vmin, scale, n_colors, not_expressing):  # pragma: no cover - compiled
    """A gene picture's ``max`` aggregate -> (colour map index of expressing pixels, 0/1 index of the others:
    0 = not expressing, 1 = not measured), -1 where the layer has nothing; two ``(H, W)`` int32 rasters."""
    height, width = agg.shape
    top = np.empty((height, width), dtype=np.int32)
    under = np.empty((height, width), dtype=np.int32)
    for r in range(height):
        for c in range(width):
            value = agg[r, c]
            top[r, c] = -1
            under[r, c] = -1
            if np.isnan(value):
                continue
            if value == -np.inf:
                under[r, c] = 1
            elif value <= not_expressing:
                under[r, c] = 0
            else:
                level = np.floor((value - vmin) * scale)
                if level < 0:
                    top[r, c] = 0
                elif level > n_colors - 1:
                    top[r, c] = n_colors - 1
                else:
                    top[r, c] = np.int32(level)
    return top, under


@functools.lru_cache(maxsize=4)
def _warm_plain_numeric(dtype: np.dtype) -> None:
    """Compile the kernels of the plain numeric path (``zero_color=None``) for ``dtype`` along with the first gene
    picture, so a server warmed up by drawing one gene picture has no kernel left to compile for the other."""
    x = np.array([0.25, 0.75], dtype=dtype)
    values = np.array([1.0, np.nan], dtype=dtype)
    viewport = Viewport(0.0, 1.0, 0.0, 1.0, 2, 1)
    for how in _HOW_NUMERIC:
        render_numeric(x, x, values, viewport, vmin=0.0, vmax=1.0, how=how, zero_color=None)


def _render_expression(x, y, values, viewport: Viewport, *, vmin: float, vmax: float, cmap: str, how: str,
                       highlight, dim: float, nan_color: str, zero_color: str, expressed_above: float,
                       background, spread_px: int, dot_radius_px: float | None, y_down: bool) -> np.ndarray:
    """:func:`render_numeric` with non-expressing cells in ``zero_color`` under the expressing ones.

    Each group of cells (highlighted or not) is two layers: the expressing cells by the colour map (``max``, or
    ``mean`` of the expressing cells of a pixel), over the others (a pixel with any measured non-expressing cell is
    ``zero_color``, one of only not-measured cells ``nan_color``). With ``max`` both layers come from ONE column
    and reduction (:data:`_NOT_EXPRESSING` ranks the cells). Layers are spread one by one and painted in the
    order highlighted expressing, highlighted others, other expressing, other others.
    """
    x, y, values, vmin, vmax = _numeric_inputs(x, y, values, vmin, vmax, how)
    _warm_plain_numeric(values.dtype)
    values = np.ascontiguousarray(values)
    kind = values.dtype.type
    nan = kind(np.nan)
    column = _expression_column_kernel(values, kind(expressed_above), kind(_NOT_EXPRESSING))
    if highlight is None:
        groups = {"": None}
    else:
        mask = np.asarray(highlight)
        if mask.dtype != bool:
            raise ValueError(f"highlight for a numeric picture must be a boolean mask, got dtype {mask.dtype}")
        _check_length("highlight mask", mask, x.shape[0])
        groups = {"hi_": mask, "lo_": ~mask}
    columns: dict[str, np.ndarray] = {}
    reductions: dict = {}
    for prefix, mask in groups.items():
        ranked = column if mask is None else np.where(mask, column, nan)
        columns[prefix + "rank"] = ranked
        reductions[prefix + "rank"] = ds.max(prefix + "rank")
        if how == "mean":
            expressing = np.where(ranked > _NOT_EXPRESSING, ranked, nan)  # -inf and the sentinel compare below
            columns[prefix + "mean"] = expressing
            reductions[prefix + "mean"] = ds.mean(prefix + "mean")
    aggs = _aggregate(x, y, columns, reductions, viewport)

    scale = N_NUMERIC_COLORS / (vmax - vmin)
    map_lut = cmap_lut(cmap, N_NUMERIC_COLORS)
    under_lut = np.stack([np.asarray(to_rgba(zero_color), np.uint8), np.asarray(to_rgba(nan_color), np.uint8)])
    layers = []
    for prefix in groups:
        top, under = _split_expression_kernel(np.ascontiguousarray(aggs[prefix + "rank"]), vmin, scale,
                                              N_NUMERIC_COLORS, float(np.float32(_NOT_EXPRESSING)))
        if how == "mean":
            top = _values_index_kernel(np.ascontiguousarray(aggs[prefix + "mean"]), vmin, scale, N_NUMERIC_COLORS,
                                       _NO_MASK, False)
        top_lut, low_lut = (map_lut, under_lut) if prefix != "lo_" else (dim_lut(map_lut, dim), dim_lut(under_lut, dim))
        layers.append((_spread(top, spread_px, dot_radius_px), top_lut))
        layers.append((_spread(under, spread_px, dot_radius_px), low_lut))
    return _paint_layers(layers, to_rgba(background), flip=not y_down)


def dot_radius_px(
    n_cells_in_view: int,
    viewport: Viewport,
    *,
    tissue_fraction: float = 0.5,
    cell_diameter: float | None = None,
    fill: float = 1.1,
    max_density_radius_px: float = MAX_DENSITY_RADIUS_PX,
    max_radius_px: float = MAX_DOT_RADIUS_PX,
) -> float:
    """Radius (px, a real number) to draw cells with, changing smoothly with the view; for :func:`spread_dots`.

    Two sizes, the larger wins:

    * from the density of the cells in view: ``fill / 2`` of their typical spacing
      ``sqrt(tissue_fraction * W * H / n)``, so cells in a dense view are never one-pixel dust and cells grow
      toward their neighbours as the view empties; capped at ``max_density_radius_px`` so sparse cells never
      become blobs;
    * the physical size: with ``cell_diameter`` (data units, e.g. :data:`CELL_DIAMETER_MM` for a section in mm)
      half of it in pixels, so a view zoomed in far enough shows each cell at its true size.

    Both are continuous in the window size and the zoom, and so is the drawn dot area (:func:`spread_dots` adds one
    pixel at a time), so a small change of the view never flips a picture from washed out to solid.

    Parameters
    ----------
    n_cells_in_view : int
        Cells inside the viewport (``viewport.count_inside(x, y)``).
    viewport : Viewport
        Window and picture size.
    tissue_fraction : float
        Share of the window the cells cover (a section's cells most of it, a UMAP's about half).
    cell_diameter : float, optional
        Cell diameter in data units (none for a UMAP).
    fill : float
        Dot diameter as a share of the spacing of the cells (about 1: a dense tissue reads as tissue, dots that
        overlap a little still show their own colours).
    max_density_radius_px, max_radius_px : float
        Caps of the density size and of the result.

    Returns
    -------
    float
        Radius in pixels, ``0.5..max_radius_px`` (0.5: one pixel per cell; 0 when no cell is in view).
    """
    if n_cells_in_view <= 0:
        return 0.0
    spacing_px = math.sqrt(tissue_fraction * viewport.width_px * viewport.height_px / n_cells_in_view)
    radius = min(max_density_radius_px, 0.5 * fill * spacing_px)
    if cell_diameter is not None:
        if not cell_diameter > 0:
            raise ValueError(f"cell_diameter={cell_diameter!r} must be positive")
        radius = max(radius, 0.5 * cell_diameter / min(viewport.x_per_px, viewport.y_per_px))
    return float(min(max_radius_px, max(0.5, radius)))


def auto_spread_px(
    n_cells_in_view: int,
    viewport: Viewport,
    *,
    tissue_fraction: float = 0.5,
    max_spread_px: int = MAX_AUTO_SPREAD_PX,
    cell_diameter: float | None = None,
) -> int:
    """Spread radius that keeps cells visible as tissue when zoomed in (whole pixels; see :func:`dot_radius_px` for
    the continuous radius that does not jump between washed-out and solid as the window changes).

    Without ``cell_diameter`` (e.g. a UMAP): the typical distance between cells in pixels is
    ``sqrt(tissue_fraction * W * H / n)`` (the cells cover about ``tissue_fraction`` of the window); the radius
    is half of it, so cells grow until they meet their neighbours (0 when several cells share a pixel).
    With ``cell_diameter`` in data units (about 0.01 mm for a section): the radius is the cell's own radius in
    pixels, so a zoomed-in section shows cells at their true size. Both are capped at ``max_spread_px``.

    Parameters
    ----------
    n_cells_in_view : int
        Cells inside the viewport (``viewport.contains(x, y).sum()``).
    viewport : Viewport
        Window and picture size.
    tissue_fraction : float
        Share of the window the cells cover (density estimate only).
    max_spread_px : int
        Upper bound of the radius.
    cell_diameter : float, optional
        Cell diameter in data units.

    Returns
    -------
    int
        Radius in pixels, ``0..max_spread_px``.
    """
    if n_cells_in_view <= 0:
        return 0
    if cell_diameter is not None:
        if not cell_diameter > 0:
            raise ValueError(f"cell_diameter={cell_diameter!r} must be positive")
        radius_px = 0.5 * cell_diameter / min(viewport.x_per_px, viewport.y_per_px)
        return int(min(max_spread_px, max(0, math.floor(radius_px))))
    spacing_px = math.sqrt(tissue_fraction * viewport.width_px * viewport.height_px / n_cells_in_view)
    return int(min(max_spread_px, max(0, math.floor(spacing_px / 2))))


def default_gene_range(values: np.ndarray, *, percentile: float = 99.0) -> tuple[float, float]:
    """Shown range for a gene: ``0 .. 99th percentile of the EXPRESSING cells``.

    Expression is sparse: most cells are 0, so a percentile over all cells is often 0 and every expressing
    cell would look saturated. Over the cells with a value > 0 the top of the range is where the strongest 1% of
    expressing cells begin, which is what a biologist expects from a feature plot. Values with negatives (e.g.
    z-scores) use the 1st..99th percentile of all finite values instead.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n,)`` float values; NaN/inf are ignored.

    Returns
    -------
    tuple of float
        ``(vmin, vmax)`` with ``vmin < vmax``; ``(0.0, 1.0)`` when nothing is expressed.
    """
    from data_layer.expression import default_range_of_entries

    # the one definition, shared with the ranges prepare stores per gene (a dense vector has no implicit zeros)
    return default_range_of_entries(values, 0, percentile=percentile)
