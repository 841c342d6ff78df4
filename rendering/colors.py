"""Colour parsing and colour look-up tables (LUTs) for the cell pictures.

Categorical colours come from the taxonomy as hex strings of mixed case (``#a8afa5``, ``#FF3358``, sometimes
without ``#``); :func:`lut_from_hex` turns a fixed code -> colour list into an ``(N, 4)`` uint8 table that a raster
of integer codes indexes directly. Numeric colours (genes) use a 256-entry table built from a matplotlib or
colorcet colour map (:func:`cmap_lut`), and the same table feeds the colour bar (:func:`colorbar_png`,
:func:`colorscale_stops`) so the bar always matches the picture.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Colour of cells without a taxonomy assignment (ABC "unassigned").
UNASSIGNED_GREY = "#c8c8c8"
#: Colour of cells the atlas labels ``Adjacent`` (outside the basal ganglia taxonomy).
ADJACENT_GREY = "#808080"
#: Colour of cells that do not express a gene (value 0) in a gene picture: a light grey under the colour map.
ZERO_GREY = "#d9d9d9"
#: Colour of cells whose numeric value is missing (NaN: "not measured", e.g. a cell without an expression row):
#: a pale sand, told apart from the grey of non-expressing cells and from every colour of the gene map.
NOT_MEASURED_COLOR = "#f1dfb6"
#: The not-measured colour under its former name (the gene pictures' and keys' default ``nan_color``).
NAN_GREY = NOT_MEASURED_COLOR
#: The entries a gene picture's key shows beside its colour bar: (label, colour).
GENE_KEY_ENTRIES = (("not expressed", ZERO_GREY), ("not measured", NOT_MEASURED_COLOR))
#: The entries a numeric cell column's picture key shows beside its colour bar: (label, colour).
NUMERIC_KEY_ENTRIES = (("not measured", NOT_MEASURED_COLOR),)
#: Light grey toward which non-highlighted cells are blended.
DIM_GREY = "#e6e6e6"
#: Fully transparent RGBA, the default picture background.
TRANSPARENT = (0, 0, 0, 0)

_HEX_RE = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


def parse_hex(color: str) -> tuple[int, int, int]:
    """Parse a hex colour string into an ``(r, g, b)`` tuple of ints 0-255.

    Accepts ``#rrggbb``, ``rrggbb``, ``#rgb`` and ``rgb`` in any letter case, with surrounding spaces.

    Raises
    ------
    ValueError
        When the string is not a hex colour; the message quotes the value.
    """
    if not isinstance(color, str):
        raise ValueError(f"colour {color!r} is not a hex string like '#a8afa5'")
    match = _HEX_RE.match(color.strip())
    if match is None:
        raise ValueError(f"colour {color!r} is not a hex string like '#a8afa5'")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def to_rgba(color: str | Sequence[int]) -> tuple[int, int, int, int]:
    """Normalise a colour given as hex string or as 3/4 ints 0-255 into an ``(r, g, b, a)`` tuple.

    Raises
    ------
    ValueError
        When the colour has the wrong length or a component outside 0-255.
    """
    if isinstance(color, str):
        return (*parse_hex(color), 255)
    components = tuple(int(c) for c in color)
    if len(components) == 3:
        components = (*components, 255)
    if len(components) != 4 or not all(0 <= c <= 255 for c in components):
        raise ValueError(f"colour {color!r} must be a hex string or 3/4 integers in 0..255")
    return components  # type: ignore[return-value]


def rgb_to_hex(rgb: Sequence[int]) -> str:
    """Format ``(r, g, b[, a])`` ints 0-255 as a lower-case ``#rrggbb`` string (alpha dropped)."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def lut_from_hex(colors: Sequence[str], *, alpha: int = 255, missing: str | None = None) -> np.ndarray:
    """Build a colour look-up table from a list of hex colours indexed by code.

    Tables are cached by their colour list (a picture route asks for the same taxonomy level's table on every
    zoom; parsing 5,000 hex strings costs about a millisecond), so a repeated call only copies the table.

    Parameters
    ----------
    colors : sequence of str
        ``colors[code]`` is the colour of category ``code`` (a FIXED code -> colour table, so colours do not
        shift when only some categories are drawn).
    alpha : int
        Alpha of every entry, 0-255.
    missing : str, optional
        Colour used for empty or ``None`` entries (the ABC tables have a few); when not given such entries
        raise.

    Returns
    -------
    numpy.ndarray
        ``(N, 4)`` uint8 RGBA table, ``N = len(colors)``; a new array the caller may modify.

    Raises
    ------
    ValueError
        Naming the index and value of the first colour that cannot be parsed.
    """
    return cached_lut(colors, alpha=alpha, missing=missing).copy()


def cached_lut(colors: Sequence[str], *, alpha: int = 255, missing: str | None = None) -> np.ndarray:
    """:func:`lut_from_hex` without the copy: the cached table itself, READ-ONLY.

    Returns
    -------
    numpy.ndarray
        ``(N, 4)`` uint8 RGBA table (``flags.writeable`` is False).
    """
    try:
        key = tuple(colors)
        hash(key)
    except TypeError:  # unhashable entries: parse without the cache (the parser names the bad entry)
        return _parse_lut(list(colors), int(alpha), missing)
    return _lut_cached(key, int(alpha), missing)


