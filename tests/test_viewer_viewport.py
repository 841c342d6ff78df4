"""Viewport arithmetic: every relayoutData shape, aspect fitting, picture geometry and the scale bar."""
from __future__ import annotations

import pytest

from core.viewport import (Window, fit_aspect, make_window, nice_length, padded, picture_geometry,
                                 scale_bar, window_from_relayout)

FULL = Window(0.0, 10.0, 0.0, 8.0)
CURRENT = Window(2.0, 4.0, 1.0, 3.0)


def test_zoom_box_with_indexed_keys_sets_both_axes():
    event = {"xaxis.range[0]": 1.0, "xaxis.range[1]": 3.0, "yaxis.range[0]": 5.0, "yaxis.range[1]": 2.0}
    assert window_from_relayout(event, CURRENT, FULL) == Window(1.0, 3.0, 2.0, 5.0)


def test_range_pairs_are_read():
    event = {"xaxis.range": [1, 2], "yaxis.range": [3, 4]}
    assert window_from_relayout(event, None, FULL) == Window(1.0, 2.0, 3.0, 4.0)


def test_autorange_resets_to_full():
    event = {"xaxis.autorange": True, "yaxis.autorange": True}
    assert window_from_relayout(event, CURRENT, FULL) == FULL


def test_one_axis_event_keeps_the_other_axis():
    event = {"xaxis.range[0]": 5.0, "xaxis.range[1]": 6.0}
    assert window_from_relayout(event, CURRENT, FULL) == Window(5.0, 6.0, 1.0, 3.0)


def test_one_axis_autorange_resets_that_axis_only():
    assert window_from_relayout({"yaxis.autorange": True}, CURRENT, FULL) == Window(2.0, 4.0, 0.0, 8.0)


@pytest.mark.parametrize("event", [None, {}, {"autosize": True}, {"dragmode": "pan"},
                                   {"xaxis.range[0]": "x", "xaxis.range[1]": 2}])
def test_events_that_do_not_move_the_view_give_none(event):
    assert window_from_relayout(event, CURRENT, FULL) is None


def test_zero_width_zoom_gives_none():
    event = {"xaxis.range[0]": 1.0, "xaxis.range[1]": 1.0, "yaxis.range[0]": 0.0, "yaxis.range[1]": 2.0}
    assert window_from_relayout(event, CURRENT, FULL) is None


def test_window_from_dict_round_trip_and_rejects_garbage():
    assert Window.from_dict(CURRENT.to_dict()) == CURRENT
    assert Window.from_dict({"x0": 1}) is None
    assert Window.from_dict(None) is None


def test_make_window_rejects_nan():
    with pytest.raises(ValueError, match="x0"):
        make_window(float("nan"), 1, 0, 1)


def test_fit_aspect_widens_a_tall_window_about_its_centre():
    fitted = fit_aspect(Window(0, 2, 0, 4), 400, 400)
    assert fitted == Window(-1.0, 3.0, 0.0, 4.0)


def test_fit_aspect_heightens_a_wide_window():
    fitted = fit_aspect(Window(0, 4, 0, 1), 200, 100)
    assert fitted == Window(0.0, 4.0, -0.5, 1.5)


def test_picture_geometry_keeps_square_pixels_inside_the_frame():
    placed, w, h = picture_geometry(Window(0, 10, 0, 8), Window(0, 10, 0, 8), 1000, 800, 4096)
    assert placed == Window(0, 10, 0, 8) and (w, h) == (1000, 800)


def test_picture_geometry_clips_a_zoomed_out_view_to_the_frame():
    placed, w, h = picture_geometry(Window(-10, 20, -10, 14), Window(0, 10, 0, 8), 900, 720, 4096)
    assert placed == Window(0, 10, 0, 8)
    assert (w, h) == (300, 240)


def test_a_filling_picture_covers_the_whole_plot_beyond_the_frame():
    """The two-gene blend is drawn on black: its picture covers the plot exactly, not only the cells' frame."""
    placed, w, h = picture_geometry(Window(0, 10, 0, 8), Window(0, 10, 0, 8), 1500, 800, 4096, fill=True)
    assert placed == fit_aspect(Window(0, 10, 0, 8), 1500, 800) and placed.x0 < 0 < 10 < placed.x1
    assert (w, h) == (1500, 800)


def test_picture_geometry_respects_the_size_limit():
    _, w, h = picture_geometry(Window(0, 10, 0, 5), Window(0, 10, 0, 5), 8000, 4000, 1000)
    assert max(w, h) <= 1000 and abs(w / h - 2) < 0.01


def test_picture_geometry_of_a_view_beside_the_frame_is_none():
    assert picture_geometry(Window(20, 30, 20, 30), Window(0, 10, 0, 8), 500, 500, 4096) is None


def test_padded_grows_every_edge():
    assert padded((0, 10, 0, 5), 0.1) == Window(-1.0, 11.0, -1.0, 6.0)


def test_padded_degenerate_bounds_become_a_window():
    window = padded((3, 3, 3, 3))
    assert window.width > 0 and window.height > 0


@pytest.mark.parametrize("target,expected", [(0.37, 0.2), (1.0, 1.0), (7.9, 5.0), (23, 20), (0.0012, 0.001)])
def test_nice_length_is_1_2_5_times_a_power_of_ten(target, expected):
    assert nice_length(target) == pytest.approx(expected)


def test_scale_bar_reads_micrometres_below_a_millimetre():
    _, length, label = scale_bar(Window(0, 2, 0, 2))
    assert length == pytest.approx(0.2) and label == "200 µm"


def test_scale_bar_reads_millimetres():
    start, length, label = scale_bar(Window(10, 30, 0, 10))
    assert (length, label) == (2.0, "2 mm") and start == pytest.approx(10.8)
