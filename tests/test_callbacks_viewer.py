"""The viewer's callbacks called as plain functions on a real (small, quirky) prepared store."""
from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from dash import Patch, no_update

from abc_builders import HUMAN, MARMOSET, BG_10X, WMB, build_quirky_cache
from callbacks import inspector, legend, map_view, navigation, tree, umap_view
from core.context import ViewerContext
from components import ids
from core.catalog import WHOLE_SLAB_PLANE
from core.state import ViewState
from core.viewport import Window
from settings import Settings

# positions of the selection callback's outputs (navigation.SELECTION_OUTPUTS)
OUT = {f"{o.component_id}.{o.component_property}": i for i, o in enumerate(navigation.SELECTION_OUTPUTS)}


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    from data_layer import Atlas
    from data_layer.prepare import prepare_store

    root = tmp_path_factory.mktemp("viewer-callbacks")
    build_quirky_cache(root / "cache", n_per_section=60)
    prepare_store(root / "cache", root / "store", progress=False)
    atlas = Atlas.open(root / "store")
    return ViewerContext.build(atlas, Settings(store=root / "store"))


def out(outputs, key):
    return outputs[OUT[key]]


def values(**given):
    base = {ids.DATASET: None, ids.SLAB_PLANE: None, ids.SECTION: None, ids.COLOR_BY: None, ids.GENE: None,
            ids.TERM: None, ids.VIEWPORT: None, ids.GENE_VMIN: None, ids.GENE_VMAX: None}
    base.update({getattr(ids, key.upper()): value for key, value in given.items()})
    return base


def first_section(context, dataset):
    return context.atlas.sections(dataset)["brain_section_label"].iloc[0]


# ---------------------------------------------------------------------------------------------- selection
def test_first_load_without_query_shows_the_first_datasets_whole_first_slab_plane_by_class(context):
    outputs = navigation.selection_step(None, values(), context, search="")
    dataset = context.atlas.datasets()[0]
    assert out(outputs, "dataset.value") == dataset
    assert out(outputs, "slab-plane.value") == context.catalog.get(dataset).slab_planes[0].label
    assert out(outputs, "section.value") == WHOLE_SLAB_PLANE
    assert out(outputs, "color-by.value") == "Class"
    assert out(outputs, "notice-view.children") == []


def test_first_load_restores_the_url(context):
    section = context.atlas.sections(HUMAN)["brain_section_label"].iloc[1]
    search = f"?dataset={HUMAN}&section={section}&color_by=gene&gene=drd2&x0=1&x1=3&y0=2&y1=4"
    outputs = navigation.selection_step(None, values(), context, search=search)
    assert out(outputs, "section.value") == section
    assert (out(outputs, "color-by.value"), out(outputs, "gene.value")) == ("gene", "DRD2")
    assert out(outputs, "viewport.data") == {"x0": 1.0, "x1": 3.0, "y0": 2.0, "y1": 4.0}
    assert "DRD2" in [o["value"] for o in out(outputs, "gene.options")]


def test_unknown_gene_in_url_gives_a_visible_notice(context):
    outputs = navigation.selection_step(None, values(), context, search=f"?dataset={HUMAN}&gene=NOTAGENE")
    notices = out(outputs, "notice-view.children")
    assert len(notices) == 1 and "NOTAGENE" in notices[0].children
    assert out(outputs, "color-by.value") == context.catalog.get(HUMAN).default_color_by()


def test_url_equal_to_the_view_changes_nothing(context):
    section = first_section(context, HUMAN)
    plane = context.catalog.get(HUMAN).sections[section].slab_plane
    current = values(dataset=HUMAN, slab_plane=plane, section=section, color_by="Class")
    search = navigation.url_query(current)["query"]
    outputs = navigation.selection_step(ids.URL, current, context, search=search)
    assert all(o is no_update for o in outputs[:-1])


