"""Plotly figures for the map and the UMAP: a datashader picture as a layout image over invisible corner points.

The picture is a layout image (``xref="x"``, ``yref="y"``, ``sizing="stretch"``) served by the render route; an
invisible scatter at the data corners gives Plotly its axes, zoom and selection; ``hoveranywhere`` and
``clickanywhere`` make hover and click report the cursor position anywhere in the plot, so the nearest cell is
looked up on the server (no per-cell markers, no pixel heatmap). Zoom and pan only swap the picture through a
:class:`dash.Patch` (:func:`view_patch`), with a constant ``uirevision`` so the user's zoom survives updates.

Every builder returns a plain ``dict`` figure (fast to build, no validation of thousands of polygon points).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from dash import Patch

from core.viewport import Window, scale_bar

#: Colour of axis lines, ticks and the scale bar.
INK = "#3c4149"
GRID = "#e9ecf1"
FONT = "Inter, 'Segoe UI', system-ui, -apple-system, sans-serif"
#: Index of the scale-bar shape and annotation; polygon outlines are traces after the corner trace.
SCALE_BAR_SHAPE = 0
SCALE_BAR_LABEL = 0


def image_placement(window: Window, *, y_down: bool) -> dict[str, Any]:
    """Layout-image placement covering exactly ``window`` (without ``source``).

    ``y`` is the data value at the picture's top edge: ``y0`` when the y axis is reversed (sections, as the atlas
    draws them), else ``y1`` (UMAP); Plotly draws a ``yanchor="top"`` image downward from there.
    """
    return {
        "xref": "x",
        "yref": "y",
        "x": window.x0,
        "y": window.y0 if y_down else window.y1,
        "sizex": window.width,
        "sizey": window.height,
        "xanchor": "left",
        "yanchor": "top",
        "sizing": "stretch",
        "layer": "below",
    }


def layout_image(source: str, window: Window, *, y_down: bool) -> dict[str, Any]:
    """A complete layout image: ``source`` URL placed over ``window``."""
    return {"source": source, **image_placement(window, y_down=y_down)}


def layout_image_of(picture: tuple[str, Window] | None, *, y_down: bool) -> dict[str, Any] | None:
    """The layout image of a picture ``(url, window)`` (``core.context.ViewerContext.picture_url``), None for none."""
    return layout_image(picture[0], picture[1], y_down=y_down) if picture else None


def axis_ranges(window: Window, *, y_down: bool) -> tuple[list[float], list[float]]:
    """``(xaxis.range, yaxis.range)`` showing ``window``; the y range is reversed for sections."""
    y_range = [window.y1, window.y0] if y_down else [window.y0, window.y1]
    return [window.x0, window.x1], y_range


def polygon_traces(collection: Mapping[str, Any] | None, *, visible: bool) -> list[dict[str, Any]]:
    """One line trace per region label from a GeoJSON FeatureCollection (Polygon, MultiPolygon or
    GeometryCollection geometries; every ring drawn, separated by gaps), named by its label in the map's key.

    Returns
    -------
    list of dict
        Scatter traces, ``hoverinfo="skip"`` so the outlines never hide the cells from hover; each is a legend
        entry (its region's name in its outline colour), hidden with it.
    """
    if not collection:
        return []
    by_label: dict[str, dict[str, Any]] = {}
    for feature in collection.get("features", []) or []:
        properties = feature.get("properties") or {}
        label = str(properties.get("label", "region"))
        color = properties.get("color") or INK
        rings = list(_rings(feature.get("geometry") or {}))
        if not rings:
            continue
        trace = by_label.setdefault(label, {"x": [], "y": [], "color": color})
        for ring in rings:
            for point in ring:
                trace["x"].append(float(point[0]))
                trace["y"].append(float(point[1]))
            trace["x"].append(None)
            trace["y"].append(None)
    return [
        {
            "type": "scatter",
            "mode": "lines",
            "x": trace["x"],
            "y": trace["y"],
            "name": label,
            "line": {"color": trace["color"], "width": 1.6},
            "hoverinfo": "skip",
            "showlegend": True,
            "visible": bool(visible),
        }
        for label, trace in by_label.items()
    ]


def _rings(geometry: Mapping[str, Any]):
    kind = geometry.get("type")
    if kind == "Polygon":
        yield from geometry.get("coordinates") or []
    elif kind == "MultiPolygon":
        for polygon in geometry.get("coordinates") or []:
            yield from polygon
    elif kind == "GeometryCollection":
        for part in geometry.get("geometries") or []:
            yield from _rings(part)
    elif kind in ("LineString",):
        yield geometry.get("coordinates") or []
    elif kind == "MultiLineString":
        yield from geometry.get("coordinates") or []


#: Corners the scale bar may take (``core.scope.scale_bar_corner`` picks the one with the fewest cells).
SCALE_BAR_CORNERS = ("lower right", "lower left", "upper right", "upper left")


def _scale_bar_parts(window: Window, corner: str = "lower left",
                     length: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scale bar (a line in data x, paper y) and its label, in ``corner`` of the plot (4 % in from the side,
    the label on the bar's inner side); ``length`` in mm, None: about a fifth of the window's width."""
    start, length, label = scale_bar(window, length=length)
    if corner.endswith("right"):
        start = window.x1 - 0.04 * window.width - length
    lower = not corner.startswith("upper")
    bar_y = 0.035 if lower else 0.965
    shape = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": start,
        "x1": start + length,
        "y0": bar_y,
        "y1": bar_y,
        "line": {"color": INK, "width": 3},
    }
    annotation = {
        "xref": "x",
        "yref": "paper",
        "x": start + length / 2,
        "y": bar_y + 0.01 if lower else bar_y - 0.01,
        "yanchor": "bottom" if lower else "top",
        "text": label,
        "showarrow": False,
        "font": {"size": 12, "color": INK},
        "bgcolor": "rgba(255,255,255,0.75)",
    }
    return shape, annotation


