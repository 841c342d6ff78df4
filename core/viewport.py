"""Viewport arithmetic for the map and the UMAP: Plotly ``relayoutData`` -> data window, picture size, scale bar.

All functions are pure and take plain values: a window is a :class:`Window` ``(x0, x1, y0, y1)`` in data units
with ``x0 < x1`` and ``y0 < y1`` whatever the display orientation.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple


class Window(NamedTuple):
    """A data window, ``x0 < x1`` and ``y0 < y1`` (slab mm for sections, UMAP units for single cells)."""

    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def to_dict(self) -> dict[str, float]:
        """``{"x0", "x1", "y0", "y1"}`` for a ``dcc.Store``."""
        return {"x0": self.x0, "x1": self.x1, "y0": self.y0, "y1": self.y1}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Window | None":
        """The window stored by :meth:`to_dict`, or None when ``data`` is empty or not a valid window."""
        if not data:
            return None
        try:
            return make_window(data["x0"], data["x1"], data["y0"], data["y1"])
        except (KeyError, TypeError, ValueError):
            return None


def make_window(x0: Any, x1: Any, y0: Any, y1: Any) -> Window:
    """A :class:`Window` from four numbers in any order along each axis.

    Raises
    ------
    ValueError
        When a bound is not a finite number or an axis has zero extent.
    """
    values = []
    for name, value in (("x0", x0), ("x1", x1), ("y0", y0), ("y1", y1)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{name}={value!r} is not finite")
        values.append(number)
    a, b, c, d = values
    if a == b:
        raise ValueError(f"x0 and x1 are both {a}: the window has no width")
    if c == d:
        raise ValueError(f"y0 and y1 are both {c}: the window has no height")
    return Window(min(a, b), max(a, b), min(c, d), max(c, d))


def padded(bounds: tuple[float, float, float, float], fraction: float = 0.03) -> Window:
    """``bounds`` ``(x_min, x_max, y_min, y_max)`` grown by ``fraction`` of the larger side on every edge.

    A degenerate extent (one cell, or none) becomes a unit window around it.
    """
    x_min, x_max, y_min, y_max = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (x_min, x_max, y_min, y_max)):
        x_min, x_max, y_min, y_max = 0.0, 1.0, 0.0, 1.0
    side = max(x_max - x_min, y_max - y_min)
    margin = side * fraction if side > 0 else 0.5
    return Window(x_min - margin, x_max + margin, y_min - margin, y_max + margin)


def _axis_range(relayout: Mapping[str, Any], axis: str) -> tuple[float, float] | None | str:
    """The new range of ``axis`` in ``relayout``: a pair, ``"auto"`` for autorange, or None if untouched."""
    if relayout.get(f"{axis}.autorange") is True:
        return "auto"
    whole = relayout.get(f"{axis}.range")
    if isinstance(whole, (list, tuple)) and len(whole) == 2:
        return float(whole[0]), float(whole[1])
    lo = relayout.get(f"{axis}.range[0]")
    hi = relayout.get(f"{axis}.range[1]")
    if lo is not None and hi is not None:
        return float(lo), float(hi)
    return None


def window_from_relayout(
    relayout: Mapping[str, Any] | None, current: Window | None, full: Window
) -> Window | None:
    """The window after a Plotly ``relayoutData`` event, or None when the event does not move the view.

    Handles every shape Plotly emits: ``xaxis.range[0]``/``xaxis.range[1]`` (zoom box, pan, scroll),
    ``xaxis.range`` as a pair, ``xaxis.autorange`` (double click: reset to ``full``), an event touching one axis
    only (the other keeps ``current``), and events that do not move the view (``autosize``, ``dragmode``).

    Parameters
    ----------
    relayout : dict or None
        ``dcc.Graph.relayoutData``.
    current : Window or None
        The window before the event (None = ``full``).
    full : Window
        The whole frame, used for a reset.

    Returns
    -------
    Window or None
    """
    if not relayout:
        return None
    try:
        x_change = _axis_range(relayout, "xaxis")
        y_change = _axis_range(relayout, "yaxis")
    except (TypeError, ValueError):
        return None
    if x_change is None and y_change is None:
        return None
    base = current or full
    if x_change == "auto":
        x0, x1 = full.x0, full.x1
    elif x_change is None:
        x0, x1 = base.x0, base.x1
    else:
        x0, x1 = x_change
    if y_change == "auto":
        y0, y1 = full.y0, full.y1
    elif y_change is None:
        y0, y1 = base.y0, base.y1
    else:
        y0, y1 = y_change
    try:
        return make_window(x0, x1, y0, y1)
    except ValueError:
        return None


def fit_aspect(window: Window, width_px: int, height_px: int) -> Window:
    """``window`` grown about its centre to the aspect of a ``width_px x height_px`` plot area.

    With equal axis scales (``scaleanchor``) Plotly shows more than the requested range along one axis; the
    picture must cover what is shown, so it is rendered for this grown window.
    """
    if width_px <= 0 or height_px <= 0:
        return window
    target = width_px / height_px
    aspect = window.width / window.height
    cx = (window.x0 + window.x1) / 2
    cy = (window.y0 + window.y1) / 2
    if aspect < target:  # too tall: widen
        half = window.height * target / 2
        return Window(cx - half, cx + half, window.y0, window.y1)
    half = window.width / target / 2
    return Window(window.x0, window.x1, cy - half, cy + half)


def picture_geometry(
    window: Window, frame: Window, width_px: int, height_px: int, max_px: int, *, fill: bool = False
) -> tuple[Window, int, int] | None:
    """Where to draw the picture of ``window`` and how many pixels it needs.

    The shown window (``window`` grown to the plot's aspect) is clipped to ``frame`` (the padded data bounds),
    so zooming out never renders empty pixels; the picture keeps square pixels at the plot's resolution. With
    ``fill`` the picture covers the whole shown window instead (a picture with its own background, the two-gene
    blend on black, fills the plot exactly).

    Parameters
    ----------
    window : Window
        Requested view.
    frame : Window
        Padded bounds of the cells drawn.
    width_px, height_px : int
        Size of the plot area in device pixels.
    max_px : int
        Largest picture side allowed.

    Returns
    -------
    tuple or None
        ``(placed_window, picture_width_px, picture_height_px)``, or None when the view misses the frame.
    """
    width_px = max(1, int(width_px))
    height_px = max(1, int(height_px))
    shown = fit_aspect(window, width_px, height_px)
    x0, x1 = max(shown.x0, frame.x0), min(shown.x1, frame.x1)
    y0, y1 = max(shown.y0, frame.y0), min(shown.y1, frame.y1)
    if x0 >= x1 or y0 >= y1:
        return None
    if fill:
        x0, x1, y0, y1 = shown.x0, shown.x1, shown.y0, shown.y1
    px_per_unit = min(width_px / shown.width, height_px / shown.height)
    w = max(1, round((x1 - x0) * px_per_unit))
    h = max(1, round((y1 - y0) * px_per_unit))
    if max(w, h) > max_px:
        shrink = max_px / max(w, h)
        w, h = max(1, int(w * shrink)), max(1, int(h * shrink))
    return Window(x0, x1, y0, y1), w, h


def units_per_px(window: Window, width_px: float, height_px: float) -> float:
    """Data units (mm for sections) per plot pixel when ``window`` is shown with equal axis scales in a
    ``width_px x height_px`` plot: the larger of the two axes' (Plotly's ``scaleanchor`` grows the other axis)."""
    return max(window.width / max(float(width_px), 1.0), window.height / max(float(height_px), 1.0))


def window_at_scale(x_mm: float, y_mm: float, mm_per_px: float, width_px: float, height_px: float) -> Window:
    """The window centred on ``(x_mm, y_mm)`` that a ``width_px x height_px`` plot shows at ``mm_per_px``."""
    half_w = mm_per_px * max(float(width_px), 1.0) / 2
    half_h = mm_per_px * max(float(height_px), 1.0) / 2
    return Window(x_mm - half_w, x_mm + half_w, y_mm - half_h, y_mm + half_h)


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (> 0)."""
    if not target > 0 or not math.isfinite(target):
        return 1.0
    power = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * power <= target:
            return step * power
    return power


def scale_bar(window: Window, fraction: float = 0.2, length: float | None = None) -> tuple[float, float, str]:
    """A scale bar about ``fraction`` of the window's width: ``(x_start, length, label)`` in mm.

    The bar starts 4 % of the width from the left edge; the label reads ``500 µm`` below 1 mm, else ``2 mm``.
    ``length`` (mm) imposes the bar's length (panels at one scale show the same bar).
    """
    length = float(length) if length and length > 0 else nice_length(window.width * fraction)
    if length < 1:
        label = f"{length * 1000:g} µm"
    else:
        label = f"{length:g} mm"
    return window.x0 + 0.04 * window.width, length, label
