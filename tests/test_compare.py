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


SIZES = [{"width_px": 300, "height_px": 500}] * 3


def slot(demo, index, *, color_by="Subclass", gene=None, term=None, viewport=None, drawn=None, section=None,
         sections=None, sizes=SIZES, together=False, zoom=None):
    sections = list(sections or [None] * 3)
    if section is not None:
        sections[index] = section
    return compare.slot_step(index, "species", sections, color_by, gene, term, None, None, None, viewport,
                             sizes, drawn, demo.context, together=together, zoom=zoom)


def mm_per_px(figure, size):
    """What Plotly shows: with equal axis scales the axis needing more mm per pixel sets the scale."""
    x0, x1 = figure["layout"]["xaxis"]["range"]
    y0, y1 = figure["layout"]["yaxis"]["range"]
    return max(abs(x1 - x0) / size["width_px"], abs(y1 - y0) / size["height_px"])


def bar_mm(figure):
    """The scale bar: its label and its length (mm, to a nanometre)."""
    shape = figure["layout"]["shapes"][0]
    return figure["layout"]["annotations"][0]["text"], round(shape["x1"] - shape["x0"], 6)


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


def test_zooming_one_map_alone_moves_only_that_map(demo):
    figure, _, key = slot(demo, 0)
    relayout = {"xaxis.range[0]": 15.0, "xaxis.range[1]": 17.0, "yaxis.range[0]": 72.0, "yaxis.range[1]": 70.0}
    viewports, zoom = compare.zoom_step(0, relayout, False, None, [None] * 3, [None] * 3, SIZES, demo.context)
    viewport = viewports[0]
    assert viewport["frame"] == key and (viewport["x0"], viewport["x1"]) == (15.0, 17.0)
    assert viewports[1:] == [no_update, no_update] and zoom is no_update
    patch, _, new_key = slot(demo, 0, viewport=viewport, drawn=key)
    assert new_key is no_update
    operations = {tuple(op["location"]): op for op in patch.to_plotly_json()["operations"]}
    url = params(operations[("layout", "images")]["params"]["value"][0]["source"])
    assert float(url["x0"]) >= 14.9 and float(url["x1"]) <= 17.1
    # another slot ignores a viewport of another frame
    other, _, _ = slot(demo, 1, viewport=viewport)
    assert float(params(other["layout"]["images"][0]["source"])["x0"]) != float(url["x0"])


def test_every_map_shows_the_same_mm_per_pixel_and_the_same_scale_bar(demo):
    sizes = [{"width_px": 420, "height_px": 610}, {"width_px": 418, "height_px": 610},
             {"width_px": 420, "height_px": 600}]
    figures = [slot(demo, i, sizes=sizes)[0] for i in range(3)]
    scales = [mm_per_px(f, s) for f, s in zip(figures, sizes)]
    assert max(scales) == pytest.approx(min(scales), rel=1e-9)
    assert len({bar_mm(f) for f in figures}) == 1
    # the largest section decides: it just fits its map; the smaller ones are drawn smaller, centred
    extents = []
    for index, dataset in enumerate(demo.spatial[:3]):
        row = demo.atlas.sections(dataset).iloc[0]
        width, height = float(row["x_max"] - row["x_min"]), float(row["y_max"] - row["y_min"])
        extents.append(max(width / sizes[index]["width_px"], height / sizes[index]["height_px"]))
        x0, x1 = figures[index]["layout"]["xaxis"]["range"]
        assert (x0 + x1) / 2 == pytest.approx(float(row["x_min"] + row["x_max"]) / 2)
    assert len({round(e, 9) for e in extents}) > 1  # the demo's sections differ in size: the test can fail
    assert max(extents) < scales[0] < max(extents) * 1.1
    # each picture at the resolution of the screen: picture pixels per mm = plot pixels per mm
    for figure in figures:
        url = params(figure["layout"]["images"][0]["source"])
        density = int(url["w"]) / (float(url["x1"]) - float(url["x0"]))
        assert density == pytest.approx(1 / scales[0], rel=0.01)


def test_zooming_one_map_together_zooms_the_others_to_the_same_scale_on_the_same_relative_point(demo):
    figures = [slot(demo, i, together=True) for i in range(3)]
    fit = mm_per_px(figures[0][0], SIZES[0])
    x0, x1 = figures[0][0]["layout"]["xaxis"]["range"]
    y1, y0 = figures[0][0]["layout"]["yaxis"]["range"]
    # a 4x zoom on the point a quarter of the way across the first section's padded frame
    frame = compare.side_panels(demo.context, [None] * 3, SIZES)[0].frame
    cx, cy = frame.x0 + 0.25 * frame.width, frame.y0 + 0.6 * frame.height
    half_w, half_h = (x1 - x0) / 8, (y1 - y0) / 8
    relayout = {"xaxis.range[0]": cx - half_w, "xaxis.range[1]": cx + half_w, "yaxis.range[0]": cy + half_h,
                "yaxis.range[1]": cy - half_h}
    viewports, zoom = compare.zoom_step(0, relayout, True, None, [None] * 3, [None] * 3, SIZES, demo.context)
    assert viewports == [no_update] * 3
    assert zoom["zoom"] == pytest.approx(4) and (zoom["u"], zoom["v"]) == (pytest.approx(0.25), pytest.approx(0.6))
    panels = compare.side_panels(demo.context, [None] * 3, SIZES)
    for index, (_, _, key) in enumerate(figures):
        patch, _, _ = slot(demo, index, together=True, zoom=zoom, drawn=key)
        ops = {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}
        shown = {"layout": {"xaxis": {"range": ops[("layout", "xaxis", "range")]},
                            "yaxis": {"range": ops[("layout", "yaxis", "range")]}}}
        assert mm_per_px(shown, SIZES[index]) == pytest.approx(fit / 4)
        a, b = ops[("layout", "xaxis", "range")]
        panel = panels[index]
        assert (a + b) / 2 == pytest.approx(panel.frame.x0 + 0.25 * panel.frame.width)
    # zoomed alone (unticked), the other maps stay at the fitting scale
    alone = slot(demo, 1, together=False, zoom=zoom)[0]
    assert mm_per_px(alone, SIZES[1]) == pytest.approx(fit)


def test_unticking_zoom_together_keeps_every_map_where_it_is_and_ticking_it_fits_them_again(demo):
    zoom = {"zoom": 3.0, "u": 0.4, "v": 0.5}
    viewports, shared = compare.together_step(False, zoom, [None] * 3, SIZES, demo.context)
    assert shared is None
    for index in range(3):
        together = slot(demo, index, together=True, zoom=zoom)[0]
        alone = slot(demo, index, together=False, viewport=viewports[index])[0]
        assert alone["layout"]["xaxis"]["range"] == pytest.approx(together["layout"]["xaxis"]["range"])
    assert compare.together_step(True, None, [None] * 3, SIZES, demo.context) == ([None] * 3, None)


def test_a_bad_shared_zoom_shows_the_fitting_view(demo):
    fit = slot(demo, 0, together=True)[0]
    for bad in ({"zoom": "x", "u": 0.5, "v": 0.5}, {"zoom": float("inf"), "u": 0.5, "v": 0.5}, {"zoom": -1}):
        assert slot(demo, 0, together=True, zoom=bad)[0]["layout"]["xaxis"]["range"] == \
            fit["layout"]["xaxis"]["range"]


def test_the_views_are_not_drawn_while_hidden(demo):
    assert compare.slot_step(0, "map", [], "Subclass", None, None, None, None, None, None, [], None,
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
