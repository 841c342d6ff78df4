"""Two genes in one picture (rendering.blend): blend colours at known pixels, the "both" mode, the 2-D legend."""
from __future__ import annotations

import numpy as np
import pytest

from rendering.blend import (THEMES, blend_color, blend_table, legend_2d_png, legend_2d_rgba, plot_background,
                            render_two_genes)
from rendering.colors import parse_hex, to_rgba
from rendering.raster import Viewport

VIEW = Viewport(0.0, 10.0, 0.0, 10.0, 10, 10)


def _cells():
    """Five cells, each alone in its pixel (column = x, row = y with y_down): A only, B only, both high,
    no value (NaN), neither expressed."""
    x = np.array([1.5, 3.5, 5.5, 7.5, 9.5], dtype=np.float32)
    y = np.array([0.5, 2.5, 4.5, 6.5, 8.5], dtype=np.float32)
    a = np.array([8.0, 0.0, 8.0, np.nan, 0.0], dtype=np.float32)
    b = np.array([0.0, 6.0, 6.0, np.nan, 0.0], dtype=np.float32)
    return x, y, a, b


def _px(image, x, y):
    return tuple(int(c) for c in image[int(y), int(x)])  # y_down=True: row = floor(y) in this 1-unit grid


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_blend_pixels_show_each_gene_colour_their_mix_and_nan_grey(theme):
    x, y, a, b = _cells()
    th = THEMES[theme]
    img = render_two_genes(x, y, a, b, VIEW, range_a=(0, 8), range_b=(0, 6), theme=theme, y_down=True)
    assert img.shape == (10, 10, 4) and img.dtype == np.uint8
    assert _px(img, 1.5, 0.5) == to_rgba(th.color_a)  # only A, at the top of its range
    assert _px(img, 3.5, 2.5) == to_rgba(th.color_b)  # only B
    assert _px(img, 5.5, 4.5) == to_rgba(th.color_both)  # both high
    assert _px(img, 7.5, 6.5) == to_rgba(th.nan)  # no value
    assert _px(img, 9.5, 8.5) == to_rgba(th.low)  # neither expressed
    assert _px(img, 0.5, 9.5) == to_rgba(th.background)  # no cell


def test_dark_theme_is_magenta_green_and_white():
    th = THEMES["dark"]
    assert parse_hex(th.color_a) == (255, 0, 255)
    assert parse_hex(th.color_b) == (0, 255, 0)
    assert parse_hex(th.color_both) == (255, 255, 255)


def test_half_expression_of_a_is_between_low_and_a_colour():
    x, y, _a, _b = _cells()
    a = np.array([4.0, 0, 0, 0, 0], dtype=np.float32)
    img = render_two_genes(x, y, a, np.zeros(5, np.float32), VIEW, range_a=(0, 8), range_b=(0, 1), y_down=True)
    assert _px(img, 1.5, 0.5) == blend_color(0.5, 0.0)
    low, full = np.array(parse_hex(THEMES["dark"].low)), np.array(parse_hex(THEMES["dark"].color_a))
    mid = np.array(_px(img, 1.5, 0.5)[:3])
    assert np.all(np.abs(mid - (low + full) / 2) <= 8)


def test_each_channel_takes_the_max_of_the_cells_sharing_a_pixel():
    """An A-only cell and a B-only cell in one pixel make it 'both' (per-channel max)."""
    x = np.array([2.2, 2.7], dtype=np.float32)
    y = np.array([3.3, 3.6], dtype=np.float32)
    img = render_two_genes(x, y, np.array([8.0, 0.0]), np.array([0.0, 6.0]), VIEW, range_a=(0, 8), range_b=(0, 6),
                           y_down=True)
    assert _px(img, 2.5, 3.5) == to_rgba(THEMES["dark"].color_both)


def test_both_mode_hides_single_expressers_behind_dim_grey():
    x, y, a, b = _cells()
    th = THEMES["dark"]
    img = render_two_genes(x, y, a, b, VIEW, range_a=(0, 8), range_b=(0, 6), mode="both", y_down=True)
    assert _px(img, 1.5, 0.5) == to_rgba(th.dimmed)  # A only
    assert _px(img, 3.5, 2.5) == to_rgba(th.dimmed)  # B only
    assert _px(img, 5.5, 4.5) == to_rgba(th.color_both)  # both
    assert _px(img, 7.5, 6.5) == to_rgba(th.nan)
    assert _px(img, 9.5, 8.5) == to_rgba(th.dimmed)


