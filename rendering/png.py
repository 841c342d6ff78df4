"""PNG encoding of RGBA pictures for the picture route.

Speed matters more than size here (the picture is rebuilt on every zoom and cached by URL), so the default is
zlib level 1: on a 1000x800 cell picture it is several times faster than Pillow's default level 6 for a file
only modestly larger (see ``bench/render_bench.py``).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: zlib level used by default (1 = fastest). Pillow's own default is 6.
FAST_COMPRESS_LEVEL = 1


def encode_png(rgba: np.ndarray, *, compress_level: int = FAST_COMPRESS_LEVEL, dpi: float | None = None) -> bytes:
    """Encode an RGBA picture as PNG.

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(H, W, 4)`` uint8, row 0 = top of the picture.
    compress_level : int
        zlib level 0-9.
    dpi : float, optional
        Written to the PNG ``pHYs`` chunk when given.

    Returns
    -------
    bytes
        The PNG file.
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"encode_png needs an (H, W, 4) uint8 array, got shape {rgba.shape} dtype {rgba.dtype}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level={compress_level} must be in 0..9")
    image = Image.fromarray(np.ascontiguousarray(rgba))  # (H, W, 4) uint8 -> RGBA
    buffer = io.BytesIO()
    options: dict = {"compress_level": compress_level}
    if dpi is not None:
        options["dpi"] = (dpi, dpi)
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()
