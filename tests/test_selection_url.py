"""The box/lasso selection in the address bar (``sel_view``, ``sel``): parsing and writing in the URL state
(``core.state``), bad values as notices, the navigation callback restoring the selection store in the same
answer as its section, the address written back, and short links carrying the selection.

The geometry in the address is the one picture and export URLs carry (``selection_geometry.selection_param``).
"""
from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest
from dash import no_update

from callbacks import navigation
from callbacks import selection as sel
from core.context import ViewerContext
from components import ids
from core.errors import ViewError
from core.state import strict_view
from core.selection import MAX_LASSO_VERTICES, MAX_SELECTION_VERTICES, selection_param
from core.state import ViewSelection, ViewState, parse_query, to_query
from settings import Settings
from viewer_catalog import gene_lookup, make_catalog, term_lookup

CATALOG = make_catalog()
LASSO = ViewSelection("map", "lasso", (1.5, 6.25, 4.0), (0.5, 1.0, 5.5))
BOX = ViewSelection("map", "box", (1.0, 4.0), (0.5, 2.5))


def parse(search):
    return parse_query(search, CATALOG, gene_lookup=gene_lookup, term_lookup=term_lookup)


def query_of(search):
    return {key: values[-1] for key, values in parse_qs(search.lstrip("?")).items()}


# ---------------------------------------------------------------------------------------------- the URL state
@pytest.mark.parametrize("selection", [LASSO, BOX], ids=["lasso", "box"])
def test_a_map_selection_round_trips_through_the_address(selection):
    state = ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S2", color_by="Class",
                      selection=selection)
    parsed, notices = parse(to_query(state))
    assert notices == []
    assert parsed == state


def test_the_address_carries_the_geometry_in_the_picture_urls_encoding():
    state = ViewState(dataset="HUMAN", section="H.S2", slab_plane="H.Plane.01", color_by="Class", selection=LASSO)
    query = query_of(to_query(state))
    assert query["sel_view"] == "map"
    assert query["sel"] == selection_param(LASSO.geometry()) == "1.5,0.5,6.25,1,4,5.5"
    box = query_of(to_query(state.replace(selection=BOX)))["sel"]
    assert box == selection_param(BOX.geometry()) == "1,4,0.5,2.5"  # 4 numbers: a box


def test_no_selection_writes_no_selection_parameters():
    query = query_of(to_query(ViewState(dataset="HUMAN", section="H.S1", color_by="Class")))
    assert "sel" not in query and "sel_view" not in query


def test_a_selection_without_sel_view_belongs_to_the_map():
    state, notices = parse("?dataset=HUMAN&section=H.S1&sel=1,2,3,4")
    assert notices == []
    assert state.selection == ViewSelection("map", "box", (1.0, 2.0), (3.0, 4.0))


def test_a_umap_selection_beside_a_spatial_dataset_is_kept():
    state, notices = parse("?dataset=HUMAN&section=H.S3&sel_view=umap&sel=-1,0,2,0,0,3")
    assert notices == []
    assert state.selection == ViewSelection("umap", "lasso", (-1.0, 2.0, 0.0), (0.0, 0.0, 3.0))
    assert state.section == "H.S3"


def test_a_umap_selection_where_no_umap_is_beside_the_map_is_a_notice():
    for dataset in ("TENX", "WMB"):  # single-cell datasets: their UMAP is the map itself
        state, notices = parse(f"?dataset={dataset}&sel_view=umap&sel=1,2,3,4")
        assert state.selection is None and state.dataset == dataset
        assert [n.parameter for n in notices] == ["sel_view"] and "no UMAP beside it" in notices[0]


def test_a_map_selection_of_a_single_cell_dataset_is_kept():
    state, notices = parse("?dataset=WMB&color_by=class&sel=-1,1,-2,2")
    assert notices == [] and state.selection == ViewSelection("map", "box", (-1.0, 1.0), (-2.0, 2.0))


@pytest.mark.parametrize("bad", ["1,2,x,4", "1,nan,3,4", "2,1,3,4", "1,2,3,4,5", "1,2,3,4,5,6,7", "1,2",
                                 "0,0,1,1,0,0"])
def test_a_bad_selection_becomes_a_notice_and_the_rest_of_the_view_stays(bad):
    state, notices = parse(f"?dataset=HUMAN&section=H.S2&color_by=Class&sel_view=map&{urlencode({'sel': bad})}")
    assert state.selection is None
    assert [n.parameter for n in notices] == ["sel"] and "nothing selected" in notices[0]
    assert (state.dataset, state.section, state.color_by) == ("HUMAN", "H.S2", "Class")


def test_too_many_lasso_vertices_is_a_notice():
    numbers = ",".join(["1,2"] * (MAX_SELECTION_VERTICES + 1))
    state, notices = parse(f"?dataset=HUMAN&sel={numbers}")
    assert state.selection is None and notices[0].parameter == "sel" and "vertices" in notices[0]


