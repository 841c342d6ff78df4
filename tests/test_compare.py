"""Species side by side and the section gallery (``callbacks.compare``) on the demo store: one map per species
with the main map's colouring carried over (level, gene by symbol, term at shared levels), independent zoom,
one legend counting each species, and small pictures of every section that open in the map when clicked."""
from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from dash import no_update

from callbacks import compare
from core.context import ViewerContext, term_counts
from core.catalog import COLOR_BY_GENE
from settings import Settings


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("compare") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    return SimpleNamespace(atlas=atlas, context=context, spatial=spatial)


def params(image_url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(image_url).query).items()}


def slot(demo, index, *, color_by="Subclass", gene=None, term=None, viewport=None, drawn=None, section=None):
    return compare.slot_step(index, "species", section, color_by, gene, term, None, None, None, viewport,
                             {"width_px": 300, "height_px": 500}, drawn, demo.context)


def test_one_dataset_per_species_in_catalog_order(demo):
    chosen = compare.compare_datasets(demo.context)
    assert chosen == demo.spatial[:3]
    assert len({demo.context.catalog.get(d).species for d in chosen}) == len(chosen)


def test_each_map_shows_the_first_section_of_its_species_coloured_like_the_main_map(demo):
    term = {"level": "Subclass", "name": "STR D1 MSN"}
    for index, dataset in enumerate(demo.spatial[:3]):
        figure, title, key = slot(demo, index, term=term)
        first = str(demo.atlas.sections(dataset)["brain_section_label"].iloc[0])
        url = params(figure["layout"]["images"][0]["source"])
        assert (url["dataset"], url["section"], url["color_by"]) == (dataset, first, "Subclass")
        assert (url["term"], url["term_level"]) == ("STR D1 MSN", "Subclass")
        assert key == f"{dataset}|{first}"
        assert demo.context.catalog.get(dataset).species in title


def test_a_gene_is_matched_by_symbol_and_shares_one_colour_range(demo):
    shared = set.intersection(*(set(demo.atlas.genes(d)["gene_symbol"]) for d in demo.spatial[:3]))
    gene = "DRD1" if "DRD1" in shared else sorted(shared)[0]
    ranges = set()
    for index in range(len(demo.spatial[:3])):
        figure, _, _ = slot(demo, index, color_by=COLOR_BY_GENE, gene=gene.lower())
        url = params(figure["layout"]["images"][0]["source"])
        assert url["gene"] == gene
        ranges.add((url["vmin"], url["vmax"]))
    assert len(ranges) == 1  # one scale for every species: the shared legend is true for all


def test_a_gene_a_species_lacks_falls_back_to_its_default_level_with_a_note(demo):
    genes = [set(demo.atlas.genes(d)["gene_symbol"]) for d in demo.spatial[:3]]
    missing = next(((i, g) for i in range(len(genes)) for g in sorted(set.union(*genes) - genes[i])), None)
    if missing is None:
        pytest.skip("every species measures every gene")
    index, gene = missing
    colouring = compare.slot_colouring(demo.context, demo.spatial[index], COLOR_BY_GENE, gene, None, None)
    assert colouring.color_by == demo.context.catalog.get(demo.spatial[index]).default_color_by()
    assert f"{gene} not measured" in colouring.note


def test_a_cluster_is_not_carried_across_species_but_a_group_is(demo):
    dataset = demo.spatial[0]
    cluster = str(demo.atlas.taxonomy(dataset).terms("Cluster")["name"].iloc[0])
    colouring = compare.slot_colouring(demo.context, dataset, "Subclass", None,
                                       {"level": "Cluster", "name": cluster}, None)
    assert colouring.term is None and "not shared across species" in colouring.note
    group = str(demo.atlas.taxonomy(dataset).terms("Group")["name"].iloc[0])
    colouring = compare.slot_colouring(demo.context, dataset, "Subclass", None, {"level": "Group", "name": group},
                                       None)
    assert colouring.term == ("Group", group)


