"""Region outlines on the map, in a real headless Chromium on the demo store: on one section they stay where its
cells are (the slab plane's polygons cut to its tissue), each region is named in the key above the plot, and the
scale bar sits in the corner of the window with the fewest cells."""
from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    TIMEOUT, atlas, open_view, shot, store, viewer, wait_for_picture, wait_settled)
from core.viewport import Window
from data_layer.geometry import tissue_cell_mm

pytestmark = pytest.mark.browser

# the outline traces of the map (every trace after the invisible corner points), the names its key shows, and
# the scale bar's line
OUTLINES_JS = """
var gd = document.querySelector('#map-graph .js-plotly-plot');
if (!gd || !gd.data) { return null; }
return {traces: gd.data.slice(1).map(function (t) { return {name: t.name, x: t.x, y: t.y, visible: t.visible}; }),
        key: Array.from(gd.querySelectorAll('.legend .traces .legendtext')).map(function (e) { return e.textContent; }),
        bar: gd.layout.shapes && gd.layout.shapes[0], x: gd._fullLayout.xaxis.range, y: gd._fullLayout.yaxis.range};
"""


def _outlined_section(atlas):
    """(dataset, section) of a section whose slab plane has region polygons reaching beyond its cells."""
    for dataset in atlas.datasets():
        if atlas.info(dataset).kind != "spatial":
            continue
        planes = atlas.slab_planes(dataset)
        for plane in planes.loc[planes["has_polygons"], "slab_plane_label"]:
            sections = atlas.sections(dataset)
            for section in sections.loc[sections["slab_plane_label"] == plane, "brain_section_label"]:
                x, _ = atlas.xy(dataset, section=section)
                xs = [p[0] for f in atlas.polygons(dataset, plane)["features"]
                      for p in _points(f["geometry"])]
                if xs and (min(xs) < float(np.min(x)) or max(xs) > float(np.max(x))):
                    return dataset, str(section)
    pytest.skip("no section of the demo store lies inside part of its plane's polygons")


def _points(geometry):
    kind, coords = geometry["type"], geometry["coordinates"]
    rings = coords if kind == "Polygon" else [ring for polygon in coords for ring in polygon]
    return [point for ring in rings for point in ring]


@pytest.mark.parametrize("size", [(1400, 1000), (1366, 768)])
def test_a_sections_outlines_stay_within_its_cells_and_are_named_in_the_key(viewer, atlas, size):
    viewer.driver.set_window_size(*size)
    dataset, section = _outlined_section(atlas)
    open_view(viewer, "?" + urlencode({"dataset": dataset, "section": section, "color_by": "Class"}))
    wait_for_picture(viewer, f"section={section}")
    wait_settled(viewer)
    seen = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: (lambda v: v if v and v["traces"] and v["key"] else False)(d.execute_script(OUTLINES_JS)))
    x, y = (np.asarray(v, dtype=np.float64) for v in atlas.xy(dataset, section=section))
    side = tissue_cell_mm(x, y)  # the tissue's edge lies at most one grid square outside the outermost cells
    for trace in seen["traces"]:
        xs = np.array([v for v in trace["x"] if v is not None], dtype=np.float64)
        ys = np.array([v for v in trace["y"] if v is not None], dtype=np.float64)
        assert xs.size and xs.min() >= x.min() - side and xs.max() <= x.max() + side, trace["name"]
        assert ys.min() >= y.min() - side and ys.max() <= y.max() + side, trace["name"]
    assert sorted(seen["key"]) == sorted(t["name"] for t in seen["traces"])
    # the scale bar's corner box (the bar's width and a margin, a tenth of the height) of what the plot shows
    # holds no more cells than any other corner's: it is off the tissue where the plot has room
    bar = seen["bar"]
    frame = Window(min(seen["x"]), max(seen["x"]), min(seen["y"]), max(seen["y"]))
    share = (bar["x1"] - bar["x0"]) / frame.width + 0.1
    box_w, box_h = share * frame.width, 0.1 * frame.height
    boxes = {("left", "lower"): (frame.x0, frame.y1 - box_h), ("right", "lower"): (frame.x1 - box_w, frame.y1 - box_h),
             ("left", "upper"): (frame.x0, frame.y0), ("right", "upper"): (frame.x1 - box_w, frame.y0)}
    counts = {k: int(((x >= bx) & (x <= bx + box_w) & (y >= by) & (y <= by + box_h)).sum())
              for k, (bx, by) in boxes.items()}
    mid = (frame.x0 + frame.x1) / 2
    corner = ("left" if (bar["x0"] + bar["x1"]) / 2 < mid else "right", "lower" if bar["y0"] < 0.5 else "upper")
    assert counts[corner] <= min(counts.values()) + max(1, x.size // 500), (corner, counts)
    shot(viewer, f"60_outlines_section_{size[0]}x{size[1]}")
    viewer.find_element("#polygons input").click()  # unticked: outlines and key go
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: all(t["visible"] is False for t in d.execute_script(OUTLINES_JS)["traces"]))
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(OUTLINES_JS)["key"] == [])
