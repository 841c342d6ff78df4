"""One cell type across species in a real headless Chromium (dash_duo) on the demo store: a click on the legend's
"STR D1 MSN" (Subclass) highlights it and shows the "Across species" button; one click opens the panel with the
term's annotation (STR = striatum DHBA:10333, MSN = medium spiny neuron), a row per species' cells (the three
species' sections and each species of the aligned 10X), the region bars and the dot plot of its conserved
markers with DRD1; the address holds ``across=1`` and opening that address opens the panel again. No console
errors.

From the taxonomy tree it takes one click: the "⇄ species" button of the term's row (found with the tree's search)
highlights the term and opens the panel; the 10X rows of the dot plot are there and the panel's markers table
gives each species row's adjusted p.

From the UMAP it takes one click too: a click on a D1 MSN cell of the cross-species 10X UMAP (beside a spatial
dataset's map, or in the map card when the 10X dataset is shown) puts "STR D1 MSN ⇄ species" by that UMAP; one
click on it opens the panel.

Screenshots: ``/tmp/shots/60_across_species_1400.png``, ``/tmp/shots/60_across_species_1366.png``,
``/tmp/shots/61_across_from_tree_1400.png``, ``/tmp/shots/61_across_from_tree_1366.png`` and the panel scrolled to
its markers' table, ``/tmp/shots/62_across_markers_1400.png`` and ``/tmp/shots/62_across_markers_1366.png``; the UMAP's button after a
click on a cell, ``/tmp/shots/63_umap_across_<where>_1400.png`` and ``..._1366.png``, and the panel it opened,
``/tmp/shots/64_across_from_umap_<where>_1400.png``.
"""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (  # noqa: F401  (atlas, store, viewer: fixtures)
    TIMEOUT, atlas, click_at, first_spatial, open_view, shot, store, viewer, wait_for_picture)

pytestmark = pytest.mark.browser

D1, LEVEL = "STR D1 MSN", "Subclass"
BODY_JS = """
var body = document.getElementById('across-body');
var rows = Array.from(body.querySelectorAll('.share-row td:first-child')).map(function (td) { return td.textContent; });
return rows.length ? [body.innerText, rows] : null;
"""
DOTS_JS = """
var gd = document.querySelector('#across-dots .js-plotly-plot');
return gd && gd.layout && gd.data && gd.data.length ? [gd.layout.xaxis.categoryarray, gd.layout.yaxis.categoryarray]
    : null;
"""


def species_labels(atlas):
    from data_layer.species import species_cells

    from core.catalog import catalog_from_atlas

    catalog = catalog_from_atlas(atlas)
    return [p.label for p in species_cells(atlas, catalog.species_datasets(atlas.info(first_spatial(atlas)).taxonomy))]


def test_the_panel_opens_from_a_legend_click_in_one_more_click_and_shows_every_species(viewer, atlas):
    dataset = first_spatial(atlas)
    labels = species_labels(atlas)
    assert len({label.split(" · ")[0] for label in labels}) == 3
    open_view(viewer, f"?dataset={quote(dataset)}&color_by={LEVEL}")
    wait_for_picture(viewer, f"color_by={LEVEL}")
    assert not viewer.find_element("#across-open").is_displayed()  # nothing highlighted yet
    viewer.wait_for_element(f'#legend .legend-item[data-name="{D1}"]', timeout=TIMEOUT).click()
    button = viewer.find_element("#across-open")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: button.is_displayed())
    button.click()

    viewer.wait_for_element("#across-panel .across-term", timeout=TIMEOUT)
    viewer.wait_for_contains_text("#across-body .across-term", D1, timeout=TIMEOUT)
    # read in one script: the panel may be drawn again meanwhile (the highlight is stored again)
    body, rows = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(BODY_JS))
    assert "striatum" in body and "DHBA:10333" in body and "medium spiny neuron" in body
    assert rows == labels
    genes, dot_rows = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(DOTS_JS))
    assert "DRD1" in genes[:3] and dot_rows == labels
    viewer.wait_for_element("#across-regions .js-plotly-plot .barlayer .point", timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: parse_qs(urlsplit(d.current_url).query).get("across") == ["1"])
    shot(viewer, "60_across_species_1400")
    viewer.driver.set_window_size(1366, 768)
    shot(viewer, "60_across_species_1366")
    viewer.driver.set_window_size(1400, 1000)

    # the address opens it again; closing drops it from the address
    address = viewer.driver.current_url
    viewer.driver.get(address)
    viewer.wait_for_contains_text("#across-body .across-term", D1, timeout=TIMEOUT)
    viewer.find_element("#across-close").click()
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: "across" not in parse_qs(urlsplit(d.current_url).query)
        and not d.find_element(By.ID, "across-panel").is_displayed())


