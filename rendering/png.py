"""PNG encoding of RGBA pictures for the picture route.

Speed matters more than size here (the picture is rebuilt on every zoom and cached by URL), so the default writer
is a minimal PNG encoder of our own: filter type 0 (None) on every row, deflate at level 1, and, when the picture
has at most 256 distinct RGBA colours (a picture by cluster usually shows a few dozen to a few hundred), an
**indexed** PNG (colour type 3: one byte per pixel, a ``PLTE`` palette and a ``tRNS`` chunk for transparency)
instead of 8-bit RGBA. Deflate is done by ISA-L (``isal``) when it is installed, else by :mod:`zlib`.

Measured on a 1000x800 section picture by cluster (220 k cells, 85 colours shown; ``bench/render_bench.py`` and
``atlas-viewer bench --scale atlas``), on one core of a shared 2-core AMD EPYC:

===============================  =========  ========
writer                           time       bytes
===============================  =========  ========
RGBA, zlib level 1               12.6 ms    285 kB
RGBA, ISA-L level 1               3.1 ms    302 kB
indexed, zlib level 1             8.5 ms    176 kB   (1.5 ms of it finds the palette)
indexed, ISA-L level 1            2.7 ms    163 kB
RGBA, zlib level 6               54 ms      246 kB
RGBA, Pillow level 1             46 ms      447 kB   (on 300 random colours; Pillow filters every row)
===============================  =========  ========

Row filters ("Sub", "Up") make these pictures bigger and slower at every level (cells are small patches of
unrelated colours, so differences are as noisy as the pixels); higher zlib levels cost 2-4x the time for 5-15 %
fewer bytes. Pillow spends most of its time choosing a filter per row and offers no option to turn that off.
Both ISA-L and zlib release the GIL while compressing, so threaded servers encode in parallel.

``method="pillow"`` keeps the Pillow path (used by the benchmark for comparison).
"""
from __future__ import annotations

import io
import logging
import struct
import zlib

import numba
import numpy as np

try:  # ISA-L's deflate: about 4x faster than zlib at level 1 with the same size on cell pictures
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a declared dependency; zlib is the fallback
    _isal_zlib = None

logger = logging.getLogger(__name__)

#: zlib level used by default (1 = fastest). Pillow's own default is 6.
FAST_COMPRESS_LEVEL = 1
#: Most colours an indexed PNG holds (8-bit palette).
MAX_PALETTE_COLORS = 256
#: Deflate levels handed to ISA-L when it is installed (it has levels 0-3, all of them compressing; zlib's
#: level 0 stores without compression and 4-9 trade much more time for size, so those stay with zlib).
ISAL_LEVELS = (1, 2, 3)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_METRES_PER_INCH = 0.0254
_COLOR_TYPE_PALETTE = 3
_COLOR_TYPE_RGBA = 6


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def deflate(data, level: int = FAST_COMPRESS_LEVEL) -> bytes:
    """zlib-format deflate of ``data`` (a PNG ``IDAT`` stream): ISA-L for levels 1-3 when installed, else zlib.

    Parameters
    ----------
    data : bytes-like
        The bytes to compress (any buffer, e.g. a contiguous numpy array's ``.data``).
    level : int
        0-9 as in :func:`zlib.compress`.

    Returns
    -------
    bytes
        A zlib stream any inflater reads.
    """
    if _isal_zlib is not None and level in ISAL_LEVELS:
        return _isal_zlib.compress(data, level)
    return zlib.compress(data, level)


@numba.njit(cache=True, nogil=True)
def _palette_scanlines(pixels, max_colors):  # pragma: no cover - compiled
    """One pass over ``(H, W)`` uint32 RGBA words: the PNG scanlines of an indexed picture (filter byte 0, then
    one palette index per pixel) and its palette, or ``n_colors = -1`` as soon as a colour beyond
    ``max_colors`` shows up. Colours are numbered in order of first appearance (a small open-addressing hash
    table; a run of one colour skips the look-up)."""
    height, width = pixels.shape
    size = 1024  # a power of two well above max_colors: short probe chains
    mask = np.uint64(size - 1)
    keys = np.zeros(size, dtype=np.uint32)
    used = np.zeros(size, dtype=np.bool_)
    slots = np.zeros(size, dtype=np.uint8)
    palette = np.zeros(max_colors, dtype=np.uint32)
    scanlines = np.empty((height, width + 1), dtype=np.uint8)
    n_colors = 0
    last = np.uint32(0)
    last_index = np.uint8(0)
    have_last = False
    for r in range(height):
        scanlines[r, 0] = 0  # filter type None
        for c in range(width):
            p = pixels[r, c]
            if have_last and p == last:
                scanlines[r, c + 1] = last_index
                continue
            h = ((np.uint64(p) * np.uint64(2654435761)) >> np.uint64(16)) & mask
            while used[h] and keys[h] != p:
                h = (h + np.uint64(1)) & mask
            if not used[h]:
                if n_colors == max_colors:
                    return scanlines, palette, -1
                used[h] = True
                keys[h] = p
                slots[h] = n_colors
                palette[n_colors] = p
                n_colors += 1
            last = p
            last_index = slots[h]
            have_last = True
            scanlines[r, c + 1] = last_index
    return scanlines, palette, n_colors