def test_both_mode_thresholds_are_strict_and_per_cell():
    x, y, a, b = _cells()
    img = render_two_genes(x, y, a, b, VIEW, range_a=(0, 8), range_b=(0, 6), mode="both", threshold_a=7.0,
                           threshold_b=6.0, y_down=True)
    assert _px(img, 5.5, 4.5) == to_rgba(THEMES["dark"].dimmed)  # b == 6 is not above 6
    # two single expressers sharing a pixel are not a double positive
    x2 = np.array([2.2, 2.7], dtype=np.float32)
    y2 = np.array([3.3, 3.6], dtype=np.float32)
    img2 = render_two_genes(x2, y2, np.array([8.0, 0.0]), np.array([0.0, 6.0]), VIEW, range_a=(0, 8),
                            range_b=(0, 6), mode="both", y_down=True)
    assert _px(img2, 2.5, 3.5) == to_rgba(THEMES["dark"].dimmed)


def test_y_up_puts_the_first_cell_on_the_bottom_row():
    x, y, a, b = _cells()
    img = render_two_genes(x, y, a, b, VIEW, range_a=(0, 8), range_b=(0, 6), y_down=False)
    assert tuple(img[9, 1]) == to_rgba(THEMES["dark"].color_a)


def test_spread_fills_empty_neighbours_of_a_lone_cell():
    x = np.array([5.5], dtype=np.float32)
    y = np.array([5.5], dtype=np.float32)
    img = render_two_genes(x, y, np.array([8.0]), np.array([0.0]), VIEW, range_a=(0, 8), range_b=(0, 6),
                           spread_px=1, y_down=True)
    assert _px(img, 6.5, 5.5) == to_rgba(THEMES["dark"].color_a)


@pytest.mark.parametrize("kwargs, message", [
    ({"range_a": (1, 1)}, "range_a"),
    ({"mode": "either"}, "mode"),
    ({"theme": "neon"}, "theme"),
])
def test_bad_arguments_are_named(kwargs, message):
    x, y, a, b = _cells()
    args = {"range_a": (0, 8), "range_b": (0, 6), **kwargs}
    with pytest.raises(ValueError, match=message):
        render_two_genes(x, y, a, b, VIEW, **args)


def test_values_of_another_length_are_refused():
    x, y, a, _b = _cells()
    with pytest.raises(ValueError, match="values_b"):
        render_two_genes(x, y, a, np.zeros(3), VIEW, range_a=(0, 8), range_b=(0, 6))


def test_legend_corners_are_the_theme_corners_and_png_carries_ranges():
    th = THEMES["dark"]
    rgba = legend_2d_rgba(64)
    assert tuple(rgba[-1, 0]) == to_rgba(th.low)  # bottom-left: neither
    assert tuple(rgba[-1, -1]) == to_rgba(th.color_a)  # bottom-right: A high
    assert tuple(rgba[0, 0]) == to_rgba(th.color_b)  # top-left: B high
    assert tuple(rgba[0, -1]) == to_rgba(th.color_both)  # top-right: both
    legend = legend_2d_png(64, range_a=(0, 8), range_b=(0, 6), gene_a="DRD1", gene_b="PENK")
    assert legend.png.startswith(b"\x89PNG") and legend.range_a == (0.0, 8.0) and legend.range_b == (0.0, 6.0)
    assert legend.to_dict()["src"].startswith("data:image/png;base64,")


def test_legend_uses_the_picture_colour_table():
    table = blend_table("light")
    rgba = legend_2d_rgba(table.shape[0], "light")
    np.testing.assert_array_equal(rgba[::-1].transpose(1, 0, 2), table)


def test_the_plot_behind_a_two_gene_picture_takes_the_pictures_background():
    picture = render_two_genes(np.array([0.5]), np.array([0.5]), np.array([1.0]), np.array([0.0]),
                               Viewport(0, 4, 0, 4, 4, 4), range_a=(0, 1), range_b=(0, 1))
    empty = tuple(picture[3, 3])
    assert empty == to_rgba(plot_background())  # an empty pixel and the plot around the picture: one colour
    assert plot_background("light") == "rgba(0,0,0,0)"


def test_two_gene_cells_can_be_drawn_as_dots_of_a_real_radius():
    picture = render_two_genes(np.array([2.5]), np.array([2.5]), np.array([1.0]), np.array([0.0]),
                               Viewport(0, 5, 0, 5, 5, 5), range_a=(0, 1), range_b=(0, 1), dot_radius_px=1.0,
                               theme="light")
    assert (picture[..., 3] > 0).sum() in (3, 4)  # pi * 1**2 pixels
