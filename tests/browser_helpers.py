"""What the viewer's browser tests share: the demo store and Atlas fixtures, a dash_duo viewer that fails on any
console error, and the moves of a hand on the page (open, wait for a picture, choose an option, drag a lasso).

Test modules import the fixtures by name (``from browser_helpers import atlas, store, viewer``) and the helpers
they use. Screenshots go to ``/tmp/shots/``: look at them, a blank panel is a bug.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SHOTS = Path("/tmp/shots")
TIMEOUT = 30

# JavaScript reading a picture: its URL in the figure, the URL the <image> element shows, whether the browser
# has received that picture (resource timing), the x range on screen and the plot's width in device pixels
PICTURE_JS = """
var gd = document.querySelector('#%s .js-plotly-plot');
if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) { return null; }
var img = gd.querySelector('image');
var shown = img ? (img.getAttribute('href') || '') : '';
var loaded = shown ? performance.getEntriesByName(new URL(shown, window.location.href).href)
    .some(function (e) { return e.responseEnd > 0; }) : false;
return {source: gd.layout.images[0].source, shown: shown, loaded: loaded, xrange: gd._fullLayout.xaxis.range,
        plot_px: gd._fullLayout._size.w * Math.min(window.devicePixelRatio || 1, 2)};
"""

# trace types on the page's graphs that the loaded plotly.js does not know
UNKNOWN_TRACES_JS = """
if (!window.Plotly) { return []; }
var known = Object.keys(window.Plotly.PlotSchema.get().traces);
var unknown = [];
document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
  (gd.data || []).forEach(function (trace) {
    var type = trace.type || 'scatter';
    if (known.indexOf(type) < 0 && unknown.indexOf(type) < 0) { unknown.push(type); }
  });
});
return unknown;
"""

# page coordinates (CSS px, viewport) of data points of a graph's plot area
TO_PAGE_JS = """
var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
var L = gd._fullLayout, box = gd.getBoundingClientRect();
return arguments[1].map(function (p) {
  return [box.left + L._size.l + L.xaxis.l2p(p[0]), box.top + L._size.t + L.yaxis.l2p(p[1])];
});
"""


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def store(request):
    """The prepared demo store (``demo_store`` of conftest)."""
    return request.getfixturevalue("demo_store")


@pytest.fixture(scope="module")
def atlas(store):
    from server.features import warm_up_compiled_code
    from data_layer import Atlas

    # as gunicorn's master does before forking: compile the rendering code once, so timings are steady-state
    warm_up_compiled_code()
    return Atlas.open(store)


@pytest.fixture()
def viewer(dash_duo, store, atlas):
    """dash_duo serving the viewer on the store; fails the test on any browser console error, and on a graph
    holding a trace type the page's partial plotly.js bundle does not have (Plotly would drop it silently)."""
    from app import create_app
    from settings import Settings

    SHOTS.mkdir(parents=True, exist_ok=True)
    app = create_app(Settings(store=Path(store)), atlas=atlas)
    dash_duo.start_server(app)
    yield dash_duo
    assert dash_duo.get_logs() == []
    assert dash_duo.driver.execute_script(UNKNOWN_TRACES_JS) == []


# ---------------------------------------------------------------------------------------------- reading the page
def picture(duo, graph="map-graph"):
    """The picture of ``graph`` (see :data:`PICTURE_JS`), or None before its first figure."""
    return duo.driver.execute_script(PICTURE_JS % graph)


def wait_for_picture(duo, *fragments, graph="map-graph", absent=(), shown=True, timeout=TIMEOUT):
    """Wait until the picture's URL holds every fragment (and none of ``absent``) and (``shown``) the browser has
    drawn it; returns :func:`picture`."""
    last = {}

    def ready(driver):
        info = last["info"] = driver.execute_script(PICTURE_JS % graph)
        if not info or not all(f in info["source"] for f in fragments) or any(a in info["source"] for a in absent):
            return False
        if shown and not (info["shown"] == info["source"] and info["loaded"]):
            return False
        return info
    try:
        return WebDriverWait(duo.driver, timeout, poll_frequency=0.05).until(ready)
    except TimeoutException as exc:  # say what the page showed instead, and what it was still doing
        busy = duo.driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-dash-is-loading=\"true\"]')).map("
            "function (e) { return e.id || e.className; });")
        dragging = duo.driver.execute_script(
            "var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
            "return gd ? !!gd._dragging : null;", graph)
        raise TimeoutException(f"{graph} never showed a picture with {fragments} (without {absent}); last seen "
                               f"{last.get('info')}; loading {busy}; dragging {dragging}") from exc