def test_an_unknown_selection_view_is_a_notice():
    state, notices = parse("?dataset=HUMAN&sel_view=tree&sel=1,2,3,4")
    assert state.selection is None
    assert [n.parameter for n in notices] == ["sel_view"] and "'tree'" in notices[0]


def test_a_selection_view_without_a_selection_is_a_notice():
    state, notices = parse("?dataset=HUMAN&sel_view=map")
    assert state.selection is None and [n.parameter for n in notices] == ["sel_view"]


def test_a_map_selection_of_a_section_that_is_not_shown_is_dropped():
    state, notices = parse("?dataset=HUMAN&section=NOPE&sel=1,2,3,4")
    assert state.section is None  # the fallback (the whole first slab plane) is another place: not drawn there
    assert state.selection is None
    assert [n.parameter for n in notices] == ["section", "sel"]
    state, notices = parse("?dataset=NOPE&sel=1,2,3,4")
    assert state.selection is None and [n.parameter for n in notices] == ["dataset", "sel"]
    state, notices = parse("?dataset=HUMAN&slab_plane=NOPE&sel=1,2,3,4")
    assert state.selection is None and [n.parameter for n in notices] == ["slab_plane", "sel"]


def test_a_umap_selection_survives_an_unknown_section_but_not_an_unknown_dataset():
    state, notices = parse("?dataset=HUMAN&section=NOPE&sel_view=umap&sel=1,2,3,4")
    assert state.selection == ViewSelection("umap", "box", (1.0, 2.0), (3.0, 4.0))
    assert [n.parameter for n in notices] == ["section"]
    state, notices = parse("?dataset=NOPE&sel_view=umap&sel=1,2,3,4")
    assert state.selection is None and [n.parameter for n in notices] == ["dataset", "sel"]


def test_a_hand_written_lasso_is_compacted_like_a_drawn_one():
    angles = np.linspace(0, 2 * np.pi, 600, endpoint=False)
    numbers = ",".join(f"{4 + 2 * np.cos(a):.9f},{3 + 2 * np.sin(a):.9f}" for a in angles)
    state, notices = parse(f"?dataset=HUMAN&sel={numbers}")
    assert notices == []
    assert 3 <= len(state.selection.xs) <= MAX_LASSO_VERTICES
    again, _ = parse(to_query(state))
    assert again.selection == state.selection  # the compact form is a fixed point


def test_the_http_api_refuses_the_address_bar_selection_parameter():
    # the routes take their own ``selection=``; an ignored ``sel`` would be a silent surprise
    with pytest.raises(ViewError) as raised:
        strict_view({"dataset": "HUMAN", "sel": "1,2,3,4"}, CATALOG, gene_lookup=gene_lookup,
                    term_lookup=term_lookup)
    assert raised.value.parameter == "sel"


