"""The species side by side at one physical scale, in a real headless Chromium (dash_duo) on the demo store: the
three maps show the same mm per screen pixel (read from each graph's drawn axes) and the same scale bar, each
picture at the screen's resolution; with "Zoom together" (ticked by default) zooming one map zooms the others to
the same scale; unticked (``zoom_together=0`` in the address), the others stay. No console errors.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import TIMEOUT, choose_view, open_view, picture, shot, wait_for_picture, wait_settled
from browser_helpers import atlas, store, viewer  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

SLOTS = (0, 1, 2)

# mm per CSS pixel along each axis as Plotly draws it, the scale bar's label and the picture's pixels per mm
# over the plot's device pixels per mm
SCALE_JS = """
var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
var L = gd && gd._fullLayout;
if (!L || !L.xaxis || !L._size || !gd.layout.images || !gd.layout.images.length) { return null; }
var xr = L.xaxis.range, yr = L.yaxis.range;
var q = new URLSearchParams(String(gd.layout.images[0].source).split('?')[1] || '');
var ratio = Math.min(window.devicePixelRatio || 1, 2);
var density = parseInt(q.get('w'), 10) / (parseFloat(q.get('x1')) - parseFloat(q.get('x0')));
var bar = (gd.layout.annotations || []).map(function (a) { return a.text; });
return {x: Math.abs(xr[1] - xr[0]) / L._size.w, y: Math.abs(yr[1] - yr[0]) / L._size.h, bar: bar[0],
        density: density * Math.abs(xr[1] - xr[0]) / (L._size.w * ratio)};
"""


def scale(duo, slot):
    return duo.driver.execute_script(SCALE_JS, f"compare-graph-{slot}")


def open_side_by_side(duo, atlas):
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    open_view(duo, f"?dataset={quote(spatial[0])}&color_by=Subclass")
    wait_for_picture(duo, "color_by=Subclass")
    choose_view(duo, "Species")
    for slot, dataset in zip(SLOTS, spatial):
        wait_for_picture(duo, f"dataset={quote(dataset)}", graph=f"compare-graph-{slot}")
    wait_settled(duo)
    return spatial


LAST = {}


def equal_scales(duo, slots=SLOTS, tol=0.01):
    """Every slot's scale when they are all the same mm per pixel (and each picture matches its screen), else
    False."""
    scales = LAST["scales"] = [scale(duo, s) for s in slots]
    if not all(scales):
        return False
    xs = [s["x"] for s in scales]
    if max(xs) > min(xs) * (1 + tol):
        return False
    if any(abs(s["density"] - 1) > 0.04 for s in scales):
        return False
    return scales


def zoom_store(duo):
    """The shared zoom of the side-by-side maps, as the page's Dash store holds it."""
    return duo.driver.execute_script(
        "var s = window.store.getState(), path = s.paths.strs['compare-zoom'], o = s.layout;"
        "for (var i = 0; i < path.length; i++) { o = o[path[i]]; }"
        "return JSON.stringify(o.props.data);")


def record_relayouts(duo):
    """Record every map's relayout events from now on (read by :func:`relayouts`)."""
    duo.driver.execute_script(
        "window.__relayouts = [];"
        "[0, 1, 2].forEach(function (slot) {"
        "  var gd = document.querySelector('#compare-graph-' + slot + ' .js-plotly-plot');"
        "  if (gd) { gd.on('plotly_relayout', function (e) {"
        "    window.__relayouts.push([slot, Math.round(performance.now()), JSON.stringify(e)]); }); }"
        "});")


def relayouts(duo):
    return duo.driver.execute_script("return window.__relayouts;")


def zoom(duo, slot, factor):
    """Zoom map ``slot`` by ``factor`` about its centre the way Plotly's own zoom does (Plotly.relayout)."""
    duo.driver.execute_script(
        "var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "var L = gd._fullLayout, f = arguments[1], xr = L.xaxis.range, yr = L.yaxis.range;"
        "var cx = (xr[0] + xr[1]) / 2, cy = (yr[0] + yr[1]) / 2, hx = (xr[1] - xr[0]) / 2 / f,"
        " hy = (yr[1] - yr[0]) / 2 / f;"
        "window.Plotly.relayout(gd, {'xaxis.range[0]': cx - hx, 'xaxis.range[1]': cx + hx,"
        " 'yaxis.range[0]': cy - hy, 'yaxis.range[1]': cy + hy});", f"compare-graph-{slot}", factor)


