"""Unit tests of the rendering layer on small hand-made layouts whose pixels are known."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rendering import raster
from rendering.colors import (
    ADJACENT_GREY,
    NAN_GREY,
    NOT_MEASURED_COLOR,
    UNASSIGNED_GREY,
    ZERO_GREY,
    cmap_lut,
    colorbar_png,
    colorbar_rgba,
    colorscale_stops,
    dim_lut,
    lut_from_hex,
    parse_hex,
)
from rendering.png import encode_png
from rendering.raster import (
    CELL_DIAMETER_MM,
    Viewport,
    auto_spread_px,
    default_gene_range,
    dot_pixels,
    dot_radius_px,
    render_categorical,
    render_numeric,
    spread_dots,
    spread_index,
)

RED, GREEN, BLUE = "#FF0000", "00ff00", "#0000Ff"
COLORS = [RED, GREEN, BLUE]


def grid_cells(n_cols: int, n_rows: int):
    """One cell at the centre of each pixel of an n_cols x n_rows viewport of 1 data unit per pixel."""
    cols, rows = np.meshgrid(np.arange(n_cols), np.arange(n_rows))
    x = (cols.ravel() + 0.5).astype(np.float32)
    y = (rows.ravel() + 0.5).astype(np.float32)
    return x, y


def saturation(pixel: np.ndarray) -> int:
    return int(pixel[:3].max()) - int(pixel[:3].min())


# ------------------------------------------------------------------------------------------------ Viewport


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width_px": 0}, "width_px"),
        ({"height_px": -3}, "height_px"),
        ({"width_px": 2.5}, "width_px"),
        ({"width_px": 10_000}, "width_px"),
        ({"x0": float("nan")}, "x0"),
        ({"y1": float("inf")}, "y1"),
        ({"x0": 5.0, "x1": 5.0}, "x1"),
        ({"y0": 3.0, "y1": 1.0}, "y1"),
        ({"x0": "left"}, "x0"),
    ],
)
def test_viewport_rejects_bad_field_naming_it(kwargs, field):
    base = {"x0": 0.0, "x1": 1.0, "y0": 0.0, "y1": 1.0, "width_px": 10, "height_px": 10}
    base.update(kwargs)
    with pytest.raises(ValueError, match=field):
        Viewport(**base)


def test_viewport_max_px_argument_bounds_the_size():
    Viewport(0, 1, 0, 1, 300, 300, max_px=300)
    with pytest.raises(ValueError, match="height_px"):
        Viewport(0, 1, 0, 1, 300, 301, max_px=300)


def test_viewport_plotly_image_puts_top_edge_at_y0_when_y_down():
    vp = Viewport(1.0, 3.0, 10.0, 14.0, 20, 40)
    down = vp.plotly_image(y_down=True)
    up = vp.plotly_image(y_down=False)
    assert (down["x"], down["y"], down["sizex"], down["sizey"]) == (1.0, 10.0, 2.0, 4.0)
    assert up["y"] == 14.0
    assert down["sizing"] == "stretch" and down["yanchor"] == "top"


# ------------------------------------------------------------------------------------------------ categorical


def test_categorical_pixel_colours_match_codes_and_y_up_puts_y1_on_row_0():
    # 4 x 2 px; bottom data row (y in [0,1)) has codes 0,1,2,-1; top data row one cell of code 1 at x=0.5.
    vp = Viewport(0, 4, 0, 2, 4, 2)
    x = np.array([0.5, 1.5, 2.5, 3.5, 0.5], np.float32)
    y = np.array([0.5, 0.5, 0.5, 0.5, 1.5], np.float32)
    codes = np.array([0, 1, 2, -1, 1], np.int16)
    img = render_categorical(x, y, codes, COLORS, vp, y_down=False)
    assert img.shape == (2, 4, 4) and img.dtype == np.uint8
    assert tuple(img[1, 0]) == (255, 0, 0, 255)
    assert tuple(img[1, 1]) == (0, 255, 0, 255)
    assert tuple(img[1, 2]) == (0, 0, 255, 255)
    assert tuple(img[0, 0]) == (0, 255, 0, 255)


def test_categorical_code_minus_one_is_not_drawn():
    vp = Viewport(0, 4, 0, 2, 4, 2)
    x = np.array([3.5, 0.5], np.float32)
    y = np.array([0.5, 0.5], np.float32)
    img = render_categorical(x, y, np.array([-1, 0]), COLORS, vp, background=(1, 2, 3, 4), y_down=True)
    assert tuple(img[0, 3]) == (1, 2, 3, 4)
    assert tuple(img[0, 0]) == (255, 0, 0, 255)


def test_categorical_y_down_flips_rows():
    vp = Viewport(0, 3, 0, 5, 3, 5)
    rng = np.random.default_rng(1)
    x, y = grid_cells(3, 5)
    codes = rng.integers(0, 3, x.size)
    up = render_categorical(x, y, codes, COLORS, vp, y_down=False)
    down = render_categorical(x, y, codes, COLORS, vp, y_down=True)
    np.testing.assert_array_equal(down, up[::-1])
    # y_down: row 0 holds the cells with the smallest y.
    first_row_codes = codes[y < 1][np.argsort(x[y < 1])]
    expected = lut_from_hex(COLORS)[first_row_codes]
    np.testing.assert_array_equal(down[0], expected)


def test_categorical_later_cell_wins_shared_pixel():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    x = np.array([0.2, 0.7], np.float32)
    y = np.array([0.3, 0.6], np.float32)
    first = render_categorical(x, y, np.array([0, 2]), COLORS, vp)
    second = render_categorical(x, y, np.array([2, 0]), COLORS, vp)
    assert tuple(first[0, 0]) == (0, 0, 255, 255)
    assert tuple(second[0, 0]) == (255, 0, 0, 255)


def test_categorical_highlight_keeps_highlighted_and_dims_others():
    vp = Viewport(0, 3, 0, 1, 3, 1)
    x = np.array([0.5, 1.5, 2.5], np.float32)
    y = np.full(3, 0.5, np.float32)
    codes = np.array([0, 1, 2])
    plain = render_categorical(x, y, codes, COLORS, vp)
    by_code = render_categorical(x, y, codes, COLORS, vp, highlight={1})
    by_mask = render_categorical(x, y, codes, COLORS, vp, highlight=np.array([False, True, False]))
    np.testing.assert_array_equal(by_code, by_mask)
    np.testing.assert_array_equal(by_code[0, 1], plain[0, 1])
    for col in (0, 2):
        assert saturation(by_code[0, col]) < saturation(plain[0, col])
        assert by_code[0, col, 3] == 255


def test_categorical_highlighted_cell_is_drawn_over_a_later_dimmed_cell():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    x = np.array([0.2, 0.7], np.float32)
    y = np.array([0.3, 0.6], np.float32)
    img = render_categorical(x, y, np.array([0, 2]), COLORS, vp, highlight={0})
    assert tuple(img[0, 0]) == (255, 0, 0, 255)


def test_categorical_dim_one_leaves_colours_unchanged():
    vp = Viewport(0, 3, 0, 1, 3, 1)
    x = np.array([0.5, 1.5, 2.5], np.float32)
    y = np.full(3, 0.5, np.float32)
    codes = np.array([0, 1, 2])
    np.testing.assert_array_equal(
        render_categorical(x, y, codes, COLORS, vp, highlight={1}, dim=1.0),
        render_categorical(x, y, codes, COLORS, vp),
    )


def test_categorical_5322_categories_use_a_2d_aggregate(monkeypatch):
    n_categories = 5322
    rng = np.random.default_rng(2)
    n = 50_000
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    codes = rng.integers(-1, n_categories, n).astype(np.int16)
    colors = [f"#{(i * 2654435761) % 0xFFFFFF:06x}" for i in range(n_categories)]
    shapes = []
    real = raster._aggregate

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        shapes.extend(a.shape for a in out.values())
        return out

    monkeypatch.setattr(raster, "_aggregate", spy)
    img = render_categorical(x, y, codes, colors, Viewport(0, 1, 0, 1, 1000, 800))
    assert img.shape == (800, 1000, 4)
    assert shapes == [(800, 1000)]
    # every drawn pixel has the colour of some category present in the data
    lut = lut_from_hex(colors)
    drawn = img[img[..., 3] > 0].view(np.uint32).ravel()
    assert np.isin(drawn, lut[np.unique(codes[codes >= 0])].view(np.uint32).ravel()).all()


def test_categorical_accepts_prebuilt_colour_table():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    lut = lut_from_hex(COLORS)
    img = render_categorical(np.array([0.5]), np.array([0.5]), np.array([2]), lut, vp)
    assert tuple(img[0, 0]) == tuple(lut[2])


def test_categorical_code_without_colour_raises_naming_it():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="code 3"):
        render_categorical(np.array([0.5]), np.array([0.5]), np.array([3]), COLORS, vp)


def test_categorical_length_mismatch_raises():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="codes"):
        render_categorical(np.array([0.5, 0.2]), np.array([0.5, 0.2]), np.array([0]), COLORS, vp)


def test_categorical_empty_input_is_background():
    vp = Viewport(0, 1, 0, 1, 5, 4)
    img = render_categorical(np.array([], np.float32), np.array([], np.float32), np.array([], np.int16), COLORS, vp)
    assert img.shape == (4, 5, 4) and not img.any()


def test_categorical_cells_outside_viewport_are_not_drawn():
    vp = Viewport(0, 1, 0, 1, 2, 2)
    img = render_categorical(np.array([5.0, -1.0]), np.array([0.5, 0.5]), np.array([0, 1]), COLORS, vp)
    assert not img.any()


# ------------------------------------------------------------------------------------------------ spread


def test_spread_fills_empty_neighbours_without_overwriting_cells():
    vp = Viewport(0, 9, 0, 9, 9, 9)
    x = np.array([4.5, 5.5], np.float32)
    y = np.array([4.5, 4.5], np.float32)
    img = render_categorical(x, y, np.array([0, 2]), COLORS, vp, spread_px=2, y_down=True)
    assert tuple(img[4, 4]) == (255, 0, 0, 255)
    assert tuple(img[4, 5]) == (0, 0, 255, 255)
    assert tuple(img[4, 2]) == (255, 0, 0, 255)  # 2 px left of the red cell
    assert tuple(img[4, 7]) == (0, 0, 255, 255)  # 2 px right of the blue cell
    assert img[4, 0, 3] == 0 and img[0, 0, 3] == 0  # beyond the radius stays empty


def test_spread_index_zero_radius_returns_input():
    index = np.array([[-1, 3], [-1, -1]], np.int32)
    np.testing.assert_array_equal(spread_index(index, 0), index)
    np.testing.assert_array_equal(spread_index(index, 1), np.full((2, 2), 3))


def test_auto_spread_grows_when_few_cells_are_in_view():
    vp = Viewport(0, 1, 0, 1, 1000, 800)
    assert auto_spread_px(4_000_000, vp) == 0
    assert auto_spread_px(0, vp) == 0
    few = auto_spread_px(500, vp)
    some = auto_spread_px(20_000, vp)
    assert few > some >= 1
    assert few <= raster.MAX_AUTO_SPREAD_PX


def test_auto_spread_with_cell_diameter_draws_cells_at_true_size():
    # 1 mm over 500 px = 0.002 mm/px; a 0.01 mm cell has a radius of 2.5 px.
    assert auto_spread_px(10, Viewport(0, 1, 0, 1, 500, 500), cell_diameter=0.01) == 2
    assert auto_spread_px(10, Viewport(0, 10, 0, 10, 500, 500), cell_diameter=0.01) == 0
    assert auto_spread_px(10, Viewport(0, 0.01, 0, 0.01, 500, 500), cell_diameter=0.01) == raster.MAX_AUTO_SPREAD_PX


@pytest.mark.parametrize(("radius", "pixels"), [(0.0, 1), (0.5, 1), (0.8, 2), (1.0, 3), (1.2, 4), (2.0, 12)])
def test_a_dot_covers_the_whole_pixels_of_pi_r_squared_and_some_dots_one_more(radius, pixels):
    index = np.full((9, 9), -1, np.int32)
    index[4, 4] = 7
    dot = spread_dots(index, radius)
    assert dot_pixels(radius) == pixels
    assert pixels <= (dot == 7).sum() <= pixels + 1 and (dot >= 0).sum() == (dot == 7).sum()
    assert dot[4, 4] == 7


def test_dots_cover_pi_r_squared_pixels_on_average():
    rng = np.random.default_rng(1)
    index = np.full((400, 400), -1, np.int32)
    rows, cols = rng.integers(0, 100, 400) * 4, rng.integers(0, 100, 400) * 4  # on a 4-px lattice: no overlap
    index[rows, cols] = 1
    drawn = (index >= 0).sum()
    for radius in (0.7, 0.9, 1.05):
        covered = (spread_dots(index, radius) >= 0).sum() / drawn
        assert covered == pytest.approx(np.pi * radius ** 2, rel=0.08)


def test_dots_never_overwrite_a_pixel_that_shows_a_cell():
    vp = Viewport(0, 9, 0, 1, 9, 1)
    img = render_categorical(np.array([3.5, 4.5]), np.array([0.5, 0.5]), np.array([0, 2]), COLORS, vp,
                             dot_radius_px=2.0, y_down=True)
    assert tuple(img[0, 3]) == (255, 0, 0, 255) and tuple(img[0, 4]) == (0, 0, 255, 255)
    assert tuple(img[0, 2]) == (255, 0, 0, 255) and tuple(img[0, 5]) == (0, 0, 255, 255)


def _painted_share(x, y, width_px, radius_rule):
    vp = Viewport(0, 1, 0, 1, width_px, width_px)
    n = vp.count_inside(x, y)
    codes = np.zeros(len(x), np.int64)
    if radius_rule == "dot":
        img = render_categorical(x, y, codes, COLORS, vp, dot_radius_px=dot_radius_px(n, vp, tissue_fraction=1.0))
    else:
        img = render_categorical(x, y, codes, COLORS, vp, spread_px=auto_spread_px(n, vp, tissue_fraction=1.0))
    return float((img[..., 3] > 0).mean())


def test_dot_size_changes_smoothly_with_the_window_where_the_whole_pixel_spread_jumps():
    rng = np.random.default_rng(0)
    x, y = rng.random(20_000), rng.random(20_000)  # about 2 px apart at 280 px
    widths = range(250, 330, 4)
    dots = [_painted_share(x, y, w, "dot") for w in widths]
    spread = [_painted_share(x, y, w, "spread") for w in widths]
    assert max(abs(a - b) for a, b in zip(dots, dots[1:])) < 0.02
    assert max(abs(a - b) for a, b in zip(spread, spread[1:])) > 0.3  # the flip the dot rule removes
    assert 0.4 < min(dots)  # never one-pixel dust at this density


def test_dot_radius_is_the_physical_size_when_zoomed_in_and_capped_when_cells_are_sparse():
    # 1 mm over 1000 px = 1 um per px: a 10 um cell has a radius of 5 px, whatever the density
    assert dot_radius_px(3, Viewport(0, 1, 0, 1, 1000, 1000), cell_diameter=CELL_DIAMETER_MM) == pytest.approx(5.0)
    # 100 mm over 1000 px: physically a speck, drawn at the density size but never a blob
    sparse = dot_radius_px(50, Viewport(0, 100, 0, 100, 1000, 1000), cell_diameter=CELL_DIAMETER_MM)
    assert sparse == raster.MAX_DENSITY_RADIUS_PX
    dense = dot_radius_px(4_000_000, Viewport(0, 100, 0, 100, 1000, 1000), cell_diameter=CELL_DIAMETER_MM)
    assert dense == 0.5 and dot_pixels(dense) == 1
    assert dot_radius_px(0, Viewport(0, 1, 0, 1, 10, 10)) == 0.0
    deepest = dot_radius_px(1, Viewport(0, 0.01, 0, 0.01, 1000, 1000), cell_diameter=CELL_DIAMETER_MM)
    assert deepest == raster.MAX_DOT_RADIUS_PX


# ------------------------------------------------------------------------------------------------ numeric


def test_numeric_zeros_are_light_grey_expressing_cells_coloured_and_not_measured_apart():
    vp = Viewport(0, 5, 0, 1, 5, 1)
    x = np.array([0.5, 1.5, 2.5, 3.5, 4.5], np.float32)
    y = np.full(5, 0.5, np.float32)
    values = np.array([0.0, 10.0, np.nan, 3.0, 0.2], np.float32)
    img = render_numeric(x, y, values, vp, vmin=0.0, vmax=5.0, cmap="viridis")
    lut = cmap_lut("viridis")
    assert tuple(img[0, 0]) == (*parse_hex(ZERO_GREY), 255)
    assert tuple(img[0, 1]) == tuple(lut[-1])
    assert tuple(img[0, 2]) == (*parse_hex(NOT_MEASURED_COLOR), 255)
    assert NOT_MEASURED_COLOR != ZERO_GREY and NAN_GREY == NOT_MEASURED_COLOR
    assert tuple(img[0, 3]) == tuple(lut[int(3.0 / 5.0 * 256)])
    assert tuple(img[0, 4]) == tuple(lut[int(0.2 / 5.0 * 256)])  # expressing, however little: on the map


def test_numeric_without_zero_colour_maps_range_ends_to_colormap_ends():
    vp = Viewport(0, 4, 0, 1, 4, 1)
    x = np.array([0.5, 1.5, 2.5, 3.5], np.float32)
    y = np.full(4, 0.5, np.float32)
    values = np.array([-1.0, 10.0, np.nan, 3.0], np.float32)
    img = render_numeric(x, y, values, vp, vmin=0.0, vmax=5.0, cmap="viridis", zero_color=None)
    lut = cmap_lut("viridis")
    assert tuple(img[0, 0]) == tuple(lut[0])
    assert tuple(img[0, 1]) == tuple(lut[-1])
    assert tuple(img[0, 2]) == (*parse_hex(NAN_GREY), 255)
    assert tuple(img[0, 3]) == tuple(lut[int(3.0 / 5.0 * 256)])


@pytest.mark.parametrize("how", ["max", "mean"])
def test_numeric_expressing_dot_is_drawn_over_a_later_non_expressing_neighbour(how):
    vp = Viewport(0, 7, 0, 1, 7, 1)
    x = np.array([2.5, 3.5], np.float32)  # the zero cell comes later in array order (drawn later)
    y = np.full(2, 0.5, np.float32)
    values = np.array([4.0, 0.0], np.float32)
    img = render_numeric(x, y, values, vp, vmin=0, vmax=4, how=how, spread_px=1)
    top = tuple(cmap_lut("viridis")[-1])
    grey = (*parse_hex(ZERO_GREY), 255)
    assert [tuple(p) for p in img[0, 1:4]] == [top, top, top]  # the whole dot, over the zero cell's pixel
    assert tuple(img[0, 4]) == grey and img[0, 5, 3] == 0
    legacy = render_numeric(x, y, values, vp, vmin=0, vmax=4, how=how, spread_px=1, zero_color=None)
    assert tuple(legacy[0, 3]) == tuple(cmap_lut("viridis")[0])  # before: the zero hid part of the dot


def test_numeric_pixel_shared_by_zero_and_expressing_cells_shows_the_expression():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    img = render_numeric(np.array([0.3, 0.6]), np.array([0.5, 0.5]), np.array([2.0, 0.0]), vp, vmin=0, vmax=2,
                         how="mean")
    assert tuple(img[0, 0]) == tuple(cmap_lut("viridis")[-1])


def test_numeric_max_takes_the_largest_value_in_a_pixel_and_mean_the_average():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    x = np.array([0.2, 0.4, 0.6], np.float32)
    y = np.array([0.5, 0.5, 0.5], np.float32)
    values = np.array([1.0, 4.0, np.nan], np.float32)
    lut = cmap_lut("magma")
    biggest = render_numeric(x, y, values, vp, vmin=0, vmax=4, cmap="magma", how="max")
    average = render_numeric(x, y, values, vp, vmin=0, vmax=4, cmap="magma", how="mean")
    assert tuple(biggest[0, 0]) == tuple(lut[255])
    assert tuple(average[0, 0]) == tuple(lut[int(2.5 / 4 * 256)])


@pytest.mark.parametrize("how", ["max", "mean"])
def test_numeric_pixel_with_only_nan_cells_is_grey_not_empty(how):
    vp = Viewport(0, 2, 0, 1, 2, 1)
    img = render_numeric(
        np.array([0.5, 0.6]), np.array([0.5, 0.5]), np.array([np.nan, np.nan]), vp, vmin=0, vmax=1, how=how
    )
    assert tuple(img[0, 0]) == (*parse_hex(NAN_GREY), 255)
    assert img[0, 1, 3] == 0


@pytest.mark.parametrize("how", ["max", "mean"])
def test_numeric_highlight_dims_other_cells(how):
    vp = Viewport(0, 2, 0, 1, 2, 1)
    x = np.array([0.5, 1.5], np.float32)
    y = np.array([0.5, 0.5], np.float32)
    values = np.array([0.5, 1.0], np.float32)
    plain = render_numeric(x, y, values, vp, vmin=0, vmax=1, how=how)
    lit = render_numeric(x, y, values, vp, vmin=0, vmax=1, how=how, highlight=np.array([False, True]))
    np.testing.assert_array_equal(lit[0, 1], plain[0, 1])
    assert saturation(lit[0, 0]) < saturation(plain[0, 0])


def test_numeric_colorcet_map_name_works():
    vp = Viewport(0, 1, 0, 1, 1, 1)
    img = render_numeric(np.array([0.5]), np.array([0.5]), np.array([1.0]), vp, vmin=0, vmax=1, cmap="fire")
    assert tuple(img[0, 0]) == tuple(cmap_lut("fire")[-1])


@pytest.mark.parametrize(("vmin", "vmax"), [(1.0, 1.0), (2.0, 1.0), (0.0, float("nan"))])
def test_numeric_bad_range_raises(vmin, vmax):
    vp = Viewport(0, 1, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="vmin"):
        render_numeric(np.array([0.5]), np.array([0.5]), np.array([1.0]), vp, vmin=vmin, vmax=vmax)


def test_default_gene_range_uses_expressing_cells_of_a_sparse_gene():
    values = np.zeros(10_000, np.float32)
    values[:100] = np.linspace(1.0, 8.0, 100)
    vmin, vmax = default_gene_range(values)
    assert vmin == 0.0
    assert vmax == pytest.approx(np.percentile(values[:100], 99))


def test_default_gene_range_of_unexpressed_gene_is_zero_to_one():
    assert default_gene_range(np.zeros(50)) == (0.0, 1.0)
    assert default_gene_range(np.full(5, np.nan)) == (0.0, 1.0)


def test_default_gene_range_with_negative_values_spans_percentiles():
    values = np.linspace(-3.0, 3.0, 1001)
    vmin, vmax = default_gene_range(values)
    assert vmin == pytest.approx(np.percentile(values, 1))
    assert vmax == pytest.approx(np.percentile(values, 99))


# ------------------------------------------------------------------------------------------------ colours, PNG


@pytest.mark.parametrize(
    ("text", "rgb"),
    [("#FF3358", (255, 51, 88)), ("#a8afa5", (168, 175, 165)), ("a8AFa5", (168, 175, 165)), (" #abc ", (170, 187, 204))],
)
def test_parse_hex_accepts_mixed_case_and_missing_hash(text, rgb):
    assert parse_hex(text) == rgb


@pytest.mark.parametrize("text", ["", "#12345", "#gg0000", "red"])
def test_parse_hex_rejects_non_hex_quoting_value(text):
    with pytest.raises(ValueError, match="not a hex"):
        parse_hex(text)


def test_lut_from_hex_builds_rgba_table_and_names_bad_entry():
    lut = lut_from_hex([UNASSIGNED_GREY, ADJACENT_GREY])
    assert lut.dtype == np.uint8 and lut.shape == (2, 4)
    assert lut.tolist() == [[200, 200, 200, 255], [128, 128, 128, 255]]
    with pytest.raises(ValueError, match="entry 1"):
        lut_from_hex(["#000000", "#zz0000"])
    assert lut_from_hex(["", "#ffffff"], missing=UNASSIGNED_GREY)[0].tolist() == [200, 200, 200, 255]


def test_dim_lut_moves_colour_toward_grey():
    lut = lut_from_hex([RED])
    dimmed = dim_lut(lut, 0.2)
    assert saturation(dimmed[0]) < saturation(lut[0])
    np.testing.assert_array_equal(dim_lut(lut, 1.0), lut)
    with pytest.raises(ValueError, match="dim"):
        dim_lut(lut, 1.5)


def test_colorscale_stops_match_the_picture_table():
    stops = colorscale_stops("viridis", 5)
    lut = cmap_lut("viridis")
    assert [s[0] for s in stops] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert stops[0][1] == "#{:02x}{:02x}{:02x}".format(*lut[0][:3])
    assert stops[-1][1] == "#{:02x}{:02x}{:02x}".format(*lut[-1][:3])


def test_colorbar_has_high_values_on_top():
    bar = colorbar_rgba("viridis", 3, 50)
    lut = cmap_lut("viridis")
    assert bar.shape == (50, 3, 4)
    assert tuple(bar[0, 0]) == tuple(lut[-1]) and tuple(bar[-1, 2]) == tuple(lut[0])
    png = Image.open(io.BytesIO(colorbar_png("viridis", 3, 50)))
    assert png.size == (3, 50)


def test_unknown_colour_map_raises_naming_it():
    with pytest.raises(ValueError, match="no_such_map"):
        cmap_lut("no_such_map")


@pytest.mark.parametrize("method", ["zlib", "pillow"])
def test_encode_png_round_trips_pixels(method):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (17, 19, 4), dtype=np.uint8)  # 323 colours: too many for a palette
    data = encode_png(rgba, method=method)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(image), rgba)


def test_encode_png_round_trips_flipped_view():
    rgba = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    back = np.asarray(Image.open(io.BytesIO(encode_png(rgba[::-1]))).convert("RGBA"))
    np.testing.assert_array_equal(back, rgba[::-1])


@pytest.mark.parametrize("method", ["zlib", "pillow"])
def test_encode_png_writes_dpi(method):
    image = Image.open(io.BytesIO(encode_png(np.zeros((2, 2, 4), np.uint8), dpi=300, method=method)))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)


def test_encode_png_rejects_non_rgba():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.uint8))
