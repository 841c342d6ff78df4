"""The fast picture path: indexed PNGs (palette + transparency) that decode to the same pixels, the deflate
back end, cached colour tables, and the one-pass numba colouring of the cell pictures."""
from __future__ import annotations

import io
import zlib

import datashader as ds
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rendering.colors import cached_lut, lut_from_hex
from rendering.png import MAX_PALETTE_COLORS, deflate, encode_png, palette_of
from rendering.raster import Viewport, render_categorical, render_numeric


def _decode(data: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(data))
    return image.mode, np.asarray(image.convert("RGBA"))


def _picture_with_colors(n_colors: int, shape=(40, 50), seed: int = 0) -> np.ndarray:
    """(H, W, 4) uint8 with exactly ``n_colors`` distinct RGBA colours, one of them fully transparent."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n_colors, 4), dtype=np.uint8)
    colours[:, 3] = 255
    colours[0] = 0  # transparent background
    colours[1 % n_colors, 3] = 90  # one translucent colour
    colours = np.unique(colours, axis=0)
    assert len(colours) == n_colors
    codes = rng.integers(0, n_colors, shape)
    codes.ravel()[:n_colors] = np.arange(n_colors)  # every colour is used
    return colours[codes]


@pytest.mark.parametrize("n_colors", [1, 2, 85, MAX_PALETTE_COLORS])
def test_picture_of_at_most_256_colours_is_an_indexed_png_of_the_same_pixels(n_colors):
    rgba = _picture_with_colors(n_colors)
    mode, back = _decode(encode_png(rgba))
    assert mode == "P"
    np.testing.assert_array_equal(back, rgba)


def test_picture_of_257_colours_is_an_rgba_png_of_the_same_pixels():
    rgba = _picture_with_colors(MAX_PALETTE_COLORS + 1, shape=(60, 60))
    mode, back = _decode(encode_png(rgba))
    assert mode == "RGBA"
    np.testing.assert_array_equal(back, rgba)


def test_palette_false_writes_rgba():
    rgba = _picture_with_colors(5)
    mode, back = _decode(encode_png(rgba, palette=False))
    assert mode == "RGBA"
    np.testing.assert_array_equal(back, rgba)


def test_indexed_png_keeps_transparency_and_dpi():
    rgba = _picture_with_colors(6)
    image = Image.open(io.BytesIO(encode_png(rgba, dpi=300)))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(alpha, rgba[..., 3])
    assert {0, 90, 255} <= set(np.unique(alpha).tolist())


def test_indexed_png_of_a_flat_colour_picture_is_smaller_than_rgba():
    rgba = _picture_with_colors(40, shape=(200, 300))
    assert len(encode_png(rgba)) < len(encode_png(rgba, palette=False))


def test_indexed_png_of_a_flipped_view_decodes_flipped():
    rgba = _picture_with_colors(12, shape=(9, 7))
    _, back = _decode(encode_png(rgba[::-1]))
    np.testing.assert_array_equal(back, rgba[::-1])


def test_palette_of_rebuilds_the_picture_and_declines_too_many_colours():
    rgba = _picture_with_colors(30)
    index, palette = palette_of(rgba)
    assert index.dtype == np.uint8 and palette.shape == (30, 4)
    np.testing.assert_array_equal(palette[index], rgba)
    assert palette_of(rgba, max_colors=29) is None


@pytest.mark.parametrize("level", range(10))
def test_deflate_output_inflates_with_zlib(level):
    data = np.random.default_rng(level).integers(0, 4, 50_000, dtype=np.uint8).tobytes()
    assert zlib.decompress(deflate(data, level)) == data


def test_lut_from_hex_returns_a_fresh_table_and_cached_lut_a_read_only_one():
    colours = ["#ff0000", "#00FF00", "0000ff"]
    first = lut_from_hex(colours)
    first[0] = 0
    assert lut_from_hex(colours)[0].tolist() == [255, 0, 0, 255]
    shared = cached_lut(colours)
    assert shared is cached_lut(list(colours)) and not shared.flags.writeable
    with pytest.raises(ValueError, match="entry 1"):
        cached_lut(["#ff0000", "#nothex"])


# ---------------------------------------------------------------------------------------------- pictures
def _cells(n: int = 20_000, n_codes: int = 40, seed: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.random(n).astype(np.float32) * 10
    y = rng.random(n).astype(np.float32) * 8
    codes = rng.integers(-1, n_codes, n).astype(np.int16)  # -1: not drawn
    colours = [f"#{v:06x}" for v in rng.integers(0, 0xFFFFFF, n_codes)]
    return x, y, codes, colours


VIEW = Viewport(0.0, 10.0, 0.0, 8.0, 60, 40)


def _last_code_raster(x, y, codes) -> np.ndarray:
    """Reference: datashader's ``last`` code per pixel (-1 = empty), row 0 at y0."""
    field = np.where(codes >= 0, codes, np.nan).astype(np.float32)
    canvas = ds.Canvas(plot_width=VIEW.width_px, plot_height=VIEW.height_px, x_range=(0, 10), y_range=(0, 8))
    agg = canvas.points(pd.DataFrame({"x": x, "y": y, "c": field}), "x", "y", agg=ds.last("c")).values
    return np.where(np.isnan(agg), -1, agg).astype(np.int64)


