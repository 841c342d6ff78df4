"""Exporting the species side by side in a real headless Chromium (dash_duo) on the demo store: the map card is
switched to "Species", the Export panel offers (and picks) "Species side by side", its preview names the species
and the common scale, and "Download figure" saves ONE PNG of the asked size holding the three maps; no console
errors.

Screenshots go to ``/tmp/shots/`` (``export_compare_*.png``); the downloaded figure is copied there too: look at
them, a blank panel is a bug.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    SHOTS, TIMEOUT, atlas, choose_view, open_view, shot, store, viewer, wait_for_picture)

pytestmark = pytest.mark.browser


def set_number(duo, selector, value):
    element = duo.find_element(selector)
    element.clear()
    element.send_keys(str(value) + "\n")  # debounced inputs commit on Enter


def wait_for_file(folder: Path, suffix: str) -> Path:
    """The first finished download in ``folder`` ending with ``suffix``."""
    def done(_):
        files = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        return files[0] if files and files[0].stat().st_size > 0 else False
    return WebDriverWait(None, TIMEOUT, poll_frequency=0.1).until(done)


def test_export_panel_downloads_the_species_side_by_side_as_one_figure(viewer, atlas):
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    open_view(viewer, f"?dataset={quote(spatial[0])}&color_by=Subclass&term=STR+D1+MSN&term_level=Subclass")
    wait_for_picture(viewer, "term=STR+D1+MSN")
    choose_view(viewer, "Species")
    for slot, dataset in enumerate(spatial[:3]):
        wait_for_picture(viewer, f"dataset={quote(dataset)}", "term=STR+D1+MSN", graph=f"compare-graph-{slot}")

    viewer.find_element("#export-open").click()
    viewer.wait_for_element("#export-panel:not([hidden])", timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(  # the map card's view is the figure's target
        lambda d: d.find_element("css selector", "#export-target input[value='species']").is_selected())
    set_number(viewer, "#export-width", 1200)
    set_number(viewer, "#export-height", 800)
    set_number(viewer, "#export-dpi", 150)
    viewer.wait_for_contains_text("#export-figure-info", "1,200 × 800 px", timeout=TIMEOUT)
    info = viewer.find_element("#export-figure-info").text
    assert info.startswith("Species side by side")
    assert all(atlas.info(d).species in info for d in spatial[:3]) and "one scale" in info
    assert "panels=species" in viewer.find_element("#export-api-url").get_attribute("textContent")
    shot(viewer, "export_compare_panel")

    viewer.find_element("#export-figure").click()
    viewer.wait_for_contains_text("#export-figure-info", "Downloaded species-side-by-side_", timeout=TIMEOUT)
    path = wait_for_file(Path(viewer.download_path), ".png")
    assert path.name.startswith("species-side-by-side_")
    shutil.copy(path, SHOTS / "export_compare_figure.png")
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.size == (1200, 800)
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)
    pixels = np.asarray(image.convert("RGB")).astype(int)
    # three maps side by side: cells drawn in the left, middle and right thirds of the figure's picture area
    drawn = np.any(pixels < 235, axis=2)[100:, :]
    thirds = np.array_split(drawn, 3, axis=1)
    assert all(part.mean() > 0.02 for part in thirds)