# ---------------------------------------------------------------------------------------------- callbacks
@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("selection-url") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    sections = atlas.sections(dataset)["brain_section_label"].astype(str).tolist()
    section = sections[1]
    cells = atlas.cells(dataset, section=section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    lasso = {"points": [], "lassoPoints": {"x": [cx - 1.5, cx + 1.5, cx + 0.3, cx - 0.2],
                                           "y": [cy - 1.0, cy - 1.0, cy + 1.5, cy + 0.2]}}
    plane = context.catalog.get(dataset).sections[section].slab_plane
    return SimpleNamespace(atlas=atlas, context=context, dataset=dataset, section=section, other=sections[0],
                           plane=plane, lasso=lasso, store_dir=store)


def control_values(demo, section=None, selection=None, **more):
    values = {ids.DATASET: demo.dataset, ids.SLAB_PLANE: demo.plane, ids.SECTION: section or demo.section,
              ids.COLOR_BY: "Subclass", ids.GENE: None, ids.TERM: None, ids.VIEWPORT: None, ids.GENE_VMIN: None,
              ids.GENE_VMAX: None, ids.SELECTION: selection}
    values.update(more)
    return values


def output(outputs, component, prop="data"):
    names = [f"{o.component_id}.{o.component_property}" for o in navigation.SELECTION_OUTPUTS]
    return outputs[names.index(f"{component}.{prop}")]


def drawn(demo):
    """The selection store of a lasso drawn on the map (what ``select_on_map`` stores)."""
    return sel.selection_step(demo.lasso, "map", demo.dataset, demo.plane, demo.section, None, demo.context)


def test_the_written_address_restores_the_same_selection_store_with_its_section(demo):
    store = drawn(demo)
    written = navigation.url_query(control_values(demo, selection=store), demo.context, only_viewport=True)
    assert written["replace"] is True
    assert query_of(written["query"])["sel"] == selection_param(store)
    # a fresh page: empty controls, the address read on load
    empty = {key: None for key in control_values(demo)}
    outputs = navigation.selection_step(None, empty, demo.context, search=written["query"])
    assert output(outputs, ids.SELECTION) == store
    assert output(outputs, ids.SECTION, "value") == demo.section  # in the same answer: the clearing keeps it
    assert sel.applies(store, demo.dataset, demo.plane, demo.section, demo.context)
    assert output(outputs, ids.NOTICE_VIEW, "children") == []


def test_the_restored_selection_counts_the_same_cells(demo):
    store = drawn(demo)
    search = navigation.url_query(control_values(demo, selection=store), demo.context)["query"]
    restored = output(navigation.selection_step(None, {}, demo.context, search=search), ids.SELECTION)
    original_text, _ = sel.summary_step(store, "Subclass", demo.dataset, demo.plane, demo.section,
                                        sel.SelectedCells(demo.context))
    restored_text, figure = sel.summary_step(restored, "Subclass", demo.dataset, demo.plane, demo.section,
                                             sel.SelectedCells(demo.context))
    assert restored_text == original_text and " 0 cells" not in restored_text
    assert sum(figure["data"][0]["x"]) == int(restored_text.split(" cells")[0].replace(",", ""))


def test_an_address_equal_to_the_view_leaves_the_selection_alone(demo):
    store = drawn(demo)
    values = control_values(demo, selection=store)
    search = navigation.url_query(values, demo.context)["query"]
    outputs = navigation.selection_step(ids.URL, values, demo.context, search=search)
    assert output(outputs, ids.SELECTION) is no_update


def test_back_to_an_address_without_a_selection_clears_it(demo):
    values = control_values(demo, selection=drawn(demo))
    search = navigation.url_query(control_values(demo), demo.context)["query"]
    outputs = navigation.selection_step(ids.URL, values, demo.context, search=search)
    assert output(outputs, ids.SELECTION) is None


def test_a_control_change_does_not_touch_the_selection_store(demo):
    outputs = navigation.selection_step(ids.COLOR_BY, control_values(demo, selection=drawn(demo)), demo.context)
    assert output(outputs, ids.SELECTION) is no_update


def test_the_address_drops_a_selection_of_another_section(demo):
    # between the section change and the clearing callback, the store still holds the old section's selection
    values = control_values(demo, section=demo.other, selection=drawn(demo))
    assert "sel" not in query_of(navigation.url_query(values, demo.context)["query"])


def test_a_umap_selection_round_trips_through_the_address(demo):
    umap = demo.context.umap_dataset(demo.dataset)
    cells = demo.atlas.cells(umap)
    x0, x1 = np.percentile(cells["x"], [40, 60])
    y0, y1 = np.percentile(cells["y"], [40, 60])
    store = sel.selection_step({"range": {"x": [x0, x1], "y": [y0, y1]}}, "umap", demo.dataset, demo.plane,
                               demo.section, None, demo.context)
    search = navigation.url_query(control_values(demo, selection=store), demo.context)["query"]
    assert query_of(search)["sel_view"] == "umap"
    assert output(navigation.selection_step(None, {}, demo.context, search=search), ids.SELECTION) == store


def test_a_short_link_carries_the_selection(demo):
    from app import create_app
    from callbacks.export_panel import share_step

    store = drawn(demo)
    app = create_app(Settings(store=demo.store_dir), atlas=demo.atlas)
    values = {**control_values(demo, selection=store), ids.UMAP_VIEWPORT: None}
    made = share_step(values, 1, demo.context, app.server.extensions["atlas_viewer_shares"])
    response = app.server.test_client().get(made["path"])
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"]).query
    restored = output(navigation.selection_step(None, {}, demo.context, search=target), ids.SELECTION)
    assert restored == store


def test_a_selection_alone_replaces_the_history_entry_but_a_section_change_with_it_adds_one():
    assert navigation.replaces_history([ids.SELECTION]) is True
    assert navigation.replaces_history([ids.VIEWPORT, ids.SELECTION]) is True
    # one write for the new section and the clearing of the old section's selection: back must find the old one
    assert navigation.replaces_history([ids.SELECTION, ids.SECTION]) is False
    assert navigation.replaces_history([]) is False


def test_clearing_the_old_sections_selection_does_not_rewrite_the_new_sections_address(demo):
    after_move = control_values(demo, section=demo.other, selection=drawn(demo))
    pushed = navigation.url_write(after_move, demo.context, [ids.SECTION], None)
    assert pushed["replace"] is False and "sel" not in query_of(pushed["query"])
    cleared = control_values(demo, section=demo.other, selection=None)
    assert navigation.url_write(cleared, demo.context, [ids.SELECTION], pushed) is no_update
    # a selection drawn there is a new address, replacing the entry
    drawn_there = sel.selection_step(demo.lasso, "map", demo.dataset, demo.plane, demo.other, None, demo.context)
    replaced = navigation.url_write(control_values(demo, section=demo.other, selection=drawn_there), demo.context,
                                    [ids.SELECTION], pushed)
    assert replaced["replace"] is True and "sel" in query_of(replaced["query"])
