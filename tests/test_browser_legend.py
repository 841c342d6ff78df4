"""The legend of hundreds of terms in a real headless Chromium (dash_duo) on the demo store: every cluster of the
WMB-10X UMAP in the taxonomy's order with its cells, names in full, and the filter box narrowing it.

Screenshots go to ``/tmp/shots/`` (``legend_*``), at 1400 x 1000 and 1366 x 768.
"""
from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    TIMEOUT, atlas, choose_option, open_view, shot, store, viewer, wait_settled)

pytestmark = pytest.mark.browser

DATASET = "WMB-10X"
LEVEL = "cluster"

ROWS_JS = """
return Array.from(document.querySelectorAll('#legend .legend-item')).map(function (row) {
  var name = row.querySelector('.legend-name');
  return {name: row.getAttribute('data-name'), count: row.querySelector('.counts').textContent,
          title: row.getAttribute('title'), cut: name.scrollWidth > name.clientWidth + 1};
});
"""


def rows(duo):
    return duo.driver.execute_script(ROWS_JS)


def present_terms(atlas):
    counts = atlas.cells(DATASET)[LEVEL].value_counts()
    return [name for name in atlas.categories(DATASET, LEVEL) if counts.get(name, 0) > 0], counts


def wait_title(duo, text):
    """Wait until the legend's title (its text, not as styled: it is shown in capitals) holds ``text``."""
    WebDriverWait(duo.driver, TIMEOUT).until(lambda d: text in d.execute_script(
        "return document.getElementById('legend-title').textContent"))


def type_filter(duo, text):
    box = duo.find_element("#legend-filter")
    box.send_keys(Keys.CONTROL, "a")  # WebElement.clear() does not reach React's state
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(text)


def test_the_legend_lists_every_cluster_in_taxonomy_order_and_the_filter_narrows_it(viewer, atlas):
    order, counts = present_terms(atlas)
    assert len(order) > 300
    assert sorted(order, key=lambda name: -counts[name]) != order  # the two orders differ here
    open_view(viewer, f"?dataset={DATASET}&color_by={LEVEL}")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: len(rows(viewer)) == len(order))
    wait_settled(viewer)
    listed = rows(viewer)
    assert [row["name"] for row in listed] == order  # the taxonomy's order
    assert [int(row["count"].replace(",", "")) for row in listed] == [int(counts[name]) for name in order]
    assert not [row["name"] for row in listed if row["cut"]]  # every name in full (wrapped, never cut)
    assert listed[0]["title"].startswith(f"{order[0]}: {int(counts[order[0]]):,} cells here")
    wait_title(viewer, f"{LEVEL} ({len(order):,} here)")
    shot(viewer, "legend_01_wmb_clusters_1400")

    words = "car3 GLUT"
    matching = [name for name in order if all(w.casefold() in name.casefold() for w in words.split())]
    assert 0 < len(matching) < len(order)
    start = time.perf_counter()
    type_filter(viewer, words)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: [r["name"] for r in rows(viewer)] == matching)
    print(f"legend filter: {len(order)} -> {len(matching)} rows in {time.perf_counter() - start:.2f} s")
    wait_title(viewer, f"{len(order):,} here, {len(matching):,} match")
    shot(viewer, "legend_02_filtered_1400")

    viewer.driver.set_window_size(1366, 768)
    type_filter(viewer, "zzz-no-such-term")
    viewer.wait_for_contains_text("#legend", "No entry matches 'zzz-no-such-term'", timeout=TIMEOUT)
    type_filter(viewer, "gaba")
    gaba = [name for name in order if "gaba" in name.casefold()]
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: [r["name"] for r in rows(viewer)] == gaba)
    shot(viewer, "legend_03_gaba_1366")
    type_filter(viewer, " ")  # blank: everything again
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: len(rows(viewer)) == len(order))


def filter_value(duo):
    return duo.driver.execute_script("return document.getElementById('legend-filter').value;")


def test_the_filter_is_emptied_when_the_colouring_changes(viewer, atlas):
    open_view(viewer, f"?dataset={DATASET}&color_by={LEVEL}")
    order, _ = present_terms(atlas)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: len(rows(viewer)) == len(order))
    wait_settled(viewer)
    type_filter(viewer, "gaba")
    wait_title(viewer, "match")
    # another level: its legend lists all of its entries, and the box no longer holds the old words
    choose_option(viewer, "color-by", "class")
    classes = [name for name in atlas.categories(DATASET, "class")
               if atlas.cells(DATASET)["class"].value_counts().get(name, 0) > 0]
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: filter_value(viewer) == "" and [r["name"] for r in rows(viewer)] == classes)
    wait_title(viewer, f"class ({len(classes):,} here)")
    assert "match" not in viewer.driver.execute_script("return document.getElementById('legend-title').textContent")
    # the filter still works on the new entries
    type_filter(viewer, "gaba")
    gaba = [name for name in classes if "gaba" in name.casefold()]
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: [r["name"] for r in rows(viewer)] == gaba)
    assert 0 < len(gaba) < len(classes)


# legend rows wholly on screen: inside the legend's scroll box and above the window's bottom edge
ROWS_ON_SCREEN_JS = """
var box = document.getElementById('legend').getBoundingClientRect();
return Array.from(document.querySelectorAll('#legend .legend-item')).filter(function (row) {
  var r = row.getBoundingClientRect();
  return r.height > 0 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.bottom <= window.innerHeight;
}).length;
"""


@pytest.mark.parametrize("size", [(1366, 768), (1400, 1000)], ids=["1366x768", "1400x1000"])
def test_the_legend_shows_a_useful_number_of_rows_above_the_fold(viewer, size):
    viewer.driver.set_window_size(*size)
    open_view(viewer)  # the first view: a level with a dozen terms
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: len(rows(viewer)) >= 8)
    wait_settled(viewer)
    # no control squeezed sideways out of the sidebar
    assert viewer.driver.execute_script(
        "var s = document.getElementById('controls'); return s.scrollWidth <= s.clientWidth + 1;")
    shown = viewer.driver.execute_script(ROWS_ON_SCREEN_JS)
    assert shown >= 6, f"{shown} legend rows on screen at {size}"
    shot(viewer, f"legend_04_first_view_{size[0]}x{size[1]}")