@functools.lru_cache(maxsize=64)
def _lut_cached(colors: tuple, alpha: int, missing: str | None) -> np.ndarray:
    return _parse_lut(colors, alpha, missing)


def _parse_lut(colors: Sequence, alpha: int, missing: str | None) -> np.ndarray:
    lut = np.empty((len(colors), 4), dtype=np.uint8)
    lut[:, 3] = alpha
    for i, color in enumerate(colors):
        if (color is None or (isinstance(color, str) and not color.strip())) and missing is not None:
            color = missing
        try:
            lut[i, :3] = parse_hex(color)
        except ValueError as exc:
            raise ValueError(f"colour table entry {i}: {exc}") from None
    lut.setflags(write=False)
    return lut


def dim_lut(lut: np.ndarray, dim: float, *, toward: str = DIM_GREY) -> np.ndarray:
    """Blend a colour table toward light grey, for cells that are not highlighted.

    Parameters
    ----------
    lut : numpy.ndarray
        ``(N, 4)`` uint8 RGBA table.
    dim : float
        Share of the original colour kept, 0-1 (0 = plain grey, 1 = unchanged).
    toward : str
        The grey (hex) blended toward.

    Returns
    -------
    numpy.ndarray
        ``(N, 4)`` uint8 RGBA table; alpha is kept.
    """
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim={dim!r} must be between 0 and 1")
    grey = np.asarray(parse_hex(toward), dtype=np.float32)
    out = lut.copy()
    out[:, :3] = np.rint(lut[:, :3].astype(np.float32) * dim + grey * (1.0 - dim)).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=64)
def _cmap_lut_cached(name: str, n: int) -> np.ndarray:
    import matplotlib

    samples = np.linspace(0.0, 1.0, n)
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        cmap = None
    if cmap is not None:
        lut = np.rint(np.asarray(cmap(samples)) * 255).astype(np.uint8)
    else:
        try:
            import colorcet
        except ImportError:  # pragma: no cover - colorcet comes with datashader
            colorcet = None
        palette = getattr(colorcet, "palette", {}) if colorcet is not None else {}
        if name not in palette:
            raise ValueError(f"colour map {name!r} is not a matplotlib or colorcet colour map")
        stops = lut_from_hex(list(palette[name])).astype(np.float64)
        positions = np.linspace(0.0, 1.0, len(stops))
        lut = np.empty((n, 4), dtype=np.uint8)
        for channel in range(4):
            lut[:, channel] = np.rint(np.interp(samples, positions, stops[:, channel])).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def cmap_lut(name: str, n: int = 256) -> np.ndarray:
    """Sample a named colour map (matplotlib first, then colorcet) into a colour table.

    Parameters
    ----------
    name : str
        A matplotlib colour map name (``viridis``, ``magma``, ``Reds``...) or a colorcet palette name
        (``fire``, ``bmy``...).
    n : int
        Number of entries.

    Returns
    -------
    numpy.ndarray
        ``(n, 4)`` uint8 RGBA table, read-only (cached); entry 0 is the low end.
    """
    if n < 2:
        raise ValueError(f"a colour map table needs n >= 2 entries, got {n}")
    return _cmap_lut_cached(str(name), int(n))


def colorscale_stops(cmap: str, n_stops: int = 11) -> list[list]:
    """The colour map as a Plotly ``colorscale``: ``[[0.0, '#rrggbb'], ..., [1.0, '#rrggbb']]``.

    Built from the same table as the picture so a Plotly colour bar matches the cells.
    """
    if n_stops < 2:
        raise ValueError(f"n_stops={n_stops} must be at least 2")
    lut = cmap_lut(cmap)
    positions = np.linspace(0.0, 1.0, n_stops)
    rows = np.rint(positions * (len(lut) - 1)).astype(int)
    return [[float(p), rgb_to_hex(lut[r])] for p, r in zip(positions, rows)]


def colorbar_rgba(cmap: str, width_px: int, height_px: int, *, vertical: bool = True) -> np.ndarray:
    """A colour bar picture: low values at the bottom (vertical) or left (horizontal).

    Returns
    -------
    numpy.ndarray
        ``(height_px, width_px, 4)`` uint8 RGBA.
    """
    if width_px < 1 or height_px < 1:
        raise ValueError(f"colour bar size {width_px}x{height_px} px must be positive")
    lut = cmap_lut(cmap)
    if vertical:
        rows = np.rint(np.linspace(len(lut) - 1, 0, height_px)).astype(int)
        return np.ascontiguousarray(np.broadcast_to(lut[rows][:, None, :], (height_px, width_px, 4)))
    cols = np.rint(np.linspace(0, len(lut) - 1, width_px)).astype(int)
    return np.ascontiguousarray(np.broadcast_to(lut[cols][None, :, :], (height_px, width_px, 4)))


def colorbar_png(cmap: str, width_px: int, height_px: int, *, vertical: bool = True) -> bytes:
    """:func:`colorbar_rgba` encoded as PNG bytes."""
    from rendering.png import encode_png

    return encode_png(colorbar_rgba(cmap, width_px, height_px, vertical=vertical))