def test_switching_dataset_keeps_colour_by_and_gene_by_symbol(context):
    current = values(dataset=MARMOSET, slab_plane="H22.30.001.CX.13.Plane.05", section=first_section(context, HUMAN),
                     color_by="gene", gene="DRD1")
    outputs = navigation.selection_step(ids.DATASET, current, context)
    assert out(outputs, "section.value") == WHOLE_SLAB_PLANE
    assert out(outputs, "slab-plane.value") == context.catalog.get(MARMOSET).slab_planes[0].label
    assert out(outputs, "color-by.value") is no_update  # still "gene"
    assert out(outputs, "gene.value") is no_update  # still DRD1, present in the marmoset panel
    assert [o["value"] for o in out(outputs, "section.options")][0] == WHOLE_SLAB_PLANE


def test_switching_to_a_umap_dataset_hides_the_section_controls(context):
    current = values(dataset=WMB, section=first_section(context, HUMAN), color_by="Class")
    outputs = navigation.selection_step(ids.DATASET, current, context)
    assert out(outputs, "spatial-controls.hidden") is True
    assert out(outputs, "section.value") is None
    assert out(outputs, "color-by.value") == "class"  # the mouse level of the same name, any case


def test_switching_to_another_taxonomy_without_the_level_takes_its_default(context):
    current = values(dataset=WMB, section=first_section(context, HUMAN), color_by="Group")
    outputs = navigation.selection_step(ids.DATASET, current, context)
    assert out(outputs, "color-by.value") == context.catalog.get(WMB).default_color_by()


def test_switching_dataset_keeps_a_shared_term(context):
    term = {"level": "Subclass", "name": "STR D1 MSN", "taxonomy": context.catalog.get(HUMAN).taxonomy}
    current = values(dataset=MARMOSET, section=first_section(context, HUMAN), color_by="Class", term=term)
    outputs = navigation.selection_step(ids.DATASET, current, context)
    assert out(outputs, "term.data") is no_update


def test_choosing_a_gene_colours_by_gene_with_the_default_range(context):
    current = values(dataset=HUMAN, section=first_section(context, HUMAN), color_by="Class", gene="DRD1",
                     gene_vmin=1, gene_vmax=2)
    outputs = navigation.selection_step(ids.GENE, current, context)
    assert out(outputs, "color-by.value") == "gene"
    assert (out(outputs, "gene-vmin.value"), out(outputs, "gene-vmax.value")) == (None, None)


def test_colour_by_gene_without_a_gene_picks_the_first_gene(context):
    current = values(dataset=HUMAN, section=first_section(context, HUMAN), color_by="gene")
    outputs = navigation.selection_step(ids.COLOR_BY, current, context)
    assert out(outputs, "gene.value") == context.atlas.genes(HUMAN)["gene_symbol"].iloc[0]


def test_clearing_the_gene_returns_to_the_default_level(context):
    current = values(dataset=HUMAN, section=first_section(context, HUMAN), color_by="gene", gene=None)
    outputs = navigation.selection_step(ids.GENE, current, context)
    assert out(outputs, "color-by.value") == context.catalog.get(HUMAN).default_color_by()


def test_url_query_replaces_history_only_for_viewport_moves(context):
    current = values(dataset=HUMAN, section=first_section(context, HUMAN), color_by="Class",
                     viewport={"x0": 0, "x1": 1, "y0": 0, "y1": 1})
    assert navigation.url_query(current, only_viewport=True)["replace"] is True
    query = parse_qs(navigation.url_query(current)["query"].lstrip("?"))
    assert query["x1"] == ["1"] and query["color_by"] == ["Class"]


def test_gene_completion_matches_prefix(context):
    options, notices = navigation.gene_completions("dr", HUMAN, None, context)
    assert {"DRD1", "DRD2"} <= {o["value"] for o in options} and notices == []


def test_gene_completion_without_match_gives_notice_and_keeps_current(context):
    options, notices = navigation.gene_completions("zzzz", HUMAN, "DRD1", context)
    assert [o["value"] for o in options] == ["DRD1"]
    assert "zzzz" in notices[0].children


# ---------------------------------------------------------------------------------------------- map
def _map_state(context, dataset=HUMAN, **changes):
    section = first_section(context, dataset) if context.catalog.get(dataset).spatial else None
    plane = context.catalog.get(dataset).sections[section].slab_plane if section else None
    state = ViewState(dataset=dataset, slab_plane=plane, section=section, color_by="Class")
    return state.replace(**changes)


