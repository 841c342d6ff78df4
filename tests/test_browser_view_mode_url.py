"""The map card's view is part of the address (``view=species|gallery``, ``sections=``): the species side by side
with a section chosen for one species, opened from its address or its short link in a fresh page, shows the same
maps; the gallery likewise; Back from the gallery returns to the side by side. In a real headless Chromium
(dash_duo) on the demo store, with no console errors.
"""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from browser_helpers import (TIMEOUT, choose_option, choose_view, first_spatial, open_view, shot,
                             wait_for_picture, wait_settled)
from browser_helpers import atlas, store, viewer  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def address(duo) -> dict:
    return {key: values[-1] for key, values in parse_qs(urlsplit(duo.driver.current_url).query).items()}


def open_fresh(duo, url):
    duo.driver.get("about:blank")
    duo.driver.get(url)


def wait_for_side_by_side(duo, datasets, sections):
    """Every side-by-side map draws its species' section, and the single map is hidden."""
    for slot, (dataset, section) in enumerate(zip(datasets, sections)):
        wait_for_picture(duo, f"dataset={quote(dataset)}", f"section={quote(section)}",
                         graph=f"compare-graph-{slot}")
    assert duo.find_element("#compare-view").is_displayed()
    assert duo.find_element("#map-graph").is_displayed() is False
    duo.wait_for_contains_text(f"#compare-section-1", sections[1], timeout=TIMEOUT)


def wait_for_gallery(duo, sections):
    duo.wait_for_element("#gallery .gallery-item img", timeout=TIMEOUT)
    items = duo.driver.find_elements("css selector", "#gallery .gallery-item")
    assert [item.get_attribute("data-gallery-section") for item in items] == sections
    assert duo.find_element("#map-graph").is_displayed() is False
    assert duo.find_element("#compare-view").is_displayed() is False


def test_side_by_side_and_gallery_addresses_reopen_the_same_view_and_back_returns_to_the_previous_mode(viewer,
                                                                                                       atlas):
    dataset = first_spatial(atlas)
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"][:3]
    labels = {d: atlas.sections(d)["brain_section_label"].astype(str).tolist() for d in spatial}
    open_view(viewer, f"?dataset={quote(dataset)}&section={quote(labels[dataset][0])}&color_by=Subclass")
    wait_for_picture(viewer, f"section={quote(labels[dataset][0])}")
    wait_settled(viewer)

    # the side by side, with another section for the second species
    choose_view(viewer, "Species")
    firsts = [labels[d][0] for d in spatial]
    wait_for_side_by_side(viewer, spatial, firsts)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "view=species" in d.current_url)
    chosen = [firsts[0], labels[spatial[1]][1], *firsts[2:]]
    choose_option(viewer, "compare-section-1", chosen[1])
    wait_for_side_by_side(viewer, spatial, chosen)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "sections=" in d.current_url)
    wait_settled(viewer)
    species = address(viewer)
    assert species["view"] == "species" and species["sections"] == f",{chosen[1]}"
    species_url = viewer.driver.current_url
    shot(viewer, "60_species_chosen_section")

    # the address in a fresh page
    open_fresh(viewer, species_url)
    wait_for_side_by_side(viewer, spatial, chosen)
    wait_settled(viewer)
    assert address(viewer) == species  # nothing rewrote the address while the page loaded
    shot(viewer, "61_species_from_address")

    # the gallery, then Back to the side by side
    choose_view(viewer, "Gallery")
    wait_for_gallery(viewer, labels[dataset])
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "view=gallery" in d.current_url)
    wait_settled(viewer)
    gallery = address(viewer)
    assert "sections" not in gallery and gallery["dataset"] == dataset
    gallery_url = viewer.driver.current_url
    viewer.driver.back()
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "view=species" in d.current_url)
    wait_for_side_by_side(viewer, spatial, chosen)
    wait_settled(viewer)
    assert address(viewer) == species
    shot(viewer, "62_back_to_species")

    # the gallery's address, and the short link of the side by side, in a fresh page
    open_fresh(viewer, gallery_url)
    wait_for_gallery(viewer, labels[dataset])
    wait_settled(viewer)
    assert address(viewer) == gallery
    shot(viewer, "63_gallery_from_address")
    open_fresh(viewer, species_url)
    wait_for_side_by_side(viewer, spatial, chosen)
    viewer.find_element("#share-button").click()
    link = WebDriverWait(viewer.driver, TIMEOUT).until(
        lambda d: d.find_element("css selector", "#share-url").get_attribute("value"))
    assert urlsplit(link).path.startswith("/s/")
    open_fresh(viewer, link)
    WebDriverWait(viewer.driver, TIMEOUT).until(lambda d: "/s/" not in d.current_url)
    wait_for_side_by_side(viewer, spatial, chosen)
    assert address(viewer)["sections"] == species["sections"]