@pytest.mark.parametrize("size", [(1400, 1000), (1366, 768)], ids=["1400x1000", "1366x768"])
def test_the_species_maps_share_one_scale_and_zoom_together(viewer, atlas, size):
    viewer.driver.set_window_size(*size)
    open_side_by_side(viewer, atlas)
    assert viewer.find_element("#compare-together input").is_selected()  # on by default
    try:
        fitted = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: equal_scales(viewer))
    except TimeoutException as exc:
        raise TimeoutException(f"the maps never reached one scale: last seen {LAST}") from exc
    assert max(s["y"] for s in fitted) < min(s["y"] for s in fitted) * 1.01
    assert len({s["bar"] for s in fitted}) == 1
    shot(viewer, f"40_species_one_scale_{size[0]}x{size[1]}")
    # zooming one map brings the others to its scale
    record_relayouts(viewer)
    zoom(viewer, 1, 3.0)
    try:
        zoomed = WebDriverWait(viewer.driver, TIMEOUT).until(
            lambda d: (lambda s: s if s and s[0]["x"] < fitted[0]["x"] / 2.5 else False)(equal_scales(viewer)))
    except TimeoutException as exc:
        raise TimeoutException(f"the maps never reached the zoomed map's scale: fitted {fitted}, last seen {LAST}, "
                               f"shared zoom {zoom_store(viewer)}, relayout events {relayouts(viewer)}") from exc
    assert zoomed[0]["x"] == pytest.approx(fitted[0]["x"] / 3, rel=0.02)
    assert len({s["bar"] for s in zoomed}) == 1
    wait_settled(viewer)
    for slot in SLOTS:
        wait_for_picture(viewer, graph=f"compare-graph-{slot}")
    shot(viewer, f"41_species_zoom_together_{size[0]}x{size[1]}")


def test_unticked_zooming_one_map_leaves_the_others_where_they_are(viewer, atlas):
    viewer.driver.set_window_size(1400, 1000)
    open_side_by_side(viewer, atlas)
    fitted = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: equal_scales(viewer))
    viewer.find_element("#compare-together input").click()
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "zoom_together=0" in d.current_url)
    wait_settled(viewer)
    others = [picture(viewer, f"compare-graph-{slot}")["source"] for slot in (1, 2)]
    zoom(viewer, 0, 4.0)
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: (lambda s: s and s["x"] < fitted[0]["x"] / 3 and abs(s["density"] - 1) < 0.04)(scale(viewer, 0)))
    wait_settled(viewer)
    assert [picture(viewer, f"compare-graph-{slot}")["source"] for slot in (1, 2)] == others
    assert equal_scales(viewer, (1, 2))
    shot(viewer, "42_species_zoom_alone")


def notice_text(duo):
    return duo.driver.execute_script(
        "var n = document.getElementById('compare-notice'); return n && n.offsetParent !== null ? n.textContent : '';")


def test_the_side_by_side_of_a_single_cell_dataset_says_why_it_is_not_there(viewer, atlas):
    viewer.driver.set_window_size(1400, 1000)
    single = "WMB-10X"
    assert atlas.info(single).kind != "spatial"
    open_view(viewer, f"?dataset={single}")
    wait_for_picture(viewer, f"dataset={single}")
    choose_view(viewer, "Species")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "does not apply to WMB-10X" in notice_text(viewer))
    text = notice_text(viewer)
    assert "single-cell" in text and "without sections" in text and "no Mouse sections" in text
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    assert all(dataset in text for dataset in spatial)  # it names the maps it shows instead
    wait_settled(viewer)
    shot(viewer, "43_species_notice_single_cell")
    # a dataset of sections is among the maps: no notice
    open_side_by_side(viewer, atlas)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: notice_text(viewer) == "")
