"""The first view and the map's place, in a real headless Chromium on the demo store: the page opens on the whole
first slab plane coloured by Class (anatomy at a glance, not one narrow section); the map keeps its size and its zoom
when the analysis panel opens under it or closes; a selection's outline is drawn without Plotly's vertex handles."""
from __future__ import annotations

import json
import time
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    TIMEOUT, atlas, drag_path, first_spatial, hexagon, open_view, outlines, set_dragmode, shot, store, viewer,
    wait_for_picture, wait_settled)

pytestmark = pytest.mark.browser

# the map's plot area (CSS px), its axis ranges and its picture
MAP_JS = """
var gd = document.querySelector('#map-graph .js-plotly-plot'), L = gd._fullLayout;
return {w: L._size.w, h: L._size.h, x: L.xaxis.range, y: L.yaxis.range, source: gd.layout.images[0].source};
"""

# the analysis panel's box against the window
PANEL_JS = """
var panel = document.getElementById('analysis-panel'), box = panel.getBoundingClientRect();
return {hidden: panel.hidden, top: box.top, bottom: box.bottom, height: window.innerHeight};
"""


def steady_map(duo, quiet_s=1.0):
    """The map (:data:`MAP_JS`) once it has stopped changing for ``quiet_s`` (late size reports redraw it)."""
    seen = {"value": None, "since": 0.0}

    def steady(driver):
        value, now = driver.execute_script(MAP_JS), time.monotonic()
        if value != seen["value"]:
            seen.update(value=value, since=now)
            return False
        return value if now - seen["since"] >= quiet_s else False
    return WebDriverWait(duo.driver, TIMEOUT, poll_frequency=0.1).until(steady)


def test_the_first_view_is_the_whole_first_slab_plane_by_class(viewer, atlas):
    dataset = first_spatial(atlas)
    plane = atlas.sections(dataset)["slab_plane_label"].iloc[0]
    open_view(viewer)
    info = wait_for_picture(viewer, f"dataset={quote(dataset)}", f"slab_plane={quote(plane)}", "color_by=Class",
                            absent=("section=",))
    viewer.wait_for_contains_text("#map-title", plane, timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(
        "return document.getElementById('legend-title').textContent;").startswith("Class ("))
    n_sections = int((atlas.sections(dataset)["slab_plane_label"] == plane).sum())
    assert n_sections >= 1 and "x0=" in info["source"]
    shot(viewer, "40_first_view")


def test_the_page_says_the_map_is_loading_before_its_first_picture(viewer):
    with urllib.request.urlopen(viewer.server_url + "/_dash-layout", timeout=TIMEOUT) as response:
        layout = json.dumps(json.load(response))
    assert "Loading the map" in layout and "No picture yet" not in layout


def test_the_analysis_panel_keeps_the_map_size_and_zoom(viewer, atlas):
    open_view(viewer)
    wait_for_picture(viewer, "color_by=")
    wait_settled(viewer)
    before = steady_map(viewer)
    viewer.find_element("#analysis-open").click()
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: not d.execute_script(PANEL_JS)["hidden"])
    # the panel is scrolled into view, whole
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: (lambda p: p["top"] >= 0 and p["bottom"] <= p["height"] + 1)(d.execute_script(PANEL_JS)))
    wait_settled(viewer)
    opened = steady_map(viewer)
    shot(viewer, "41_panel_open")
    viewer.find_element("#analysis-open").click()
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(PANEL_JS)["hidden"])
    wait_settled(viewer)
    closed = steady_map(viewer)
    for after in (opened, closed):
        assert abs(after["w"] - before["w"]) <= 1 and abs(after["h"] - before["h"]) <= 1, (before, after)
        assert np.allclose(after["x"], before["x"]) and np.allclose(after["y"], before["y"]), (before, after)
        assert after["source"] == before["source"]  # nothing redrawn: the view did not change


def test_a_lasso_outline_has_no_vertex_handles(viewer, atlas):
    dataset = first_spatial(atlas)
    section = atlas.sections(dataset)["brain_section_label"].iloc[0]
    cells = atlas.cells(dataset, section=section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    open_view(viewer, f"?dataset={quote(dataset)}&section={quote(section)}")
    wait_for_picture(viewer, f"section={quote(section)}")
    wait_settled(viewer)
    set_dragmode(viewer, "map-graph", "lasso")
    drag_path(viewer, "map-graph", hexagon(cx, cy, 1.5))
    wait_for_picture(viewer, "selection=")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: outlines(viewer, "map-graph") == 1)
    handles = viewer.driver.execute_script(
        "return Array.from(document.querySelectorAll('#map-graph .outline-controllers circle'))"
        ".filter(function (c) { return c.getBoundingClientRect().width > 0; }).length;")
    assert handles == 0
    shot(viewer, "42_lasso_outline")


# the first picture's request against the page's first callback request (ms from navigation start)
FIRST_REQUESTS_JS = """
var entries = performance.getEntriesByType('resource');
var picture = entries.filter(function (e) { return e.name.indexOf('/render/map.png') >= 0; })
    .map(function (e) { return e.startTime; });
var callbacks = entries.filter(function (e) { return e.name.indexOf('_dash-update-component') >= 0; })
    .map(function (e) { return e.startTime; });
var preload = document.querySelector('link[rel=preload][as=image]');
return {picture: picture.length ? Math.min.apply(null, picture) : null,
        callback: callbacks.length ? Math.min.apply(null, callbacks) : null,
        preload: preload ? preload.href : null};
"""


def test_the_page_carries_its_first_picture(viewer, atlas):
    # the picture is named in the HTML and in the layout, so the browser asks for it before any callback ran
    section = atlas.sections(first_spatial(atlas))["brain_section_label"].iloc[1]
    dataset = first_spatial(atlas)
    gene = str(atlas.genes(dataset)["gene_symbol"].iloc[0])
    open_view(viewer, f"?dataset={quote(dataset)}&section={quote(section)}&color_by=gene&gene={quote(gene)}")
    info = wait_for_picture(viewer, f"section={quote(section)}", f"gene={quote(gene)}")
    wait_settled(viewer)
    first = viewer.driver.execute_script(FIRST_REQUESTS_JS)
    assert first["preload"] and f"section={quote(section)}" in first["preload"]
    assert first["callback"] is not None and first["picture"] < first["callback"], first
    # the controls show the address's view from the start, and the picture is the one preloaded (no second
    # picture at a size that the first one already had)
    assert viewer.driver.execute_script("return document.getElementById('map-title').textContent;").startswith(
        f"Section {section}")
    assert info["source"] in first["preload"]
    shot(viewer, "43_first_picture_gene")


def test_the_layout_holds_the_addressed_view_and_the_html_preloads_it(viewer, atlas):
    dataset = first_spatial(atlas)
    section = atlas.sections(dataset)["brain_section_label"].iloc[0]
    page = f"{viewer.server_url}/?dataset={quote(dataset)}&section={quote(section)}"
    with urllib.request.urlopen(page, timeout=TIMEOUT) as response:
        html = response.read().decode()
    preload = html.split('<link rel="preload" as="image"', 1)[1].split('href="', 1)[1].split('"', 1)[0]
    assert f"section={quote(section)}" in preload.replace("&amp;", "&")
    request = urllib.request.Request(viewer.server_url + "/_dash-layout", headers={"Referer": page})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        layout = json.dumps(json.load(response))
    assert preload.replace("&amp;", "&") in layout
    with urllib.request.urlopen(viewer.server_url + preload.replace("&amp;", "&"), timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"] == "image/png" and response.read(8) == b"\x89PNG\r\n\x1a\n"