def test_new_frame_gets_a_full_figure_with_a_picture_url(context):
    state = _map_state(context)
    figure, title, notices, key = map_view.map_figure_step(None, state, {"width_px": 800, "height_px": 600},
                                                            True, context)
    assert isinstance(figure, dict) and key == map_view.frame_key(state)
    source = figure["layout"]["images"][0]["source"]
    query = parse_qs(urlsplit(source).query)
    assert query["section"] == [state.section] and query["color_by"] == ["Class"]
    assert notices == [] and state.section in title


def test_same_frame_gets_a_patch_of_the_picture(context):
    state = _map_state(context)
    key = map_view.frame_key(state)
    patch, _, _, new_key = map_view.map_figure_step(key, state.replace(color_by="gene", gene="DRD1"),
                                                    None, True, context)
    assert isinstance(patch, Patch) and new_key is no_update
    images = next(op for op in patch.to_plotly_json()["operations"] if op["location"] == ["layout", "images"])
    assert "gene=DRD1" in images["params"]["value"][0]["source"]


def test_picture_url_of_the_map_is_served_as_png(context):
    from app import create_app

    app = create_app(context.settings, atlas=context.atlas)
    state = _map_state(context, term="STR D1 MSN", term_level="Subclass")
    figure, *_ = map_view.map_figure_step(None, state, {"width_px": 320, "height_px": 240}, True, context)
    response = app.server.test_client().get(figure["layout"]["images"][0]["source"])
    assert response.status_code == 200 and response.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max-age" in response.headers["Cache-Control"]