def test_one_click_on_a_tree_rows_across_button_highlights_the_term_and_opens_the_panel(viewer, atlas):
    dataset = first_spatial(atlas)
    labels = species_labels(atlas)
    open_view(viewer, f"?dataset={quote(dataset)}&color_by={LEVEL}")
    wait_for_picture(viewer, f"color_by={LEVEL}")
    search = viewer.wait_for_element("#tree-search", timeout=TIMEOUT)
    search.send_keys("D1 MSN")
    button = viewer.wait_for_element(f'#tree .tree-row .across-go[data-level="{LEVEL}"][data-name="{D1}"]',
                                     timeout=TIMEOUT)
    assert not viewer.find_element("#across-panel").is_displayed()
    button.click()  # the only click
    panel = viewer.find_element("#across-panel")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: panel.is_displayed())  # at once, computing meanwhile
    # the first term of a fresh app computes its tests over every gene of each species' cells (seconds; slower
    # on a loaded machine)
    viewer.wait_for_contains_text("#across-body .across-term", D1, timeout=3 * TIMEOUT)
    viewer.wait_for_contains_text("#tree .tree-row.highlighted", D1, timeout=TIMEOUT)
    body, rows = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(BODY_JS))
    assert rows == labels and "DHBA:10333" in body
    genes, dot_rows = WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: d.execute_script(DOTS_JS))
    assert "DRD1" in genes[:3] and dot_rows == labels and any("10x" in row for row in dot_rows)
    table = viewer.wait_for_element("#across-markers-table", timeout=TIMEOUT)
    assert "DRD1" in table.text and all(label in table.text for label in labels)
    assert viewer.find_element("#across-markers-csv").get_attribute("href").split("?")[0].endswith(
        "/export/across-markers.csv")
    assert viewer.find_elements("#across-figure a")  # the whole panel as one figure
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: parse_qs(urlsplit(d.current_url).query).get("across") == ["1"]
        and parse_qs(urlsplit(d.current_url).query).get("term") == [D1])
    shot(viewer, "61_across_from_tree_1400")
    viewer.driver.set_window_size(1366, 768)
    shot(viewer, "61_across_from_tree_1366")
    viewer.driver.execute_script("document.getElementById('across-markers-table').scrollIntoView();")
    shot(viewer, "62_across_markers_1366")
    viewer.driver.set_window_size(1400, 1000)
    viewer.driver.execute_script("document.getElementById('across-markers-table').scrollIntoView();")
    shot(viewer, "62_across_markers_1400")
    assert viewer.get_logs() == []


@pytest.mark.parametrize("where", ["spatial", "10x"])
def test_one_click_on_the_button_a_umap_click_puts_by_the_umap_opens_the_panel(viewer, atlas, where):
    import numpy as np

    spatial = first_spatial(atlas)
    tenx = atlas.info(spatial).umap_dataset
    assert tenx and not atlas.info(tenx).species  # the cross-species 10X cells
    dataset, graph, holder = ((spatial, "umap-graph", "umap-across") if where == "spatial"
                              else (tenx, "map-graph", "map-across"))
    cells = atlas.cells(tenx)
    xy = cells[["x", "y"]].to_numpy(float)
    d1 = np.flatnonzero(cells[LEVEL].to_numpy() == D1)
    # a D1 MSN cell whose nearest neighbour is a D1 MSN cell too: the click lands on a D1 MSN whatever the rounding
    nearest = [np.argsort(np.hypot(*(xy - xy[row]).T))[1] for row in d1[:50]]
    row = next(r for r, n in zip(d1, nearest) if cells[LEVEL].iat[n] == D1)
    open_view(viewer, f"?dataset={quote(dataset)}&color_by={LEVEL}")
    wait_for_picture(viewer, f"dataset={quote(tenx)}", graph=graph)
    click_at(viewer, graph, *xy[row])
    button = viewer.wait_for_element(f'#{holder} button[data-name="{D1}"]', timeout=TIMEOUT)
    assert button.get_attribute("data-level") == LEVEL and "⇄ species" in button.text
    WebDriverWait(viewer.driver, TIMEOUT).until(  # the click highlighted the cell's term
        lambda d: parse_qs(urlsplit(d.current_url).query).get("term") == [D1])
    assert not viewer.find_element("#across-panel").is_displayed()
    shot(viewer, f"63_umap_across_{where}_1400")
    viewer.driver.set_window_size(1366, 768)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: button.is_displayed() and d.execute_script(
        # drawn again at the new size: the map's plot no longer covers the inspector under it
        "var svg = document.querySelector('#map-graph .main-svg').getBoundingClientRect();"
        "return svg.bottom <= document.querySelector('.inspect').getBoundingClientRect().top + 1;"))
    shot(viewer, f"63_umap_across_{where}_1366")
    viewer.driver.set_window_size(1400, 1000)

    button.click()  # the one click
    panel = viewer.find_element("#across-panel")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: panel.is_displayed())
    viewer.wait_for_contains_text("#across-body .across-term", D1, timeout=3 * TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: parse_qs(urlsplit(d.current_url).query).get("across") == ["1"]
        and parse_qs(urlsplit(d.current_url).query).get("term") == [D1]
        and parse_qs(urlsplit(d.current_url).query).get("term_level") == [LEVEL])
    shot(viewer, f"64_across_from_umap_{where}_1400")
    assert viewer.get_logs() == []
