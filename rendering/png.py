"""PNG encoding of RGBA pictures for the picture route.

Speed matters more than size here (the picture is rebuilt on every zoom and cached by URL). The default writer
is a minimal PNG encoder on top of :mod:`zlib`: filter type 0 (None) on every row and zlib level 1. Measured on a
1000x800 picture of 200k cells in 300 random-coloured categories (``bench/render_bench.py``): 18 ms / 447 kB,
against Pillow at ``compress_level=1`` 46 ms / 447 kB and Pillow's default level 6 94 ms / 472 kB. Pillow spends
most of its time choosing a filter per row (even at level 0 it takes 32 ms) and offers no option to turn that
off; on cell pictures (many small same-colour patches, transparent background) the filters gain nothing.
zlib releases the GIL while compressing, so threaded servers encode in parallel.

``method="pillow"`` keeps the Pillow path (used by the benchmark for comparison).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

#: zlib level used by default (1 = fastest). Pillow's own default is 6.
FAST_COMPRESS_LEVEL = 1

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_METRES_PER_INCH = 0.0254


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png(
    rgba: np.ndarray,
    *,
    compress_level: int = FAST_COMPRESS_LEVEL,
    dpi: float | None = None,
    method: str = "zlib",
) -> bytes:
    """Encode an RGBA picture as PNG.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8, row 0 = top of the picture.
    compress_level : int
        zlib level 0-9.
    dpi : float, optional
        Resolution written to the ``pHYs`` chunk when given.
    method : {"zlib", "pillow"}
        ``zlib``: the fast unfiltered writer; ``pillow``: ``PIL.Image.save`` (adaptive row filters).

    Returns
    -------
    bytes
        The PNG file (8-bit RGBA, non-interlaced).
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"encode_png needs an (H, W, 4) uint8 array, got shape {rgba.shape} dtype {rgba.dtype}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level={compress_level} must be in 0..9")
    height, width = rgba.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty {width}x{height} picture")
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

    scanlines = np.empty((height, width * 4 + 1), dtype=np.uint8)
    scanlines[:, 0] = 0  # filter type None
    scanlines[:, 1:] = rgba.reshape(height, width * 4)
    compressor = zlib.compressobj(compress_level)
    idat = compressor.compress(scanlines.data) + compressor.flush()
    parts = [_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))]
    if dpi is not None:
        if not dpi > 0:
            raise ValueError(f"dpi={dpi!r} must be positive")
        per_metre = int(round(dpi / _METRES_PER_INCH))
        parts.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    parts += [_chunk(b"IDAT", idat), _chunk(b"IEND", b"")]
    return b"".join(parts)
