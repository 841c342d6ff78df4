"""A lasso drawn on the map becomes part of the address (``sel_view``, ``sel``): opening that address, or the
short link of the view, in a fresh page shows the same selection (count, composition, highlighted picture, marker
dot plot), and so does the back button after moving to another section; in a real headless Chromium (dash_duo) on
the demo store, with no console errors.

The section is not the dataset's first one, so the page's first section callback (which clears a map selection of
another section) runs with the address's section and selection together.
"""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (TIMEOUT, choose_option, drag_path, first_spatial, hexagon, open_view,
                             set_dragmode, shot, wait_for_picture, wait_settled)
from browser_helpers import atlas, store, viewer  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def address(duo) -> dict:
    return {key: values[-1] for key, values in parse_qs(urlsplit(duo.driver.current_url).query).items()}


def picture_selection(info) -> str | None:
    return parse_qs(urlsplit(info["source"]).query).get("selection", [None])[0]


def summary(duo) -> str:
    return duo.find_element("#selection-summary").text


def wait_for_restored_selection(duo, count_text, sel):
    """The fresh page shows the selection: the same summary, the picture of the selection, bars and dots."""
    duo.wait_for_contains_text("#selection-summary", count_text, timeout=TIMEOUT)
    info = wait_for_picture(duo, "selection=")
    assert picture_selection(info) == sel
    duo.wait_for_element("#composition-graph .barlayer .point", timeout=TIMEOUT)
    duo.wait_for_element("#markers-graph .scatterlayer .point", timeout=TIMEOUT)


def test_a_lasso_in_the_address_and_its_short_link_reopen_the_same_selection(viewer, atlas):
    dataset = first_spatial(atlas)
    other, section = atlas.sections(dataset)["brain_section_label"].astype(str).iloc[:2]
    cells = atlas.cells(dataset, section=section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    open_view(viewer, f"?dataset={quote(dataset)}&section={quote(section)}")
    wait_for_picture(viewer, f"section={quote(section)}")
    wait_settled(viewer)  # a late first figure replaces the axes the lasso is drawn in
    set_dragmode(viewer, "map-graph", "lasso")
    drag_path(viewer, "map-graph", hexagon(cx, cy, 1.5))
    viewer.wait_for_contains_text("#selection-summary", "cells selected", timeout=TIMEOUT)
    drawn_picture = wait_for_picture(viewer, "selection=")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "sel=" in d.current_url)
    wait_settled(viewer)
    drawn = address(viewer)
    assert drawn["sel_view"] == "map" and drawn["section"] == section
    assert drawn["sel"] == picture_selection(drawn_picture)  # one encoding: the address and the picture's
    count_text = summary(viewer).split(" (")[0]  # "N cells selected in section S"
    assert count_text.endswith(f"cells selected in section {section}")
    url = viewer.driver.current_url
    shot(viewer, "40_selection_drawn")

    # the address in a fresh page
    viewer.driver.get("about:blank")
    viewer.driver.get(url)
    wait_for_restored_selection(viewer, count_text, drawn["sel"])
    wait_settled(viewer)
    assert address(viewer) == drawn  # nothing cleared or rewrote the address while the page loaded
    shot(viewer, "41_selection_from_address")

    # its short link in a fresh page
    viewer.find_element("#share-button").click()
    link = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#share-url").get_attribute("value"))
    assert urlsplit(link).path.startswith("/s/")
    viewer.driver.get("about:blank")
    viewer.driver.get(link)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "/s/" not in d.current_url)
    wait_for_restored_selection(viewer, count_text, drawn["sel"])
    assert address(viewer)["sel"] == drawn["sel"]

    # another section drops the selection; back returns to the section and its selection
    choose_option(viewer, "section", other)
    wait_for_picture(viewer, f"section={quote(other)}", absent=("selection=",))
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "sel=" not in d.current_url)
    viewer.wait_for_contains_text("#selection-summary", "Draw a box or lasso", timeout=TIMEOUT)
    viewer.driver.back()
    wait_for_restored_selection(viewer, count_text, drawn["sel"])
    wait_settled(viewer)
    assert address(viewer) == drawn

    # clearing takes the selection out of the address
    viewer.find_element("#selection-clear").click()
    viewer.wait_for_contains_text("#selection-summary", "Draw a box or lasso", timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "sel=" not in d.current_url)
    assert address(viewer)["section"] == section