def test_umap_dataset_is_the_main_picture_without_scale_bar(context):
    state = _map_state(context, dataset=WMB, color_by="class")
    figure, title, _, _ = map_view.map_figure_step(None, state, None, True, context)
    assert figure["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
    assert figure["layout"]["shapes"] == [] and "UMAP" in title


def test_zoom_sets_viewport_and_reset_clears_it(context):
    state = _map_state(context)
    event = {"xaxis.range[0]": 1.0, "xaxis.range[1]": 2.0, "yaxis.range[0]": 3.0, "yaxis.range[1]": 2.0}
    assert map_view.viewport_step(event, None, state, context) == {"x0": 1.0, "x1": 2.0, "y0": 2.0, "y1": 3.0}
    reset = {"xaxis.autorange": True, "yaxis.autorange": True}
    assert map_view.viewport_step(reset, {"x0": 1, "x1": 2, "y0": 2, "y1": 3}, state, context) is None
    assert map_view.viewport_step({"autosize": True}, None, state, context) is no_update


def test_polygon_toggle_patches_the_outlines(context):
    state = _map_state(context)
    patch = map_view.polygons_step(False, HUMAN, state.slab_plane, context)
    assert isinstance(patch, Patch)
    plane_without = [p.label for p in context.catalog.get(HUMAN).slab_planes if not p.has_polygons][0]
    assert map_view.polygons_step(False, HUMAN, plane_without, context) is no_update


# ---------------------------------------------------------------------------------------------- umap
def test_umap_panel_beside_a_section_shows_the_10x_umap(context):
    figure, title, notices, hidden, key = umap_view.umap_figure_step(None, HUMAN, "Class", None, None, None, None,
                                                                     context)
    assert hidden is False and key == BG_10X
    assert f"dataset={BG_10X}" in figure["layout"]["images"][0]["source"]


def test_umap_panel_falls_back_to_a_level_for_regions(context):
    figure, *_ = umap_view.umap_figure_step(None, HUMAN, "region", None, None, None, None, context)
    assert "color_by=Class" in figure["layout"]["images"][0]["source"]


def test_umap_panel_hides_for_a_umap_dataset(context):
    assert umap_view.umap_figure_step(None, WMB, "class", None, None, None, None, context)[3] is True


# ---------------------------------------------------------------------------------------------- legend and tree
def n_rows(block, row_class):
    """Rows of an HTML block (a dcc.Markdown written by components.panels)."""
    return block.children.count(f'class="{row_class}')


def test_legend_lists_the_terms_present_with_counts(context):
    section = first_section(context, HUMAN)
    block, title, *_ = legend.legend_step(HUMAN, None, section, "Class", None, None, None, None, context)
    cells = context.atlas.cells(HUMAN, section=section)
    present = cells["Class"].value_counts()
    assert n_rows(block, "legend-item") == int((present > 0).sum())
    assert title.startswith("Class")


def test_legend_lists_terms_in_taxonomy_order_and_filters_them(context):
    section = first_section(context, HUMAN)
    block, _, *_ = legend.legend_step(HUMAN, None, section, "Subclass", None, None, None, None, context)
    counts = context.atlas.cells(HUMAN, section=section)["Subclass"].value_counts()
    order = [name for name in context.atlas.categories(HUMAN, "Subclass") if counts.get(name, 0) > 0]
    names = re.findall(r'data-action="pick" data-level="[^"]*" data-name="([^"]*)"', block.children)
    assert names == [html.escape(name, quote=True) for name in order]  # the taxonomy's order, not by count
    assert sorted(order, key=lambda name: -counts[name]) != order  # so the two orders tell apart here
    word = order[1].split()[0]
    block, title, *_ = legend.legend_step(HUMAN, None, section, "Subclass", None, None, None, None, context,
                                          word.upper())
    matching = [name for name in order if word.casefold() in name.casefold()]
    picked = re.findall(r'data-action="pick" data-level="[^"]*" data-name="([^"]*)"', block.children)
    assert picked == [html.escape(n, quote=True) for n in matching]
    assert title == f"Subclass ({len(order):,} here, {len(matching):,} match)"


def test_gene_legend_shows_the_default_range(context):
    children, title, info, low, high = legend.legend_step(HUMAN, None, first_section(context, HUMAN), "gene",
                                                          "DRD1", None, None, None, context)
    vmin, vmax = context.gene_range(HUMAN, "DRD1")
    assert title == "Gene expression" and f"{vmax:.3g}" in info and high == f"{vmax:.3g}"


def test_tree_shows_top_level_collapsed(context):
    data = tree.TreeData(context)
    block = tree.tree_step(HUMAN, None, first_section(context, HUMAN), None, [], "", data)
    top = context.atlas.taxonomy(HUMAN).terms(context.atlas.taxonomy(HUMAN).levels[0])
    assert n_rows(block, "tree-row") == len(top)


def test_tree_expands_the_children_of_an_expanded_term(context):
    data = tree.TreeData(context)
    taxonomy = context.atlas.taxonomy(HUMAN)
    top = taxonomy.terms(taxonomy.levels[0])["name"].iloc[0]
    children = taxonomy.terms(taxonomy.levels[1])
    n_children = int((children["parent"] == top).sum())
    block = tree.tree_step(HUMAN, None, first_section(context, HUMAN), None,
                           [f"{taxonomy.levels[0]}|{top}"], "", data)
    assert n_rows(block, "tree-row") == len(taxonomy.terms(taxonomy.levels[0])) + n_children


def test_tree_search_lists_terms_of_every_level(context):
    data = tree.TreeData(context)
    block = tree.tree_step(HUMAN, None, first_section(context, HUMAN), None, [], "STR", data)
    expected = context.atlas.search_terms("STR", HUMAN, limit=tree.SEARCH_LIMIT)
    assert n_rows(block, "tree-row") == len(expected)
    assert {m["level"] for m in expected} <= {level for level in context.atlas.taxonomy(HUMAN).levels
                                              if f'level-chip">{level}<' in block.children}


def test_tree_click_highlights_and_second_click_clears(context):
    event = {"level": "Subclass", "name": "STR D1 MSN", "t": 1}
    term = tree.pick_step(ids.TERM_PICKED, event, None, None, HUMAN, None, None, "Class", None, context)
    assert term["name"] == "STR D1 MSN" and term["level"] == "Subclass"
    again = {**event, "t": 2}
    assert tree.pick_step(ids.TERM_PICKED, again, None, None, HUMAN, None, None, "Class", term, context) is None


@pytest.mark.parametrize("event", [None, {}, {"level": "Subclass"}, {"level": "Flavour", "name": "x"}])
def test_malformed_pick_events_change_nothing(context, event):
    assert tree.pick_step(ids.TERM_PICKED, event, None, None, HUMAN, None, None, "Class", None, context) is no_update


def test_clear_button_removes_the_highlight(context):
    term = {"level": "Class", "name": "Astro-Epen"}
    assert tree.pick_step(ids.CLEAR_TERM, None, None, None, HUMAN, None, None, "Class", term, context) is None


def test_map_click_highlights_the_clicked_cells_term(context):
    section = first_section(context, HUMAN)
    cells = context.atlas.cells(HUMAN, section=section)
    assigned = np.flatnonzero(np.asarray(cells["Class"].cat.codes) >= 0)
    row = int(assigned[0])
    name = str(cells["Class"].iat[row])
    if name in ("Adjacent", "unassigned"):
        pytest.skip("first assigned cell is not in the taxonomy")
    click = {"points": [], "xvals": [float(cells["x"].iat[row])], "yvals": [float(cells["y"].iat[row])]}
    term = tree.pick_step(ids.MAP_GRAPH, None, click, None, HUMAN, None, section, "Class", None, context)
    assert term == {"level": "Class", "name": name, "taxonomy": context.catalog.get(HUMAN).taxonomy}


def test_new_term_opens_its_ancestors(context):
    taxonomy = context.atlas.taxonomy(HUMAN)
    path = taxonomy.path("Cluster", "Human-143")
    expanded = tree.expanded_step(ids.TERM, None, HUMAN, {"level": "Cluster", "name": "Human-143"}, [], context)
    assert set(expanded) == {f"{level}|{name}" for level, name in path.items() if level != "Cluster"}


def test_caret_click_toggles_expansion(context):
    event = {"level": "Class", "name": "CN LGE GABA", "t": 1}
    opened = tree.expanded_step(ids.TREE_TOGGLED, event, HUMAN, None, [], context)
    assert opened == ["Class|CN LGE GABA"]
    assert tree.expanded_step(ids.TREE_TOGGLED, {**event, "t": 2}, HUMAN, None, opened, context) == []


def test_new_dataset_collapses_the_tree(context):
    assert tree.expanded_step(ids.DATASET, None, MARMOSET, None, ["Class|CN LGE GABA"], context) == []


# ---------------------------------------------------------------------------------------------- inspector
def test_hover_on_a_cell_shows_its_label_levels_and_gene(context):
    section = first_section(context, HUMAN)
    cells = context.atlas.cells(HUMAN, section=section)
    x, y = float(cells["x"].iat[3]), float(cells["y"].iat[3])
    info = inspector.nearest_cell_info(context, HUMAN, x, y, section=section, gene="DRD1")
    assert info["cell_label"] == str(cells["cell_label"].iat[3])
    assert [level for level, _, _ in info["levels"]] == context.atlas.taxonomy(HUMAN).levels
    expected = context.atlas.gene(HUMAN, "DRD1", section=section)[3]
    assert info["gene"][0] == "DRD1" and (info["gene"][1] is None) == bool(np.isnan(expected))
    children = inspector.inspect_step(ids.MAP_GRAPH, {"points": [], "xvals": [x], "yvals": [y]}, None, HUMAN, None,
                                      section, "DRD1", None, context)
    assert str(cells["cell_label"].iat[3]) in str(children)


def test_hover_far_from_cells_says_nothing_is_there(context):
    section = first_section(context, HUMAN)
    children = inspector.inspect_step(ids.MAP_GRAPH, {"points": [], "xvals": [500.0], "yvals": [500.0]}, None,
                                      HUMAN, None, section, None, {"x0": 0, "x1": 10, "y0": 0, "y1": 10}, context)
    assert "No cell under the cursor" in str(children)


def test_event_position_reads_cursor_or_point():
    assert inspector.event_position({"points": [], "xvals": [1], "yvals": [2]}) == (1.0, 2.0)
    assert inspector.event_position({"points": [{"x": 3, "y": 4}]}) == (3.0, 4.0)
    assert inspector.event_position({"points": []}) is None