def test_zooming_one_map_moves_only_that_map(demo):
    figure, _, key = slot(demo, 0)
    relayout = {"xaxis.range[0]": 15.0, "xaxis.range[1]": 17.0, "yaxis.range[0]": 72.0, "yaxis.range[1]": 70.0}
    viewport = compare.slot_viewport_step(0, relayout, None, None, demo.context)
    assert viewport["frame"] == key and (viewport["x0"], viewport["x1"]) == (15.0, 17.0)
    patch, _, new_key = slot(demo, 0, viewport=viewport, drawn=key)
    assert new_key is no_update
    operations = {tuple(op["location"]): op for op in patch.to_plotly_json()["operations"]}
    url = params(operations[("layout", "images")]["params"]["value"][0]["source"])
    assert float(url["x0"]) >= 14.9 and float(url["x1"]) <= 17.1
    # another slot ignores a viewport of another frame
    other, _, _ = slot(demo, 1, viewport=viewport)
    assert float(params(other["layout"]["images"][0]["source"])["x0"]) != float(url["x0"])


def test_the_views_are_not_drawn_while_hidden(demo):
    assert compare.slot_step(0, "map", None, "Subclass", None, None, None, None, None, None, None, None,
                             demo.context) == (no_update, no_update, no_update)
    assert compare.gallery_step("species", demo.spatial[0], None, "Subclass", None, None, None, None, None,
                                demo.context) is no_update


def test_the_shared_legend_counts_each_term_in_each_species_section(demo):
    firsts = [str(demo.atlas.sections(d)["brain_section_label"].iloc[0]) for d in demo.spatial[:3]]
    legend = compare.legend_step("species", firsts, "Subclass", None, {"level": "Subclass", "name": "STR D1 MSN"},
                                 None, None, None, demo.context)
    html = legend.children
    for dataset, section in zip(demo.spatial[:3], firsts):
        counts = term_counts(demo.atlas.cells(dataset, section=section), "Subclass")
        assert f"{counts['STR D1 MSN']:,}" in html
    assert 'class="legend-item shared-row highlighted"' in html and 'data-name="STR D1 MSN"' in html


def test_the_gallery_has_a_small_picture_of_every_section_and_marks_the_current_one(demo):
    dataset = demo.spatial[0]
    sections = demo.atlas.sections(dataset)["brain_section_label"].astype(str).tolist()
    gallery = compare.gallery_step("gallery", dataset, sections[1], "Subclass", None, None, None, None, None,
                                   demo.context)
    items = gallery.children
    assert [item.to_plotly_json()["props"]["data-gallery-section"] for item in items] == sections
    for item, section in zip(items, sections):
        url = params(item.children[0].src)
        assert url["section"] == section and int(url["w"]) <= 240 and int(url["h"]) <= 200
    assert "current" in items[1].className and "current" not in items[0].className


def test_the_gallery_of_a_dataset_without_sections_says_it_does_not_apply(demo):
    umap = next(d for d in demo.atlas.datasets() if demo.atlas.info(d).kind != "spatial")
    gallery = compare.gallery_step("gallery", umap, None, "class", None, None, None, None, None, demo.context)
    assert gallery.children.startswith(f"The gallery does not apply to {umap}: it has no sections")


def test_the_shared_legend_lists_terms_in_taxonomy_order(demo):
    firsts = [str(demo.atlas.sections(d)["brain_section_label"].iloc[0]) for d in demo.spatial[:3]]
    html = compare.legend_step("species", firsts, "Subclass", None, None, None, None, None, demo.context).children
    names = re.findall(r'data-name="([^"]*)"', html)
    order: list[str] = []
    for dataset in demo.spatial[:3]:
        order += [str(c) for c in demo.atlas.categories(dataset, "Subclass") if str(c) not in order]
    assert len(names) > 5 and names == [name for name in order if name in set(names)]


def test_clicking_a_gallery_picture_opens_its_section_in_the_map(demo):
    dataset = demo.spatial[0]
    section = str(demo.atlas.sections(dataset)["brain_section_label"].iloc[-1])
    assert compare.gallery_pick_step({"section": section, "t": 1}, dataset, demo.context) == (section, "map")
    assert compare.gallery_pick_step({"section": "NOPE", "t": 1}, dataset, demo.context) == (no_update, no_update)


def test_the_view_switch_shows_one_view_at_a_time():
    assert compare.mode_step("species") == ("panel map-panel mode-species", False, True)
    assert compare.mode_step("gallery") == ("panel map-panel mode-gallery", True, False)
    assert compare.mode_step(None) == ("panel map-panel mode-map", True, True)
