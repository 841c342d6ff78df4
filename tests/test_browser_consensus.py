"""The consensus mouse taxonomy in the viewer, in a real headless Chromium (dash_duo) on the demo store: picking a
neighborhood's UMAP draws only its cells in its own coordinates, writes ``embedding=`` into the address, and a
short link reopens it; coloured by a gene, the UMAP shows its expressing cells in colour and the colour key names
the gene; a lasso drawn in a neighborhood UMAP fills the analysis panel (count, composition, marker dot plot) with
that UMAP's cells inside it. No console errors.
"""
from __future__ import annotations

import io
import urllib.request
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (TIMEOUT, choose_option, drag_path, hexagon, open_view, set_dragmode, shot,
                             wait_for_picture, wait_settled)
from browser_helpers import atlas, store, viewer  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

DATASET = "Consensus-WMB-integrated-taxonomy"


def address(duo) -> dict:
    return {key: values[-1] for key, values in parse_qs(urlsplit(duo.driver.current_url).query).items()}


def picture_pixels(duo, source: str) -> np.ndarray:
    """The RGBA pixels of the picture the page shows (fetched again from the server)."""
    with urllib.request.urlopen(duo.server_url + source, timeout=TIMEOUT) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGBA")).astype(np.int16)


def legend_names(duo) -> list[str]:
    return [e.text.strip() for e in duo.driver.find_elements("css selector", "#legend .legend-name") if e.text.strip()]


def test_picking_a_neighborhood_umap_draws_its_cells_only_and_its_address_and_short_link_reopen_it(viewer, atlas):
    neighborhood = atlas.embeddings(DATASET)[1]
    classes = set(atlas.cells(DATASET, embedding=neighborhood)["class"].astype(str))
    everywhere = set(atlas.cells(DATASET)["class"].astype(str))
    assert classes < everywhere  # the whole UMAP's legend is longer: the check below can fail
    viewer.driver.set_window_size(1400, 1000)
    open_view(viewer, f"?dataset={quote(DATASET)}&color_by=class")
    wait_for_picture(viewer, f"dataset={quote(DATASET)}", absent=("embedding=",))
    wait_settled(viewer)
    assert set(legend_names(viewer)) == everywhere

    choose_option(viewer, "embedding", neighborhood)
    info = wait_for_picture(viewer, f"embedding={quote(neighborhood)}")
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: address(viewer).get("embedding") == neighborhood)
    viewer.wait_for_contains_text("#map-title", f"UMAP of {neighborhood}", timeout=TIMEOUT)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: set(legend_names(viewer)) == classes)
    # the plot's x range is the neighborhood UMAP's, not the whole one's
    x_min, x_max = atlas.xy(DATASET, embedding=neighborhood)[0].min(), atlas.xy(DATASET, embedding=neighborhood)[0].max()
    low, high = info["xrange"]
    assert low < x_min and high > x_max and (high - low) < 1.3 * (x_max - x_min)
    shot(viewer, "consensus_neighborhood_umap_1400x1000")
    viewer.driver.set_window_size(1366, 768)
    wait_for_picture(viewer, f"embedding={quote(neighborhood)}")
    wait_settled(viewer)
    shot(viewer, "consensus_neighborhood_umap_1366x768")

    viewer.find_element("#share-button").click()
    link = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#share-url").get_attribute("value"))
    assert urlsplit(link).path.startswith("/s/")
    viewer.driver.get("about:blank")
    viewer.driver.get(link)
    wait_for_picture(viewer, f"embedding={quote(neighborhood)}")
    assert address(viewer).get("embedding") == neighborhood
    viewer.wait_for_contains_text("#map-title", f"UMAP of {neighborhood}", timeout=TIMEOUT)


def test_the_consensus_umap_coloured_by_a_gene_shows_expressing_cells_in_colour_and_names_the_gene(viewer, atlas):
    values = atlas.gene(DATASET, "Snap25")
    assert np.nanmax(values) > 0 and (values == 0).any()
    open_view(viewer, f"?dataset={quote(DATASET)}&gene=Snap25")
    info = wait_for_picture(viewer, f"dataset={quote(DATASET)}", "color_by=gene", "gene=Snap25")
    wait_settled(viewer)
    viewer.wait_for_text_to_equal("#legend .legend-gene", "Snap25", timeout=TIMEOUT)
    viewer.wait_for_contains_text("#map-title", "Snap25 expression", timeout=TIMEOUT)
    rgba = picture_pixels(viewer, info["source"])
    drawn = rgba[..., 3] > 0
    spread = rgba[..., :3].max(axis=-1) - rgba[..., :3].min(axis=-1)
    coloured = drawn & (spread > 60)  # the colour map's hues, not the grey of cells without the gene
    grey = drawn & (spread < 12)
    assert coloured.sum() > 500 and grey.sum() > 50
    shot(viewer, "consensus_gene_snap25")


def test_a_lasso_in_a_neighborhood_umap_gives_the_marker_card_and_summary_of_its_cells_there(viewer, atlas):
    from data_layer.analysis import cells_in_polygon

    neighborhood = "NN-IMN"
    x, y = (np.asarray(v, dtype=np.float64) for v in atlas.xy(DATASET, embedding=neighborhood))
    cx, cy = float(np.median(x)), float(np.median(y))
    viewer.driver.set_window_size(1400, 1000)
    open_view(viewer, f"?dataset={quote(DATASET)}&embedding={neighborhood}&color_by=class")
    wait_for_picture(viewer, f"embedding={neighborhood}")
    wait_settled(viewer)
    set_dragmode(viewer, "map-graph", "lasso")
    drag_path(viewer, "map-graph", hexagon(cx, cy, 1.2))
    viewer.wait_for_contains_text("#selection-summary", f"cells selected in the {neighborhood} UMAP", timeout=TIMEOUT)
    viewer.wait_for_element("#markers-graph .scatterlayer .point", timeout=TIMEOUT)
    viewer.wait_for_contains_text("#markers-title", f"the {neighborhood} UMAP", timeout=TIMEOUT)
    # the count is that of the neighborhood's cells inside the polygon the export link carries, in its coordinates
    href = viewer.find_element("#selection-export").get_attribute("href")
    params = parse_qs(urlsplit(href).query)
    assert params["embedding"] == [neighborhood]
    numbers = [float(v) for v in params["selection"][0].split(",")]
    expected = int(cells_in_polygon(x, y, (numbers[0::2], numbers[1::2])).sum())
    assert 0 < expected < len(x)
    viewer.wait_for_contains_text("#selection-summary", f"{expected:,} cells selected", timeout=TIMEOUT)
    rows = viewer.driver.execute_script(
        "return document.querySelector('#markers-graph .js-plotly-plot').layout.yaxis.categoryarray;")
    assert rows[:2] == [f"Selection ({expected:,})", "Rest"]
    viewer.wait_for_element("#composition-graph .barlayer .point", timeout=TIMEOUT)
    wait_for_picture(viewer, f"embedding={neighborhood}", "selection=")
    wait_settled(viewer)
    shot(viewer, "consensus_neighborhood_lasso_markers_1400x1000")
    viewer.driver.set_window_size(1366, 768)
    wait_settled(viewer)
    shot(viewer, "consensus_neighborhood_lasso_markers_1366x768")