def picture_figure(
    *,
    frame: Window,
    window: Window,
    image: Mapping[str, Any] | None,
    y_down: bool,
    axis_titles: Sequence[str] = ("x (mm)", "y (mm)"),
    polygons: Mapping[str, Any] | None = None,
    show_polygons: bool = True,
    with_scale_bar: bool = True,
    scale_bar_corner: str = "lower left",
    shown: Window | None = None,
    uirevision: str = "picture",
    bar_length: float | None = None,
) -> dict[str, Any]:
    """The figure of a map or UMAP.

    Parameters
    ----------
    frame : Window
        Extent of the cells drawn (the invisible corner points sit at its corners).
    window : Window
        Data window shown.
    image : dict or None
        Layout image from :func:`layout_image`; None draws the axes only.
    y_down : bool
        Reverse the y axis (sections, atlas orientation).
    axis_titles : (str, str)
        Titles of the x and y axes (units included).
    polygons : dict or None
        GeoJSON FeatureCollection of region outlines in data units (cut to the tissue shown:
        ``core.outlines.view_outlines``); their names make a one-line key above the plot.
    show_polygons : bool
        Whether the outlines (and their key) start visible.
    with_scale_bar : bool
        Draw a scale bar (sections, in mm).
    scale_bar_corner : str
        Corner of the plot it goes in (one of :data:`SCALE_BAR_CORNERS`; ``core.scope.scale_bar_corner``).
    shown : Window, optional
        What the plot shows (``window`` grown to the plot area's aspect, ``core.viewport.fit_aspect``): the
        scale bar is placed and sized in it; default ``window``.
    uirevision : str
        Constant per panel so the user's zoom survives updates.
    bar_length : float or None
        The scale bar's length in mm (None: about a fifth of the window's width).

    Returns
    -------
    dict
        A Plotly figure.
    """
    x_range, y_range = axis_ranges(window, y_down=y_down)
    corners = {
        "type": "scatter",
        "mode": "markers",
        "x": [frame.x0, frame.x1, frame.x0, frame.x1],
        "y": [frame.y0, frame.y1, frame.y1, frame.y0],
        "marker": {"opacity": 0, "size": 1},
        "hoverinfo": "none",
        "showlegend": False,
        "name": "cells",
    }
    shapes, annotations = [], []
    if with_scale_bar:
        shape, annotation = _scale_bar_parts(shown or window, scale_bar_corner, bar_length)
        shapes.append(shape)
        annotations.append(annotation)
    axis = {
        "showgrid": False,
        "zeroline": False,
        "showline": True,
        "linecolor": "#c9ced6",
        "mirror": True,
        "ticks": "outside",
        "tickcolor": "#c9ced6",
        "tickfont": {"size": 11, "color": "#6b7280"},
        "title": {"font": {"size": 12, "color": "#6b7280"}, "standoff": 6},
    }
    outlines = polygon_traces(polygons, visible=show_polygons)
    return {
        "data": [corners, *outlines],
        "layout": {
            "xaxis": {**axis, "range": x_range, "title": {**axis["title"], "text": axis_titles[0]}},
            "yaxis": {
                **axis,
                "range": y_range,
                "title": {**axis["title"], "text": axis_titles[1]},
                "scaleanchor": "x",
                "scaleratio": 1,
            },
            "images": [dict(image)] if image else [],
            "shapes": shapes,
            "annotations": annotations,
            "margin": {"l": 56, "r": 12, "t": 30 if outlines else 8, "b": 44},
            # no mode-bar backdrop: it would be a grey patch over a picture with a dark background (two genes)
            "modebar": {"bgcolor": "rgba(0,0,0,0)"},
            # transparent: an opaque plot background would hide a layer="below" image
            "plot_bgcolor": "rgba(0,0,0,0)",
            "paper_bgcolor": "#ffffff",
            "font": {"family": FONT, "color": INK},
            "dragmode": "pan",
            "hovermode": "closest",
            "hoveranywhere": True,
            "clickanywhere": True,
            # the key of the region outlines: one line above the plot, each name in its outline's colour
            "showlegend": bool(outlines),
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1, "yanchor": "bottom",
                       "font": {"size": 11, "color": INK}, "bgcolor": "rgba(255,255,255,0)", "itemwidth": 30,
                       "title": {"text": "Regions", "font": {"size": 11, "color": "#6b7280"}}},
            "uirevision": uirevision,
        },
    }