def wait_settled(duo):
    """Wait until no Dash callback is in flight (the page's first figures have all arrived)."""
    WebDriverWait(duo.driver, TIMEOUT).until(
        lambda d: d.execute_script("return document.querySelectorAll('[data-dash-is-loading=\"true\"]').length")
        == 0)


def outlines(duo, graph):
    """Selection outlines Plotly draws on a graph."""
    return duo.driver.execute_script(
        "var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "return (gd._fullLayout.selections || []).length;", graph)


def shot(duo, name):
    duo.driver.save_screenshot(str(SHOTS / f"{name}.png"))


def first_spatial(atlas):
    return next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")


# ---------------------------------------------------------------------------------------------- acting on it
def open_view(duo, query=""):
    duo.driver.get(duo.server_url + "/" + query)
    duo.wait_for_element("#map-graph .js-plotly-plot", timeout=TIMEOUT)


def choose_option(duo, dropdown_id, text):
    """Open a Dash 4 dropdown and click the option whose text starts with ``text``."""
    duo.find_element(f"#{dropdown_id}").click()

    def click_option(driver):
        try:
            for element in driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-options .dash-dropdown-option"):
                if element.text.strip().startswith(text):
                    element.click()
                    return True
        except StaleElementReferenceException:  # options re-rendered under us: look again
            return False
        return False
    WebDriverWait(duo.driver, TIMEOUT, poll_frequency=0.05).until(click_option)


def click_element(duo, selector):
    """Click the first element matching ``selector``, looking it up again when a re-render replaced it between
    the look-up and the click (the tree and legend are drawn again as the first view settles)."""
    def click(driver):
        try:
            elements = driver.find_elements(By.CSS_SELECTOR, selector)
            if not elements:
                return False
            elements[0].click()
            return True
        except StaleElementReferenceException:
            return False
    WebDriverWait(duo.driver, TIMEOUT, poll_frequency=0.05).until(click)


def choose_view(duo, label):
    """Click the map's view mode ``label`` (single, side by side, gallery)."""
    for element in duo.driver.find_elements(By.CSS_SELECTOR, "#map-view-mode label"):
        if element.text.strip() == label:
            element.click()
            return
    raise AssertionError(f"no view {label!r}")


def set_dragmode(duo, graph, mode):
    """Click the graph's mode-bar button of ``mode`` (``lasso`` or ``select``)."""
    duo.driver.execute_script(
        "document.querySelector('#' + arguments[0] + ' .modebar-btn[data-val=\"' + arguments[1] + '\"]').click();",
        graph, mode)


def drag_path(duo, graph, points_xy, close=True, release=True):
    """Press, move through ``points_xy`` (data units; back to the first with ``close``) and release on a graph, as
    a hand does with the mouse. Without ``release`` the button stays down: :func:`release_at` ends the drag.
    Returns the page coordinates of the points."""
    page = duo.driver.execute_script(TO_PAGE_JS, graph, [list(map(float, p)) for p in points_xy])
    builder = ActionBuilder(duo.driver, duration=10)
    pointer = builder.pointer_action
    pointer.move_to_location(int(page[0][0]), int(page[0][1]))
    pointer.pointer_down()
    for x, y in page[1:] + (page[:1] if close else []):
        pointer.move_to_location(int(x), int(y))
    if release:
        pointer.pointer_up()
    builder.perform()
    return page


def click_at(duo, graph, x, y):
    """Click the point ``(x, y)`` (data units) of a graph's plot area, as a hand does; returns its page
    coordinates."""
    (page,) = duo.driver.execute_script(TO_PAGE_JS, graph, [[float(x), float(y)]])
    builder = ActionBuilder(duo.driver, duration=10)
    builder.pointer_action.move_to_location(int(page[0]), int(page[1]))
    builder.pointer_action.click()
    builder.perform()
    return page


def release_at(duo, point):
    """Release the mouse button at page ``point`` (the end of a :func:`drag_path` with ``release=False``)."""
    builder = ActionBuilder(duo.driver, duration=10)
    builder.pointer_action.move_to_location(int(point[0]), int(point[1]))
    builder.pointer_action.pointer_up()
    builder.perform()


def hexagon(cx, cy, r):
    """Six corners around ``(cx, cy)`` (data units), a little taller than wide."""
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    return [(cx + r * np.cos(a), cy + r * np.sin(a) * 1.2) for a in angles]