@pytest.mark.parametrize("y_down", [False, True])
def test_categorical_picture_is_the_colour_of_each_pixels_last_cell_in_display_order(y_down):
    x, y, codes, colours = _cells()
    index = _last_code_raster(x, y, codes)
    table = np.vstack([lut_from_hex(colours), np.zeros((1, 4), np.uint8)])  # last row: transparent background
    expected = table[np.where(index >= 0, index, len(colours))]
    expected = expected if y_down else expected[::-1]
    picture = render_categorical(x, y, codes, colours, VIEW, y_down=y_down)
    np.testing.assert_array_equal(picture, expected)


def test_categorical_picture_with_codes_beyond_the_colour_table_raises():
    x, y, codes, colours = _cells()
    with pytest.raises(ValueError, match="has no colour"):
        render_categorical(x, y, codes, colours[:-3], VIEW)


@pytest.mark.parametrize("y_down", [False, True])
def test_numeric_picture_maps_each_pixels_max_onto_the_colour_map(y_down):
    from rendering.colors import cmap_lut

    x, y, _, _ = _cells()
    values = np.random.default_rng(4).gamma(2.0, 1.0, len(x)).astype(np.float32)
    canvas = ds.Canvas(plot_width=VIEW.width_px, plot_height=VIEW.height_px, x_range=(0, 10), y_range=(0, 8))
    agg = canvas.points(pd.DataFrame({"x": x, "y": y, "v": values}), "x", "y", agg=ds.max("v")).values
    level = np.clip(np.floor((agg - 0.5) * (256 / (4.0 - 0.5))), 0, 255)
    expected = np.where(np.isnan(agg)[..., None], 0, cmap_lut("viridis")[np.nan_to_num(level).astype(int)])
    expected = expected if y_down else expected[::-1]
    picture = render_numeric(x, y, values, VIEW, vmin=0.5, vmax=4.0, y_down=y_down)
    np.testing.assert_array_equal(picture, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_viewport_contains_matches_numpy_comparisons_at_the_bounds(dtype):
    view = Viewport(0.1, 0.7, -0.3, 0.2, 10, 10)
    edges = np.array([0.1, 0.7, -0.3, 0.2], dtype=dtype)
    near = np.concatenate([edges, np.nextafter(edges, dtype(-9)), np.nextafter(edges, dtype(9))])
    x, y = np.meshgrid(near, near)
    x, y = x.ravel().astype(dtype), y.ravel().astype(dtype)
    expected = (x >= view.x0) & (x <= view.x1) & (y >= view.y0) & (y <= view.y1)
    inside = view.contains(x, y)
    assert inside.dtype == bool and 0 < inside.sum() < inside.size
    np.testing.assert_array_equal(inside, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_viewport_count_inside_is_the_number_of_cells_contains_marks(dtype):
    rng = np.random.default_rng(6)
    x, y = (rng.normal(0, 1, 5000) * 3).astype(dtype), (rng.normal(0, 1, 5000) * 3).astype(dtype)
    view = Viewport(-1.0, 2.0, -0.5, 1.5, 10, 10)
    assert view.count_inside(x, y) == int(view.contains(x, y).sum()) > 0


def test_numeric_picture_draws_nan_cells_grey_and_others_from_the_colour_map():
    x = np.array([1.0, 5.0, 5.0], dtype=np.float32)
    y = np.array([1.0, 4.0, 4.0], dtype=np.float32)
    values = np.array([np.nan, np.nan, 2.0], dtype=np.float32)  # a NaN-only pixel; a pixel with one value
    picture = render_numeric(x, y, values, VIEW, vmin=0.0, vmax=4.0, y_down=True)
    from rendering.colors import NAN_GREY, cmap_lut, to_rgba

    assert tuple(picture[5, 6]) == to_rgba(NAN_GREY)
    assert tuple(picture[20, 30]) == tuple(cmap_lut("viridis")[128])
    assert picture[..., 3].astype(bool).sum() == 2