def palette_of(rgba: np.ndarray, max_colors: int = MAX_PALETTE_COLORS) -> tuple[np.ndarray, np.ndarray] | None:
    """The picture as palette indices when it has at most ``max_colors`` distinct RGBA colours.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8.
    max_colors : int
        1-256.

    Returns
    -------
    tuple or None
        ``(index, palette)``: ``(H, W)`` uint8 indices into ``palette``, ``(n, 4)`` uint8 RGBA colours in order of
        first appearance (row by row); ``None`` when the picture has more colours.
    """
    if not 1 <= max_colors <= MAX_PALETTE_COLORS:
        raise ValueError(f"max_colors={max_colors} must be in 1..{MAX_PALETTE_COLORS}")
    scanlines, palette, n_colors = _palette_scanlines(_pixel_words(rgba), max_colors)
    if n_colors < 0:
        return None
    return scanlines[:, 1:], palette[:n_colors].view(np.uint8).reshape(n_colors, 4)


def _pixel_words(rgba: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint32 view (one word per RGBA pixel, memory order) of a contiguous copy when needed."""
    height, width = rgba.shape[:2]
    return np.ascontiguousarray(rgba).view(np.uint32).reshape(height, width)


def encode_png(
    rgba: np.ndarray,
    *,
    compress_level: int = FAST_COMPRESS_LEVEL,
    dpi: float | None = None,
    method: str = "zlib",
    palette: bool = True,
) -> bytes:
    """Encode an RGBA picture as PNG.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8, row 0 = top of the picture.
    compress_level : int
        Deflate level 0-9 (levels 1-3 use ISA-L when it is installed; see :func:`deflate`).
    dpi : float, optional
        Resolution written to the ``pHYs`` chunk when given.
    method : {"zlib", "pillow"}
        ``zlib``: our unfiltered writer; ``pillow``: ``PIL.Image.save`` (adaptive row filters, always RGBA).
    palette : bool
        With ``method="zlib"``: write an indexed PNG (colour type 3, ``PLTE`` + ``tRNS``) when the picture has at
        most 256 distinct RGBA colours; it decodes to exactly the same RGBA pixels. ``False``: always RGBA.

    Returns
    -------
    bytes
        The PNG file (8-bit indexed or 8-bit RGBA, non-interlaced).
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"encode_png needs an (H, W, 4) uint8 array, got shape {rgba.shape} dtype {rgba.dtype}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level={compress_level} must be in 0..9")
    height, width = rgba.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty {width}x{height} picture")
    if dpi is not None and not dpi > 0:
        raise ValueError(f"dpi={dpi!r} must be positive")
    if method == "pillow":
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(rgba))  # (H, W, 4) uint8 -> RGBA
        buffer = io.BytesIO()
        options: dict = {"compress_level": compress_level}
        if dpi is not None:
            options["dpi"] = (dpi, dpi)
        image.save(buffer, format="PNG", **options)
        return buffer.getvalue()
    if method != "zlib":
        raise ValueError(f"method={method!r} must be 'zlib' or 'pillow'")

    colour_chunks: list[bytes] = []
    n_colors = -1
    if palette:
        scanlines, words, n_colors = _palette_scanlines(_pixel_words(rgba), MAX_PALETTE_COLORS)
    if n_colors > 0:
        colours = words[:n_colors].view(np.uint8).reshape(n_colors, 4)
        colour_type = _COLOR_TYPE_PALETTE
        colour_chunks.append(_chunk(b"PLTE", np.ascontiguousarray(colours[:, :3]).tobytes()))
        alpha = colours[:, 3]
        translucent = np.flatnonzero(alpha != 255)
        if translucent.size:  # tRNS holds the alpha of entries 0..k; later entries are opaque
            colour_chunks.append(_chunk(b"tRNS", alpha[: translucent[-1] + 1].tobytes()))
    else:
        colour_type = _COLOR_TYPE_RGBA
        scanlines = np.empty((height, width * 4 + 1), dtype=np.uint8)
        scanlines[:, 0] = 0  # filter type None
        scanlines[:, 1:] = rgba.reshape(height, width * 4)
    idat = deflate(scanlines.data, compress_level)
    parts = [_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
    if dpi is not None:
        per_metre = int(round(dpi / _METRES_PER_INCH))
        parts.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    parts += colour_chunks
    parts += [_chunk(b"IDAT", idat), _chunk(b"IEND", b"")]
    return b"".join(parts)