def message_figure(text: str) -> dict[str, Any]:
    """An empty figure that says why there is no picture (never a blank panel)."""
    hidden = {"visible": False, "range": [0, 1]}
    return {
        "data": [],
        "layout": {
            "xaxis": hidden,
            "yaxis": hidden,
            "annotations": [
                {
                    "text": text,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                    "showarrow": False,
                    "font": {"size": 14, "color": "#6b7280"},
                }
            ],
            "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
            "plot_bgcolor": "#ffffff",
            "paper_bgcolor": "#ffffff",
            "font": {"family": FONT},
        },
    }


def view_patch(
    window: Window, image: Mapping[str, Any] | None, *, y_down: bool, with_scale_bar: bool = True,
    set_ranges: bool = True, scale_bar_corner: str = "lower left", shown: Window | None = None,
    bar_length: float | None = None,
) -> Patch:
    """A :class:`dash.Patch` moving the figure to ``window`` with a new picture; nothing else is resent.

    Parameters
    ----------
    window : Window
        The data window now shown.
    image : dict or None
        The new layout image (None removes it).
    y_down : bool
        Whether the y axis is reversed.
    with_scale_bar : bool
        Update the scale bar to the new window.
    scale_bar_corner : str
        Corner of the plot the scale bar goes in.
    shown : Window, optional
        What the plot shows (``window`` grown to its aspect), where the scale bar is placed; default ``window``.
    set_ranges : bool
        Also write the axis ranges (when the app, not the user, moved the view).
    bar_length : float or None
        The scale bar's length in mm (None: about a fifth of the window's width).
    """
    patch = Patch()
    patch["layout"]["images"] = [dict(image)] if image else []
    if set_ranges:
        x_range, y_range = axis_ranges(window, y_down=y_down)
        patch["layout"]["xaxis"]["range"] = x_range
        patch["layout"]["yaxis"]["range"] = y_range
    if with_scale_bar:
        shape, annotation = _scale_bar_parts(shown or window, scale_bar_corner, bar_length)
        patch["layout"]["shapes"][SCALE_BAR_SHAPE] = shape
        patch["layout"]["annotations"][SCALE_BAR_LABEL] = annotation
    return patch


def polygons_visibility_patch(n_traces: int, visible: bool) -> Patch:
    """A :class:`dash.Patch` showing or hiding the outline traces (every trace after the corner trace)."""
    patch = Patch()
    for index in range(1, n_traces):
        patch["data"][index]["visible"] = bool(visible)
    return patch
