"""Export and sharing in a real headless Chromium (dash_duo) on the demo store: the Export panel downloads a figure
file at the asked size, the cell links serve CSV, "Copy link" shows a short link that opens the same view; no
console errors.

Screenshots go to ``/tmp/shots/`` (``export_*.png``).
"""
from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image
from selenium.webdriver.support.ui import WebDriverWait

from app import create_app
from settings import Settings

SHOTS = Path("/tmp/shots")
TIMEOUT = 40

pytestmark = pytest.mark.browser

PICTURE_SOURCE_JS = """
var gd = document.querySelector('#map-graph .js-plotly-plot');
return gd && gd.layout && gd.layout.images && gd.layout.images.length ? gd.layout.images[0].source : null;
"""


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture()
def viewer(dash_duo, atlas, tmp_path):
    """dash_duo serving the viewer on the demo atlas; links are kept under a fresh store folder of this test."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    store = tmp_path / "store"
    store.mkdir()
    app = create_app(Settings(store=store, export_burst=50), atlas=atlas)
    dash_duo.start_server(app)
    yield dash_duo
    assert dash_duo.get_logs() == []


def open_viewer(duo, query=""):
    duo.driver.get(duo.server_url + "/" + query)
    duo.wait_for_element("#map-graph .js-plotly-plot", timeout=TIMEOUT)
    WebDriverWait(duo.driver, TIMEOUT, poll_frequency=0.1).until(
        lambda driver: driver.execute_script(PICTURE_SOURCE_JS))


def set_number(duo, selector, value):
    element = duo.find_element(selector)
    element.clear()
    element.send_keys(str(value) + "\n")  # debounced inputs commit on Enter


def wait_for_file(folder: Path, suffix: str, timeout: float = TIMEOUT) -> Path:
    """The first finished download in ``folder`` ending with ``suffix``."""
    def done(_):
        files = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        return files[0] if files and files[0].stat().st_size > 0 else False
    return WebDriverWait(None, timeout, poll_frequency=0.1).until(done)


def test_export_panel_downloads_a_png_figure_at_the_asked_size(viewer):
    open_viewer(viewer)
    viewer.find_element("#export-open").click()
    viewer.wait_for_element("#export-panel:not([hidden])", timeout=TIMEOUT)
    set_number(viewer, "#export-width", 1200)
    set_number(viewer, "#export-height", 900)
    set_number(viewer, "#export-dpi", 150)
    viewer.wait_for_contains_text("#export-figure-info", "1,200 × 900 px", timeout=TIMEOUT)
    viewer.wait_for_contains_text("#export-figure-info", "150 dpi", timeout=TIMEOUT)
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.driver.save_screenshot(str(SHOTS / "export_panel.png"))
    viewer.find_element("#export-figure").click()
    viewer.wait_for_contains_text("#export-figure-info", "Downloaded", timeout=TIMEOUT)
    path = wait_for_file(Path(viewer.download_path), ".png")
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.size == (1200, 900)
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)


def test_export_panel_refuses_an_oversized_figure_and_names_the_limit(viewer):
    open_viewer(viewer)
    viewer.find_element("#export-open").click()
    viewer.wait_for_element("#export-panel:not([hidden])", timeout=TIMEOUT)
    set_number(viewer, "#export-width", 90000)
    viewer.wait_for_contains_text("#export-figure-info", "max_export_px", timeout=TIMEOUT)
    assert viewer.find_element("#export-figure").get_attribute("disabled") is not None


def test_cell_links_serve_the_cells_of_the_view_as_csv(viewer, atlas):
    open_viewer(viewer)
    viewer.find_element("#export-open").click()
    viewer.wait_for_contains_text("#export-cells-info", "cells in this view", timeout=TIMEOUT)
    href = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#export-cells-csv").get_attribute("href"))
    response = requests.get(href, timeout=TIMEOUT)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    header, *rows = response.text.strip().split("\n")
    assert header.startswith("cell_label,x,y,")
    shown = viewer.find_element("#export-cells-info").text
    assert f"{len(rows):,} cells" in shown


def test_copy_link_shows_a_short_link_that_opens_the_same_view(viewer, atlas):
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = atlas.sections(dataset)["brain_section_label"].iloc[-1]
    level = atlas.taxonomy(dataset).levels[1]
    open_viewer(viewer, f"?dataset={dataset}&section={section}&color_by={level}")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: f"section={section}" in d.current_url)
    long_url = viewer.driver.current_url
    viewer.find_element("#share-button").click()
    viewer.wait_for_element("#share-box:not([hidden])", timeout=TIMEOUT)
    link = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#share-url").get_attribute("value"))
    assert urlsplit(link).path.startswith("/s/") and len(urlsplit(link).path) == len("/s/") + 10
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#share-status").text not in ("", "Copying…"))
    viewer.driver.save_screenshot(str(SHOTS / "export_share.png"))
    viewer.driver.get(link)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "/s/" not in d.current_url)
    viewer.wait_for_element("#map-graph .js-plotly-plot", timeout=TIMEOUT)
    assert parse_qs(urlsplit(viewer.driver.current_url).query) == parse_qs(urlsplit(long_url).query)
    viewer.wait_for_contains_text("#map-title", section, timeout=TIMEOUT)
    viewer.wait_for_contains_text("#map-title", f"coloured by {level}", timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(  # the opened view draws the linked section's picture
        lambda d: f"section={section}" in (d.execute_script(PICTURE_SOURCE_JS) or ""))
