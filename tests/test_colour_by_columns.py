"""Colour by any categorical cell column of a dataset (species, dissected region of interest, library method),
with the release's colours and order from value_sets: in the address, the picture, the legend, the composition and
figures; and in a browser."""
from __future__ import annotations

import io
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from PIL import Image

from browser_helpers import atlas, open_view, store, viewer, wait_for_picture  # noqa: F401  (fixtures)
from callbacks.legend import legend_step
from callbacks.selection import level_choices
from core.catalog import PLACE_COLUMNS
from core.context import ViewerContext
from core.state import parse_query
from settings import Settings

TENX = "HMBA-10xMultiome-BG-Aligned"


@pytest.fixture(scope="module")
def context(atlas, tmp_path_factory):
    return ViewerContext.build(atlas, Settings(store=tmp_path_factory.mktemp("columns")))


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def test_the_catalog_offers_the_release_cell_columns_as_colourings(context):
    tenx = context.catalog.get(TENX)
    assert {"species", "region_of_interest_label"} <= set(tenx.columns)
    assert "species" in tenx.color_by_choices()
    assert {"region_of_interest_acronym", "library_method"} <= set(context.catalog.get("WMB-10X").columns)
    for entry in context.catalog.datasets.values():
        assert not set(entry.columns) & (set(entry.levels) | set(PLACE_COLUMNS))


def test_the_address_reads_color_by_species_in_any_case(context):
    for text in ("species", "Species"):
        state, notices = parse_query(f"?dataset={TENX}&color_by={text}", context.catalog,
                                     gene_lookup=context.lookups.gene_symbol, term_lookup=context.lookups.term_level)
        assert (state.color_by, notices) == ("species", [])


def test_the_picture_draws_each_species_in_the_releases_colour(context, atlas):
    client = __import__("app").create_app(context.settings, atlas=atlas).server.test_client()
    entry = context.catalog.get(TENX)
    x0, x1, y0, y1 = entry.bounds
    query = urlencode({"dataset": TENX, "color_by": "species", "x0": x0, "x1": x1, "y0": y0, "y1": y1,
                       "w": 300, "h": 300})
    response = client.get(f"/render/map.png?{query}")
    assert response.status_code == 200
    pixels = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).reshape(-1, 3)
    found = {tuple(p) for p in np.unique(pixels, axis=0)}
    colours = dict(zip(atlas.cells(TENX)["species"].cat.categories, atlas.colors(TENX, "species")))
    assert colours["Human"] == "#377eb8"  # value_sets' colour of the release, not a palette's
    assert all(rgb(colour) in found for colour in colours.values())


def test_the_legend_lists_the_species_with_their_counts_and_colours(context, atlas):
    children, title, *_ = legend_step(TENX, None, None, "species", None, None, None, None, context)
    text = str(children)
    counts = atlas.cells(TENX)["species"].value_counts()
    assert title.startswith("Species (3 here)")
    for name in ("Human", "Macaque", "Marmoset"):
        assert name in text and f"{counts[name]:,}" in text
    assert "data-action" not in text  # not a taxonomy term: nothing to highlight by clicking


def test_a_selections_composition_can_count_species(context):
    assert "species" in level_choices(context, TENX)


def test_a_figure_of_the_umap_by_species_has_the_species_in_its_legend(context, atlas):
    client = __import__("app").create_app(context.settings, atlas=atlas).server.test_client()
    response = client.get(f"/api/render?{urlencode({'dataset': TENX, 'color_by': 'species', 'format': 'svg'})}")
    assert response.status_code == 200
    svg = response.get_data(as_text=True)
    assert all(name in svg for name in ("Human", "Macaque", "Marmoset"))


@pytest.mark.browser
def test_colouring_the_umap_by_species_in_a_browser(viewer):
    open_view(viewer, f"?dataset={quote(TENX)}&color_by=species")
    wait_for_picture(viewer, "color_by=species")
    viewer.wait_for_contains_text("#legend", "Marmoset")
    assert "Species" in viewer.find_element("#color-by").text
