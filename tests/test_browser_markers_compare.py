"""A versus B in a real headless Chromium (dash_duo) on the demo store: the marker card's Compare pickers set to
Subclass "STR D1 MSN" against "STR D2 MSN" show a dot plot with DRD1 at the A end and PENK at the B end, and a
"Download table (CSV)" link whose table the server serves; no console errors.

The screenshot goes to ``/tmp/shots/45_markers_a_vs_b.png`` (look at it: a blank panel is a bug).
"""
from __future__ import annotations

import io
from urllib.parse import quote, urlsplit

import pandas as pd
import pytest
import requests
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    TIMEOUT, atlas, choose_option, first_spatial, open_view, shot, store, viewer, wait_for_picture)

pytestmark = pytest.mark.browser

D1, D2 = "STR D1 MSN", "STR D2 MSN"
LAYOUT_JS = """
var gd = document.querySelector('#markers-graph .js-plotly-plot');
return gd && gd.layout ? [gd.layout.xaxis.categoryarray, gd.layout.yaxis.categoryarray] : null;
"""


def test_d1_against_d2_msns_puts_drd1_and_penk_at_opposite_ends_and_downloads_the_table(viewer, atlas):
    dataset = first_spatial(atlas)
    open_view(viewer, f"?dataset={quote(dataset)}&color_by=Subclass")
    wait_for_picture(viewer, "color_by=Subclass")
    viewer.find_element("#analysis-open").click()
    viewer.wait_for_element("#markers-a", timeout=TIMEOUT)
    assert not viewer.find_element("#markers-csv").is_displayed()  # no link before both groups are chosen
    choose_option(viewer, "markers-a", D1)
    choose_option(viewer, "markers-b", D2)
    viewer.wait_for_contains_text("#markers-title", f"{D1} vs {D2}", timeout=TIMEOUT)
    viewer.wait_for_element("#markers-graph .scatterlayer .point", timeout=TIMEOUT)
    genes, rows = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: (lambda v: v if v and v[1] == [D1, D2] else None)(d.execute_script(LAYOUT_JS)))
    half = len(genes) // 2
    assert genes[0] == "DRD1" and "PENK" in genes[half:]  # DRD1 at A's end, PENK at B's
    viewer.wait_for_contains_text("#markers-info", "Benjamini-Hochberg", timeout=TIMEOUT)
    shot(viewer, "45_markers_a_vs_b")

    link = viewer.find_element("#markers-csv")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: link.is_displayed())
    href = link.get_attribute("href")
    assert urlsplit(href).path == "/export/markers.csv"
    response = requests.get(href, timeout=TIMEOUT)
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    table = pd.read_csv(io.StringIO(response.text))
    assert list(table.columns) == ["gene", "mean_A", "mean_B", "frac_A", "frac_B", "mean_diff", "t", "p", "p_adj"]
    assert table["gene"].iloc[0] == "DRD1" and table.set_index("gene").loc["PENK", "mean_diff"] < 0
    assert list(table["gene"][:half]) == genes[:half]  # the dot plot's A end is the table's top
