"""The map card's view in the address (``view=species|gallery``, ``sections=`` of the side by side): parsing and
writing in the URL state (``core.state``), bad values as notices, the address written from the view-mode
radio and the side-by-side dropdowns (``callbacks.navigation``), read back into them (``callbacks.compare``), and
short links carrying it.

``sections`` has the format of the export route's ``sections`` (``core.requests.panel_request``): one
label per side-by-side dataset, comma-separated, empty = its first section.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from dash import no_update

from callbacks import compare, navigation
from core.context import ViewerContext
from components import ids
from core.catalog import Catalog
from core.requests import panel_request
from core.errors import ViewError
from core.state import strict_view
from core.state import (ViewState, canonical_species_sections, map_view_of, parse_query,
                              side_by_side_datasets, to_query)
from settings import Settings
from viewer_catalog import gene_lookup, make_catalog, term_lookup

CATALOG = make_catalog()  # side by side: HUMAN (H.S1, H.S2 | H.S3) and MARMOSET (M.S1); TENX and WMB: no sections


def parse(search, catalog=CATALOG):
    return parse_query(search, catalog, gene_lookup=gene_lookup, term_lookup=term_lookup)


def query_of(search):
    return {key: values[-1] for key, values in parse_qs(search.lstrip("?"), keep_blank_values=True).items()}


def human(**changes):
    return ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S2", color_by="Class").replace(**changes)


# ---------------------------------------------------------------------------------------------- the URL state
def test_the_side_by_side_datasets_are_the_first_dataset_of_sections_of_each_species():
    assert side_by_side_datasets(CATALOG) == ["HUMAN", "MARMOSET"]
    assert side_by_side_datasets(CATALOG, limit=1) == ["HUMAN"]


@pytest.mark.parametrize("state", [human(map_view="gallery"), human(map_view="species"),
                                   human(map_view="species", species_sections=("H.S3",)),
                                   human(map_view="species", zoom_together=False)],
                         ids=["gallery", "species", "species-with-sections", "species-zoomed-alone"])
def test_the_map_cards_view_round_trips_through_the_address(state):
    parsed, notices = parse(to_query(state))
    assert notices == []
    assert parsed == state


def test_the_address_names_the_view_and_the_sections_that_are_not_the_first():
    assert query_of(to_query(human(map_view="species", species_sections=("H.S3",)))) == {
        "dataset": "HUMAN", "section": "H.S2", "color_by": "Class", "view": "species", "sections": "H.S3"}
    assert query_of(to_query(human(map_view="gallery")))["view"] == "gallery"
    single = query_of(to_query(human()))
    assert "view" not in single and "sections" not in single


def test_the_view_comes_after_a_selection_in_the_address():
    from core.state import ViewSelection

    state = human(map_view="species", selection=ViewSelection("map", "box", (1.0, 2.0), (3.0, 4.0)))
    assert list(query_of(to_query(state)))[-3:] == ["sel_view", "sel", "view"]
    assert parse(to_query(state))[0] == state


@pytest.mark.parametrize("text", ["", ",", "H.S1", "H.S1,M.S1", " H.S1 , "])
def test_first_sections_are_canonical_empty_entries(text):
    state, notices = parse(f"?dataset=HUMAN&view=species&sections={text}")
    assert notices == []
    assert state.map_view == "species" and state.species_sections == ()
    assert "sections" not in query_of(to_query(state))


def test_a_later_species_keeps_its_slot_behind_an_empty_entry():
    macaque = dataclasses.replace(CATALOG.get("HUMAN"), name="MACAQUE", species="Macaque")
    catalog = Catalog({**CATALOG.datasets, "MACAQUE": macaque})
    assert side_by_side_datasets(catalog) == ["HUMAN", "MARMOSET", "MACAQUE"]
    state, notices = parse("?dataset=HUMAN&view=species&sections=,,H.S2", catalog)
    assert notices == [] and state.species_sections == (None, None, "H.S2")
    assert query_of(to_query(state))["sections"] == ",,H.S2"


def test_the_view_name_is_read_in_any_case():
    state, notices = parse("?dataset=HUMAN&view=Gallery")
    assert notices == [] and state.map_view == "gallery"
    state, notices = parse("?dataset=HUMAN&view=map")
    assert notices == [] and state.map_view == "map"


def test_an_unknown_view_is_a_notice_and_the_map_is_shown():
    state, notices = parse("?dataset=HUMAN&section=H.S2&color_by=Class&view=tree")
    assert [n.parameter for n in notices] == ["view"] and "'tree'" in notices[0] and "showing the map" in notices[0]
    assert state == human()


def test_a_gallery_of_a_dataset_without_sections_is_a_notice():
    state, notices = parse("?dataset=TENX&view=gallery")
    assert state.dataset == "TENX" and state.map_view == "map"
    assert [n.parameter for n in notices] == ["view"] and "TENX has no sections" in notices[0]


def test_a_side_by_side_in_a_store_without_sections_is_a_notice():
    catalog = Catalog({"TENX": CATALOG.get("TENX")})
    state, notices = parse("?dataset=TENX&view=species", catalog)
    assert state.map_view == "map" and [n.parameter for n in notices] == ["view"]


def test_an_unknown_section_of_one_species_is_a_notice_and_the_others_stay():
    state, notices = parse("?dataset=HUMAN&view=species&sections=H.S3,NOPE")
    assert state.species_sections == ("H.S3",)
    assert [n.parameter for n in notices] == ["sections"]
    assert "'NOPE'" in notices[0] and "MARMOSET" in notices[0] and "M.S1" in notices[0]


def test_a_section_of_another_species_is_not_one_of_this_slots():
    state, notices = parse("?dataset=HUMAN&view=species&sections=M.S1")
    assert state.species_sections == () and [n.parameter for n in notices] == ["sections"]
    assert "of HUMAN" in notices[0]


def test_more_sections_than_species_is_a_notice_and_the_extra_ones_are_dropped():
    state, notices = parse("?dataset=HUMAN&view=species&sections=H.S2,M.S1,X.S9")
    assert state.species_sections == ("H.S2",)
    assert [n.parameter for n in notices] == ["sections"] and "3 sections for 2" in notices[0]


def test_sections_without_the_side_by_side_are_a_notice_and_ignored():
    for view in ("", "&view=gallery"):
        state, notices = parse(f"?dataset=HUMAN{view}&sections=H.S2")
        assert state.species_sections == () and [n.parameter for n in notices] == ["sections"]


def test_zoom_together_is_written_only_when_unticked_and_a_bad_value_is_a_notice():
    assert "zoom_together" not in query_of(to_query(human(map_view="species")))
    assert query_of(to_query(human(map_view="species", zoom_together=False)))["zoom_together"] == "0"
    assert "zoom_together" not in query_of(to_query(human(map_view="gallery", zoom_together=False)))
    assert parse("?dataset=HUMAN&view=species&zoom_together=1")[0].zoom_together is True
    state, notices = parse("?dataset=HUMAN&view=species&zoom_together=yes")
    assert state.zoom_together is True and [n.parameter for n in notices] == ["zoom_together"]
    state, notices = parse("?dataset=HUMAN&zoom_together=0")
    assert state.zoom_together is True and [n.parameter for n in notices] == ["zoom_together"]


def test_the_address_sections_are_those_the_export_route_reads():
    state = human(map_view="species", species_sections=("H.S3",))
    value = query_of(to_query(state))["sections"]
    request = panel_request({"panels": "species", "sections": value}, CATALOG, state, side_by_side_datasets(CATALOG))
    assert request.sections == ("H.S3",)


def test_the_http_api_refuses_the_address_bar_view_parameters():
    # the routes draw one view, or take panels= and sections= together: an ignored view= would be a silent surprise
    for key, value in (("view", "species"), ("sections", "H.S2"), ("zoom_together", "0")):
        with pytest.raises(ViewError) as raised:
            strict_view({"dataset": "HUMAN", key: value}, CATALOG, gene_lookup=gene_lookup, term_lookup=term_lookup)
        assert raised.value.parameter == key


def test_what_the_map_card_shows_is_written_by_the_address_rules():
    assert map_view_of(CATALOG, "HUMAN", "species", ["H.S1", "M.S1", None]) == ("species", ())
    assert map_view_of(CATALOG, "HUMAN", "species", ["H.S2", None]) == ("species", ("H.S2",))
    assert map_view_of(CATALOG, "TENX", "gallery", []) == ("map", ())  # an empty gallery is not a view to share
    assert map_view_of(CATALOG, "HUMAN", "gallery", ["H.S2"]) == ("gallery", ())
    assert map_view_of(CATALOG, "HUMAN", None, ["H.S2"]) == ("map", ())
    assert canonical_species_sections(CATALOG, ["NOPE", "M.S1"]) == ()


# ---------------------------------------------------------------------------------------------- callbacks
@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("view-mode-url") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    datasets = compare.compare_datasets(context)
    sections = [atlas.sections(d)["brain_section_label"].astype(str).tolist() for d in datasets]
    dataset = datasets[0]
    plane = context.catalog.get(dataset).sections[sections[0][0]].slab_plane
    return SimpleNamespace(atlas=atlas, context=context, datasets=datasets, sections=sections, dataset=dataset,
                           plane=plane, store_dir=store)


def control_values(demo, mode="map", slots=(None, None, None), **more):
    values = {ids.DATASET: demo.dataset, ids.SLAB_PLANE: demo.plane, ids.SECTION: demo.sections[0][0],
              ids.COLOR_BY: "Subclass", ids.GENE: None, ids.TERM: None, ids.VIEWPORT: None, ids.GENE_VMIN: None,
              ids.GENE_VMAX: None, ids.SELECTION: None, ids.MAP_VIEW_MODE: mode,
              **{ids.compare_section(slot): value for slot, value in enumerate(slots)}}
    values.update(more)
    return values


def firsts(demo):
    return [sections[0] for sections in demo.sections]


def test_a_side_by_side_address_sets_the_mode_and_each_species_section_on_a_fresh_page(demo):
    chosen = [demo.sections[0][1], demo.sections[1][0], demo.sections[2][2]]
    search = navigation.url_query(control_values(demo, "species", chosen), demo.context)["query"]
    assert query_of(search)["view"] == "species"
    assert query_of(search)["sections"] == f"{chosen[0]},,{chosen[2]}"  # the second is its first section
    mode, options, values = compare.address_view_step(search, "map", [None, None, None], demo.context)
    assert mode == "species" and values == chosen
    for slot, dataset in enumerate(demo.datasets):
        assert [o["value"] for o in options[slot]] == demo.sections[slot]  # every value has its option


def test_a_gallery_address_sets_the_mode_and_leaves_the_dropdowns_alone(demo):
    search = navigation.url_query(control_values(demo, "gallery"), demo.context)["query"]
    assert query_of(search)["view"] == "gallery"
    assert compare.address_view_step(search, "map", [None] * 3, demo.context) == (
        "gallery", [no_update] * 3, [no_update] * 3)


def test_an_address_equal_to_the_view_changes_no_control(demo):
    chosen = [demo.sections[0][1], *firsts(demo)[1:]]
    search = navigation.url_query(control_values(demo, "species", chosen), demo.context)["query"]
    assert compare.address_view_step(search, "species", chosen, demo.context) == (
        no_update, [no_update] * 3, [no_update] * 3)


def test_back_to_the_default_sections_of_the_side_by_side_sets_the_first_ones(demo):
    chosen = [demo.sections[0][1], *firsts(demo)[1:]]
    search = navigation.url_query(control_values(demo, "species", firsts(demo)), demo.context)["query"]
    assert "sections" not in query_of(search)
    mode, options, values = compare.address_view_step(search, "species", chosen, demo.context)
    assert mode is no_update and values == [demo.sections[0][0], no_update, no_update]
    assert options[0] != no_update and options[1:] == [no_update, no_update]


def test_back_to_a_single_map_address_sets_the_map_and_keeps_the_sections_chosen(demo):
    search = navigation.url_query(control_values(demo), demo.context)["query"]
    chosen = [demo.sections[0][1], *firsts(demo)[1:]]
    assert compare.address_view_step(search, "species", chosen, demo.context) == (
        "map", [no_update] * 3, [no_update] * 3)


def test_a_mode_change_adds_a_history_entry_and_the_dropdowns_filling_in_leave_it(demo):
    before = navigation.url_write(control_values(demo), demo.context, [ids.SECTION], None)
    pushed = navigation.url_write(control_values(demo, "species"), demo.context, [ids.MAP_VIEW_MODE], before)
    assert pushed["replace"] is False and query_of(pushed["query"])["view"] == "species"
    # the side by side then fills its dropdowns with the first sections: the same address, not written again
    filled = control_values(demo, "species", firsts(demo))
    triggered = [ids.compare_section(slot) for slot in range(3)]
    assert navigation.url_write(filled, demo.context, triggered, pushed) is no_update


def test_a_section_chosen_in_the_side_by_side_adds_a_history_entry(demo):
    shown = navigation.url_query(control_values(demo, "species", firsts(demo)), demo.context)
    chosen = [firsts(demo)[0], demo.sections[1][1], firsts(demo)[2]]
    pushed = navigation.url_write(control_values(demo, "species", chosen), demo.context, [ids.compare_section(1)],
                                  shown)
    assert pushed["replace"] is False and query_of(pushed["query"])["sections"] == f",{chosen[1]}"


def test_the_sections_of_a_hidden_side_by_side_are_not_in_the_address(demo):
    chosen = [demo.sections[0][1], None, None]
    for mode in ("map", "gallery"):
        assert "sections" not in query_of(navigation.url_query(control_values(demo, mode, chosen),
                                                               demo.context)["query"])


def test_unticking_zoom_together_is_in_the_address_and_sets_the_checklist_back(demo):
    unticked = control_values(demo, "species", **{ids.COMPARE_TOGETHER: []})
    written = navigation.url_write(unticked, demo.context, [ids.COMPARE_TOGETHER], None)
    assert query_of(written["query"])["zoom_together"] == "0" and written["replace"] is True
    assert compare.address_together_step(written["query"], ["on"], demo.context) == []
    assert compare.address_together_step(written["query"], [], demo.context) is no_update
    ticked = navigation.url_query(control_values(demo, "species", **{ids.COMPARE_TOGETHER: ["on"]}),
                                  demo.context)["query"]
    assert "zoom_together" not in query_of(ticked)
    assert compare.address_together_step(ticked, [], demo.context) == ["on"]
    # not the side by side: the checklist is left alone
    single = navigation.url_query(control_values(demo, "map", **{ids.COMPARE_TOGETHER: []}), demo.context)["query"]
    assert "zoom_together" not in query_of(single)
    assert compare.address_together_step(single, [], demo.context) is no_update


def test_a_bad_view_in_the_address_is_shown_as_a_notice(demo):
    outputs = navigation.selection_step(None, {}, demo.context, search=f"?dataset={demo.dataset}&view=tree")
    names = [f"{o.component_id}.{o.component_property}" for o in navigation.SELECTION_OUTPUTS]
    notice = outputs[names.index(f"{ids.NOTICE_VIEW}.children")]
    assert "Unknown view 'tree'" in str(notice)
    assert compare.address_view_step(f"?dataset={demo.dataset}&view=tree", "gallery", [None] * 3,
                                     demo.context)[0] == "map"


def test_a_short_link_carries_the_view_mode_and_the_side_by_side_sections(demo):
    from app import create_app
    from callbacks.export_panel import share_step

    app = create_app(Settings(store=demo.store_dir), atlas=demo.atlas)
    chosen = [demo.sections[0][2], demo.sections[1][1], firsts(demo)[2]]
    values = {**control_values(demo, "species", chosen), ids.UMAP_VIEWPORT: None, ids.COMPARE_TOGETHER: []}
    made = share_step(values, 1, demo.context, app.server.extensions["atlas_viewer_shares"])
    response = app.server.test_client().get(made["path"])
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"]).query
    mode, _, values = compare.address_view_step(target, "map", [None] * 3, demo.context)
    assert mode == "species" and values == chosen
    assert compare.address_together_step(target, ["on"], demo.context) == []


def test_the_address_callbacks_are_wired_to_the_view_mode_and_the_dropdowns(demo):
    from app import create_app

    app = create_app(Settings(store=demo.store_dir), atlas=demo.atlas)
    wiring = {key: ([i["id"] for i in spec["inputs"]], [s["id"] for s in spec["state"]])
              for key, spec in app.callback_map.items()}
    writer = next(inputs for key, (inputs, _) in wiring.items() if key.startswith(f"{ids.URL_QUERY}.data"))
    assert ids.MAP_VIEW_MODE in writer and all(ids.compare_section(s) in writer for s in range(ids.COMPARE_SLOTS))
    reader = [key for key, (inputs, _) in wiring.items() if inputs == [ids.URL] and ids.MAP_VIEW_MODE in key]
    assert len(reader) == 1
    share = next(states for key, (_, states) in wiring.items() if key.startswith(f"{ids.SHARE_LINK}.data"))
    assert ids.MAP_VIEW_MODE in share and ids.compare_section(0) in share
