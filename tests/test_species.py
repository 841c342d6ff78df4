"""One cell type across species on the demo store: the term's annotation as the release gives it (prepared from
``abbreviation_term`` and ``cluster_annotation_to_abbreviation_map``), its share of cells, its regions and its
conserved markers in each species' cells (``data_layer.species``), checked against the cell tables and the
expression read cell by cell; ``across=1`` in the address (``core.state``); the panel's callback steps
(``callbacks.species``)."""
from __future__ import annotations

import io
from types import SimpleNamespace
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
from dash import no_update

from callbacks import navigation, species as species_callbacks
from components import ids
from core.context import ViewerContext
from core.errors import ViewError
from core.species import across_species
from core.state import parse_query, to_query
from data_layer.species import (conserved_markers, region_column, species_cells, species_dot_plot, term_regions,
                                term_share)
from data_layer.tables import TableError
from data_layer.taxonomy import read_abbreviations, read_taxonomy
from settings import Settings

D1, LEVEL = "STR D1 MSN", "Subclass"
TAXONOMY = "HMBA-BG-taxonomy-CCN20250428"


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("species") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    tenx = next(d for d in atlas.datasets() if atlas.info(d).kind == "umap" and not atlas.info(d).species
                and "species" in atlas.categorical_columns(d))
    return SimpleNamespace(atlas=atlas, context=context, spatial=spatial, tenx=tenx,
                           parts=species_cells(atlas, context.catalog.species_datasets(atlas.info(spatial[0]).taxonomy)))


def taxonomy_files(cache, name=TAXONOMY):
    folder = next(p for p in cache.rglob("cluster_annotation_term.csv") if name in str(p)).parent
    return {p.stem: p for p in folder.glob("*.csv")}


# ---------------------------------------------------------------------------------------------- annotation
def test_the_prepared_term_spells_out_its_abbreviations_with_their_ontology_ids(demo, demo_cache):
    annotation = demo.atlas.taxonomy(demo.spatial[0]).annotation(LEVEL, D1)
    assert list(annotation.columns) == ["abbreviation", "meaning", "type", "primary_identifier",
                                        "secondary_identifier"]
    spelled = annotation.set_index("abbreviation")
    assert spelled.loc["STR", "meaning"] == "striatum" and spelled.loc["STR", "primary_identifier"] == "DHBA:10333"
    assert spelled.loc["MSN", "meaning"] == "medium spiny neuron"
    assert spelled.loc["MSN", "primary_identifier"] == "CL:1001474"
    # exactly the release's rows for this term, in its order
    files = taxonomy_files(demo_cache)
    terms = pd.read_csv(files["cluster_annotation_term"], dtype=str)
    label = terms.loc[(terms["name"] == D1) & (terms["cluster_annotation_term_set_name"] == LEVEL), "label"].item()
    mapping = pd.read_csv(files["cluster_annotation_to_abbreviation_map"], dtype=str)
    assert list(annotation["abbreviation"]) == list(mapping.loc[mapping["cluster_annotation_term_label"] == label,
                                                                "abbreviation_term"])


def test_a_term_without_abbreviations_and_a_release_without_the_tables_give_no_annotation(demo, demo_cache):
    tax = demo.atlas.taxonomy(demo.spatial[0])
    cluster = tax.terms(tax.levels[-1])["name"].iloc[0]  # cluster names are aliases: nothing to spell out
    assert tax.annotation(tax.levels[-1], cluster).empty
    files = {k: v for k, v in taxonomy_files(demo_cache).items() if "abbreviation" not in k}
    tables = read_taxonomy(TAXONOMY, files)
    assert tables.abbreviations is None
    with pytest.raises(KeyError):
        tax.annotation(LEVEL, "no such term")


def test_an_abbreviation_table_missing_a_column_is_named_and_the_taxonomy_still_prepares(demo_cache, tmp_path,
                                                                                          caplog):
    files = dict(taxonomy_files(demo_cache))
    broken = tmp_path / "abbreviation_term.csv"
    pd.read_csv(files["abbreviation_term"], dtype=str).drop(columns=["abbreviation_meaning"]).to_csv(broken,
                                                                                                    index=False)
    with pytest.raises(TableError, match="abbreviation_meaning"):
        read_abbreviations(broken, files["cluster_annotation_to_abbreviation_map"], set())
    files["abbreviation_term"] = broken
    tables = read_taxonomy(TAXONOMY, files)
    assert tables.abbreviations is None and tables.n_terms(0) > 0
    assert "abbreviation_meaning" in caplog.text and str(broken) in caplog.text


def test_the_taxonomy_unit_round_trips_its_abbreviations(demo_cache, tmp_path):
    from data_layer.taxonomy import TaxonomyTables

    tables = read_taxonomy(TAXONOMY, taxonomy_files(demo_cache))
    tables.write(tmp_path / "unit")
    back = TaxonomyTables.load(tmp_path / "unit")
    pd.testing.assert_frame_equal(back.abbreviations, tables.abbreviations)


# ---------------------------------------------------------------------------------------------- numbers per species
def test_the_species_cells_are_each_species_dataset_of_sections_then_each_species_of_the_10x(demo):
    labels = [(p.dataset, p.species, p.species_value) for p in demo.parts]
    first_of_species: dict = {}
    for d in demo.spatial:
        first_of_species.setdefault(demo.atlas.info(d).species, d)
    spatial = [(d, s, None) for s, d in first_of_species.items()]
    assert labels[:len(spatial)] == spatial and len(spatial) == 3
    tenx_species = set(demo.atlas.cells(demo.tenx)["species"].astype(str)) - {"unknown"}
    assert {(d, v) for d, _, v in labels[len(spatial):]} == {(demo.tenx, s) for s in tenx_species}


def test_the_share_counts_the_terms_cells_of_each_species(demo):
    share = term_share(demo.atlas, demo.parts, LEVEL, D1)
    for part, row in zip(demo.parts, share.itertuples()):
        cells = demo.atlas.cells(part.dataset)
        if part.species_value is not None:
            cells = cells[cells["species"].astype(str) == part.species_value]
        n_term = int((cells[LEVEL].astype(str) == D1).sum())
        assert (row.n_term, row.n_cells) == (n_term, len(cells)) and n_term > 0
        assert row.share == pytest.approx(n_term / len(cells))


def test_the_regions_count_the_terms_cells_per_region_in_each_species(demo):
    regions = term_regions(demo.atlas, demo.parts, LEVEL, D1)
    for part in demo.parts:
        cells = demo.atlas.cells(part.dataset)
        if part.species_value is not None:
            cells = cells[cells["species"].astype(str) == part.species_value]
        column = region_column(demo.atlas, part.dataset)
        if column is None:
            assert (regions["label"] != part.label).all()
            continue
        expected = cells.loc[cells[LEVEL].astype(str) == D1, column].astype(str).value_counts()
        got = regions[regions["label"] == part.label].set_index("region")["n_cells"]
        assert got.sort_index().to_dict() == expected[expected > 0].sort_index().to_dict()
        assert regions.loc[regions["label"] == part.label, "fraction"].sum() == pytest.approx(1.0)
    # D1 medium spiny neurons lie in the striatum in every species' sections (of the named regions: some cells are
    # annotated only with the whole "Basal ganglia and adjacent")
    spatial = regions[regions["dataset"].isin(demo.spatial) & (regions["region"] != "Basal ganglia and adjacent")]
    top = spatial.sort_values("n_cells", ascending=False).groupby("label")["region"].first()
    assert len(top) == 3 and set(top) == {"STR"}


def test_drd1_is_a_conserved_marker_of_d1_msns_and_high_in_each_species(demo):
    markers = conserved_markers(demo.atlas, demo.parts, LEVEL, D1, n=8)
    assert "DRD1" in list(markers["gene_symbol"][:3])
    assert (markers["min_diff"] > 0).all() and markers["min_diff"].is_monotonic_decreasing
    dot = species_dot_plot(demo.atlas, demo.parts, LEVEL, D1, ["DRD1", "PENK", "NOT_A_GENE"])
    assert len(dot) == 3 * len(demo.parts)
    assert dot.loc[dot["gene"] == "NOT_A_GENE", "mean"].isna().all()
    for part in demo.parts:
        row = dot[(dot["label"] == part.label) & (dot["gene"] == "DRD1")].iloc[0]
        cells = demo.atlas.cells(part.dataset)
        values = demo.atlas.gene(part.dataset, "DRD1")  # NaN where a cell has no expression row
        inside = (cells[LEVEL].astype(str) == D1).to_numpy()
        if part.species_value is not None:
            mine = (cells["species"].astype(str) == part.species_value).to_numpy()
        else:
            mine = np.ones(len(cells), bool)
        term_values = values[inside & mine & np.isfinite(values)]
        rest_values = values[~inside & mine & np.isfinite(values)]
        assert row["n_cells"] == len(term_values) > 0
        assert row["mean"] == pytest.approx(term_values.mean(), rel=1e-4)
        assert row["fraction"] == pytest.approx((term_values > 0).mean())
        assert row["mean"] > rest_values.mean() + 1.0, part.label  # high in the term in each species


# ---------------------------------------------------------------------------------------------- core and address
def test_the_summary_of_a_shared_term_and_the_refusal_of_a_finer_one(demo):
    summary = across_species(demo.context, demo.spatial[0], D1, LEVEL)
    assert [s["label"] for s in summary.shares] == [p.label for p in demo.parts]
    assert "DRD1" in summary.genes
    assert {d["label"] for d in summary.dot} == {p.label for p in demo.parts}
    assert any(a["abbreviation"] == "STR" for a in summary.annotation)
    assert across_species(demo.context, demo.spatial[0], D1, LEVEL) is summary  # memoised
    cluster, finest = a_cluster(demo)
    with pytest.raises(ViewError) as info:
        across_species(demo.context, demo.spatial[0], cluster, finest)
    assert info.value.parameter == "term_level"
    with pytest.raises(ViewError) as info:
        across_species(demo.context, demo.spatial[0], "no such term", LEVEL)
    assert info.value.parameter == "term"


def parse(demo, query):
    return parse_query(query, demo.context.catalog, gene_lookup=demo.context.lookups.gene_symbol,
                       term_lookup=demo.context.lookups.term_level)


def a_cluster(demo):
    tax = demo.atlas.taxonomy(demo.spatial[0])
    return tax.terms(tax.levels[-1])["name"].iloc[0], tax.levels[-1]


def test_across_in_the_address_reads_back_and_bad_values_are_notices(demo):
    cluster, finest = a_cluster(demo)
    base = f"?dataset={demo.spatial[0]}&term={D1}&term_level={LEVEL}"
    state, notices = parse(demo, base + "&across=1")
    assert state.across and notices == []
    assert parse_qs(to_query(state).lstrip("?"))["across"] == ["1"]
    assert parse(demo, to_query(state)) == (state, [])
    assert "across" not in to_query(state.replace(term=None, term_level=None))
    for query, words in ((base + "&across=yes", "is not 1"),
                         (f"?dataset={demo.spatial[0]}&across=1", "needs a highlighted term"),
                         (f"?dataset={demo.spatial[0]}&term={cluster}&term_level={finest}&across=1", "share")):
        state, notices = parse(demo, query)
        assert not state.across
        assert [getattr(n, "parameter", None) for n in notices][-1:] == ["across"] and words in notices[-1]


# ---------------------------------------------------------------------------------------------- callbacks
def test_the_button_shows_only_for_a_shared_term(demo):
    dataset = demo.spatial[0]
    assert species_callbacks.button_step(dataset, {"level": LEVEL, "name": D1}, demo.context) is False
    assert species_callbacks.button_step(dataset, None, demo.context) is True
    cluster, finest = a_cluster(demo)
    assert species_callbacks.button_step(dataset, {"level": finest, "name": cluster}, demo.context) is True


def test_the_panel_opens_from_the_button_and_the_address_and_closes_with_the_highlight(demo):
    dataset, term = demo.spatial[0], {"level": LEVEL, "name": D1}
    step = species_callbacks.open_step
    assert step([f"{ids.ACROSS_OPEN}.n_clicks"], None, False, dataset, term, demo.context) is True
    assert step([f"{ids.ACROSS_OPEN}.n_clicks"], None, False, dataset, None, demo.context) is no_update
    assert step([f"{ids.ACROSS_CLOSE}.n_clicks"], None, True, dataset, term, demo.context) is False
    assert step([f"{ids.ACROSS_MAPS}.n_clicks"], None, True, dataset, term, demo.context) is False
    assert step([f"{ids.TERM}.data"], None, True, dataset, None, demo.context) is False
    assert step([f"{ids.TERM}.data"], None, True, dataset, term, demo.context) is no_update
    search = f"?dataset={dataset}&term={D1}&term_level={LEVEL}&across=1"
    assert step([f"{ids.URL}.search"], search, False, dataset, None, demo.context) is True
    assert step([], search.replace("&across=1", ""), True, dataset, term, demo.context) is False

    hidden, body = species_callbacks.panel_step(True, dataset, term, demo.context)
    text = str(body)
    assert hidden is False and "DHBA:10333" in text and "medium spiny neuron" in text
    for part in demo.parts:
        assert part.label in text
    assert species_callbacks.panel_step(False, dataset, term, demo.context) == (True, no_update)
    assert species_callbacks.maps_step(1) == "species"


def test_the_address_holds_across_only_with_a_shared_term(demo):
    values = {ids.DATASET: demo.spatial[0], ids.COLOR_BY: LEVEL, ids.TERM: {"level": LEVEL, "name": D1},
              ids.ACROSS: True}
    query = navigation.url_query(values, demo.context)["query"]
    assert parse_qs(query.lstrip("?"))["across"] == ["1"]
    values[ids.TERM] = None
    assert "across" not in navigation.url_query(values, demo.context)["query"]


def test_the_maps_side_by_side_are_a_figure_the_export_route_serves(demo):
    from flask import Flask
    from PIL import Image

    from server.export import export_blueprint

    app = Flask(__name__)
    app.register_blueprint(export_blueprint(demo.context))
    summary = across_species(demo.context, demo.spatial[0], D1, LEVEL)
    assert set(summary.maps) == {"png", "svg", "pdf"}
    query = parse_qs(summary.maps["png"].split("?", 1)[1])
    assert query["panels"] == ["species"] and query["term"] == [D1] and query["term_level"] == [LEVEL]
    response = app.test_client().get(summary.maps["png"])
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (1500, 560)


def test_a_short_link_keeps_the_open_panel(demo):
    from callbacks.export_panel import share_step
    from server.share import checked_record, share_id

    class Store:
        def __init__(self):
            self.saved = {}

        def create(self, query):
            self.saved[share_id(query)] = query
            return share_id(query)

    store = Store()
    values = {ids.DATASET: demo.spatial[0], ids.COLOR_BY: LEVEL, ids.TERM: {"level": LEVEL, "name": D1},
              ids.ACROSS: True}
    answer = share_step(values, 1, demo.context, store)
    link = answer["path"].rsplit("/", 1)[1]
    record = checked_record(link, store.saved[link])
    assert record is not None and parse_qs(record.lstrip("?"))["across"] == ["1"]


# ---------------------------------------------------------------------------------------------- one click
def _across_buttons(markup: str) -> list[tuple[str, str]]:
    """``(level, name)`` of every "across species" button in tree or legend HTML."""
    import html
    import re

    found = re.findall(r'<button class="across-go"[^>]*data-action="across-species" data-level="([^"]*)" '
                       r'data-name="([^"]*)"', markup)
    return [(html.unescape(level), html.unescape(name)) for level, name in found]


def test_tree_rows_of_the_shared_levels_and_only_them_have_the_across_button(demo):
    from callbacks import tree
    from core.state import across_levels

    dataset = demo.spatial[0]
    entry = demo.context.catalog.get(dataset)
    shared = across_levels(demo.context.catalog, entry)
    assert shared and shared[-1] == "Group" and entry.levels[-1] not in shared
    tax = demo.atlas.taxonomy(dataset)
    # every level expanded down to the finest: each shown row of a shared level has exactly its own button
    group_parent = tax.terms("Group")["parent"].iloc[0]
    expanded = [f"{level}|{name}" for level in entry.levels[:-1] for name in tax.terms(level)["name"]]
    block = tree.tree_step(dataset, None, None, None, expanded, None, tree.TreeData(demo.context))
    markup = block.children
    buttons = _across_buttons(markup)
    assert ("Subclass", D1) in buttons and any(level == "Group" for level, _ in buttons)
    assert {level for level, _ in buttons} == set(shared)
    import re
    picks = re.findall(r'data-action="pick" data-level="([^"]*)" data-name="([^"]*)"', markup)
    assert any(level == entry.levels[-1] for level, _ in picks)  # the finest level is shown, without buttons
    assert sorted(buttons) == sorted((level, name) for level, name in picks if level in shared)
    assert group_parent  # Groups nest under a parent: they are in the expanded tree
    # a search lists the matches flat, the shared ones with the button
    block = tree.tree_step(dataset, None, None, None, [], "D1", tree.TreeData(demo.context))
    assert ("Subclass", D1) in _across_buttons(block.children)


def test_legend_entries_have_the_across_button_at_a_shared_level_only(demo):
    from callbacks import legend

    dataset = demo.spatial[0]
    block, *_ = legend.legend_step(dataset, None, None, LEVEL, None, None, None, None, demo.context)
    buttons = _across_buttons(block.children)
    assert ("Subclass", D1) in buttons and all(level == LEVEL for level, _ in buttons)
    assert len(buttons) == block.children.count('class="legend-item')
    cluster, finest = a_cluster(demo)
    block, *_ = legend.legend_step(dataset, None, None, finest, None, None, None, None, demo.context)
    assert _across_buttons(block.children) == [] and block.children.count('class="legend-item') > 0


def test_the_across_button_highlights_the_term_and_opens_the_panel_in_one_click(demo):
    from callbacks import tree

    dataset = demo.spatial[0]
    event = {"level": LEVEL, "name": D1, "t": 1, "across": True}
    picked = tree.pick_step(ids.TERM_PICKED, event, None, None, dataset, None, None, LEVEL, None, demo.context)
    assert picked == {"level": LEVEL, "name": D1, "taxonomy": TAXONOMY}
    # already highlighted: the across button keeps it (a plain pick of it clears it)
    assert tree.pick_step(ids.TERM_PICKED, event, None, None, dataset, None, None, LEVEL, picked,
                          demo.context) is no_update
    assert tree.pick_step(ids.TERM_PICKED, {**event, "across": False}, None, None, dataset, None, None, LEVEL, picked,
                          demo.context) is None
    # the same answer opens the panel: only the across button of a shared term does
    step = species_callbacks.across_pick_step
    assert step(ids.TERM_PICKED, event, dataset, demo.context) is True
    assert step(ids.TERM_PICKED, {**event, "across": False}, dataset, demo.context) is no_update
    assert step(ids.MAP_GRAPH, event, dataset, demo.context) is no_update
    cluster, finest = a_cluster(demo)
    assert step(ids.TERM_PICKED, {**event, "level": finest, "name": cluster}, dataset, demo.context) is no_update
    # then the highlight arrives with the panel open: it stays open and draws the term
    assert species_callbacks.open_step([f"{ids.TERM}.data"], None, True, dataset, picked, demo.context) is no_update
    hidden, body = species_callbacks.panel_step(True, dataset, picked, demo.context)
    assert hidden is False and D1 in str(body)
    # the panel shows before its body is computed
    assert species_callbacks.hidden_step(True, dataset, picked, demo.context) is False
    assert species_callbacks.hidden_step(False, dataset, picked, demo.context) is True
    assert species_callbacks.hidden_step(True, dataset, {"level": finest, "name": cluster}, demo.context) is True


def _nearest_row(cells, x, y) -> int:
    """Row of the cell nearest to ``(x, y)``, by brute force (the inspector uses a KD-tree)."""
    return int(np.argmin(np.hypot(cells["x"].to_numpy(float) - x, cells["y"].to_numpy(float) - y)))


def _umap_click(cells, row) -> dict:
    return {"points": [], "xvals": [float(cells["x"].iat[row])], "yvals": [float(cells["y"].iat[row])]}


def _button_term(children) -> dict:
    """The TERM_PICKED data the page's click listener sends for the UMAP head's button (its data- attributes)."""
    (button,) = children
    props = button.to_plotly_json()["props"]
    assert props["data-action"] == "across-species"
    return {"level": props["data-level"], "name": props["data-name"], "t": 1, "across": True}


@pytest.mark.parametrize("where", ["10x", "spatial"])
def test_a_umap_click_puts_the_cells_shared_term_in_one_click_button_that_opens_the_panel(demo, where):
    from callbacks import tree

    # the cross-species 10X dataset shows its UMAP in the map card; a spatial dataset beside its map, linked
    dataset = demo.tenx if where == "10x" else demo.spatial[0]
    graph = ids.MAP_GRAPH if where == "10x" else ids.UMAP_GRAPH
    assert demo.context.umap_dataset(dataset) == demo.tenx
    cells = demo.atlas.cells(demo.tenx)
    d1 = np.flatnonzero(cells[LEVEL].to_numpy() == D1)
    row = _nearest_row(cells, float(cells["x"].iat[d1[0]]), float(cells["y"].iat[d1[0]]))
    assert cells[LEVEL].iat[row] == D1
    click = _umap_click(cells, row)
    step = species_callbacks.clicked_across_step

    # coloured by a shared level: that level's term
    event = _button_term(step(graph, graph, click, dataset, LEVEL, demo.context))
    assert (event["level"], event["name"]) == (LEVEL, D1)
    # coloured by clusters (not shared): the finest shared level, the cell's own group
    cluster, finest = a_cluster(demo)
    grouped = _button_term(step(graph, graph, click, dataset, finest, demo.context))
    assert (grouped["level"], grouped["name"]) == ("Group", str(cells["Group"].iat[row]))

    # one click on it: the UMAP click had highlighted the cell's subclass; the button keeps it and opens the panel
    entry = demo.context.catalog.get(dataset)
    clicks = (click, None) if graph == ids.MAP_GRAPH else (None, click)
    highlighted = tree.pick_step(graph, None, *clicks, dataset, None, None, LEVEL, None, demo.context)
    assert highlighted == {"level": LEVEL, "name": D1, "taxonomy": entry.taxonomy}
    assert tree.pick_step(ids.TERM_PICKED, event, *clicks, dataset, None, None, LEVEL, highlighted,
                          demo.context) is no_update
    opens = species_callbacks.across_pick_step  # answered with the highlight, by the same callback
    assert opens(ids.TERM_PICKED, event, dataset, demo.context) is True
    # coloured by clusters the click highlighted the cluster: the button highlights the group instead
    clustered = tree.pick_step(graph, None, *clicks, dataset, None, None, finest, None, demo.context)
    assert clustered["level"] == finest
    group = tree.pick_step(ids.TERM_PICKED, grouped, *clicks, dataset, None, None, finest, clustered, demo.context)
    assert group == {"level": "Group", "name": grouped["name"], "taxonomy": entry.taxonomy}
    assert opens(ids.TERM_PICKED, grouped, dataset, demo.context) is True
    assert species_callbacks.panel_step(True, dataset, group, demo.context)[0] is False


def test_a_click_on_a_spatial_map_gives_the_button_of_the_sections_cell(demo):
    dataset = demo.spatial[0]
    entry = demo.context.catalog.get(dataset)
    section = next(iter(entry.sections))
    cells = demo.atlas.cells(dataset, section=section)
    d1 = np.flatnonzero(cells[LEVEL].to_numpy() == D1)
    row = _nearest_row(cells, float(cells["x"].iat[d1[-1]]), float(cells["y"].iat[d1[-1]]))
    step = species_callbacks.clicked_across_step
    event = _button_term(step(ids.MAP_GRAPH, ids.MAP_GRAPH, _umap_click(cells, row), dataset, LEVEL, demo.context,
                              section=section))
    assert (event["level"], event["name"]) == (LEVEL, str(cells[LEVEL].iat[row]))
    # a click on the UMAP is not the map's
    assert step(ids.MAP_GRAPH, ids.UMAP_GRAPH, _umap_click(cells, row), dataset, LEVEL, demo.context,
                section=section) == []


def test_the_umap_button_is_gone_away_from_cells_on_a_new_dataset_and_for_one_species_taxonomies(demo):
    step = species_callbacks.clicked_across_step
    dataset, umap = demo.spatial[0], ids.UMAP_GRAPH
    cells = demo.atlas.cells(demo.tenx)
    frame = demo.context.frame_of_dataset(demo.tenx)
    far = {"points": [], "xvals": [frame.x1 + frame.width], "yvals": [frame.y1 + frame.height]}
    assert step(umap, umap, far, dataset, LEVEL, demo.context) == []
    assert step(umap, ids.DATASET, _umap_click(cells, 0), dataset, LEVEL, demo.context) == []
    assert step(umap, umap, None, dataset, LEVEL, demo.context) == []
    single = [d for d in demo.atlas.datasets() if not species_callbacks.across_levels(
        demo.context.catalog, demo.context.catalog.get(d)) and demo.context.umap_dataset(d)]
    assert single  # the mouse taxonomy is in one species: no button from its UMAP
    mouse = demo.atlas.cells(demo.context.umap_dataset(single[0]))
    level = demo.context.catalog.get(single[0]).levels[0]
    assert step(umap, umap, _umap_click(mouse, 0), single[0], level, demo.context) == []


# ---------------------------------------------------------------------------------------------- the markers' tests
def test_each_species_rows_test_is_welchs_t_against_the_rest_of_its_species_cells(demo):
    from scipy import stats

    from data_layer.analysis import _NOT_TERMS, markers_for_term

    dot = species_dot_plot(demo.atlas, demo.parts, LEVEL, D1, ["DRD1", "PENK", "NOT_A_GENE"])
    assert dot.loc[dot["gene"] == "NOT_A_GENE", ["t", "p", "p_adj"]].isna().all().all()
    assert any(p.species_value is not None for p in demo.parts)
    for part in demo.parts:
        cells = demo.atlas.cells(part.dataset)
        mine = (np.ones(len(cells), bool) if part.species_value is None
                else (cells["species"].astype(str) == part.species_value).to_numpy())
        names = cells[LEVEL].astype(str)
        inside = (names == D1).to_numpy() & mine
        rest = ~inside & mine & ~names.isin(_NOT_TERMS).to_numpy() & cells[LEVEL].notna().to_numpy()
        for gene in ("DRD1", "PENK"):
            values = demo.atlas.gene(part.dataset, gene)
            a, b = values[inside & np.isfinite(values)], values[rest & np.isfinite(values)]
            row = dot[(dot["label"] == part.label) & (dot["gene"] == gene)].iloc[0]
            t, p = stats.ttest_ind(a.astype(np.float64), b.astype(np.float64), equal_var=False)
            assert row["n_rest"] == len(b) and row["mean_rest"] == pytest.approx(b.mean(), rel=1e-4, abs=1e-6)
            assert row["t"] == pytest.approx(t, rel=1e-3)
            assert row["p"] == pytest.approx(p, rel=1e-3, abs=1e-300)
        if part.species_value is None:  # a whole dataset: the same family as its term markers (every gene)
            tested = markers_for_term(demo.atlas, part.dataset, LEVEL, D1, n=None).set_index("gene_symbol")
            for gene in ("DRD1", "PENK"):
                row = dot[(dot["label"] == part.label) & (dot["gene"] == gene)].iloc[0]
                assert row["p_adj"] == pytest.approx(tested.loc[gene, "p_adj"], rel=1e-6, abs=1e-300)
                assert row["t"] == pytest.approx(tested.loc[gene, "t"], rel=1e-6)
    drd1 = dot[dot["gene"] == "DRD1"]
    assert (drd1["mean_diff"] > 1).all() and (drd1["p_adj"] < 1e-10).all()  # D1 MSNs' DRD1 holds in every row


def test_the_next_term_of_a_level_needs_no_scan_and_gives_the_numbers_of_its_own_scan(demo, monkeypatch):
    import data_layer.analysis as analysis
    import data_layer.species as species

    genes = ["DRD1", "PENK", "TAC1", "NOT_A_GENE"]
    species_dot_plot(demo.atlas, demo.parts, LEVEL, D1, genes)  # the level's sums, kept
    scans = []
    real_scan = analysis.scan_groups
    monkeypatch.setattr(analysis, "scan_groups", lambda *a, **k: scans.append(a[1]) or real_scan(*a, **k))
    d2 = "STR D2 MSN"
    kept = species_dot_plot(demo.atlas, demo.parts, LEVEL, d2, genes)
    assert scans == []  # every dataset's sums of D2 came from the kept scan of the level
    monkeypatch.setattr(species, "_level_sums", lambda *a, **k: None)  # a scan of the term alone
    alone = species_dot_plot(demo.atlas, demo.parts, LEVEL, d2, genes)
    assert len(scans) == len({p.dataset for p in demo.parts if demo.atlas.info(p.dataset).n_genes})
    pd.testing.assert_frame_equal(kept, alone, rtol=1e-9, atol=1e-12)
    penk = kept[kept["gene"] == "PENK"]
    assert (penk["mean_diff"] > 1).all()  # the D2 MSNs' PENK holds in every species


def test_the_panel_shows_each_rows_adjusted_p_and_links_its_csv(demo):
    summary = across_species(demo.context, demo.spatial[0], D1, LEVEL)
    hidden, body = species_callbacks.panel_step(True, demo.spatial[0], {"level": LEVEL, "name": D1}, demo.context)
    text = str(body)
    assert ids.ACROSS_MARKERS_TABLE in text and summary.markers_csv in text and "Welch" in text
    from components.species import markers_table, p_text, species_dot_figure

    labels = [s["label"] for s in summary.shares]
    table = str(markers_table(labels, summary.genes, summary.dot))
    first = next(d for d in summary.dot if d["gene"] == summary.genes[0] and d["label"] == labels[-1])
    assert p_text(first["p_adj"]) in table and f"{first['mean_diff']:+.2f}" in table
    hover = species_dot_figure(labels, summary.genes, summary.dot)["data"][0]["text"]
    assert any("p_adj" in h and "Welch" in h for h in hover)
    assert p_text(0.0) == "< 1e-300" and p_text(float("nan")) == "–" and p_text(0.0123) == "0.012"


def test_the_panels_markers_download_as_a_spreadsheet_safe_csv(demo):
    from flask import Flask

    from core.species import MARKERS_CSV_COLUMNS, markers_csv_text
    from server.export import export_blueprint

    app = Flask(__name__)
    app.register_blueprint(export_blueprint(demo.context))
    client = app.test_client()
    summary = across_species(demo.context, demo.spatial[0], D1, LEVEL)
    response = client.get(summary.markers_csv)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"] and "STR-D1-MSN" in \
        response.headers["Content-Disposition"]
    table = pd.read_csv(io.BytesIO(response.data), keep_default_na=False, na_values=[""])
    assert tuple(table.columns) == MARKERS_CSV_COLUMNS
    assert len(table) == len(summary.genes) * len(summary.shares)
    assert list(dict.fromkeys(table["species_cells"])) == [s["label"] for s in summary.shares]
    drd1 = table[table["gene"] == "DRD1"].set_index("species_cells")
    for d in summary.dot:
        if d["gene"] == "DRD1":
            assert drd1.loc[d["label"], "p_adj"] == pytest.approx(d["p_adj"], rel=1e-5, abs=1e-300)
    # a formula-like symbol is written as text
    evil = dataclasses_replace(summary, dot=[{**summary.dot[0], "gene": "=HYPERLINK(1)"}])
    assert "'=HYPERLINK(1)" in markers_csv_text(evil)
    cluster, finest = a_cluster(demo)
    for query, parameter in ((f"dataset={demo.spatial[0]}&term={cluster}&term_level={finest}", "term_level"),
                             (f"dataset={demo.spatial[0]}", "term"), (f"term={D1}&term_level={LEVEL}", "dataset")):
        response = client.get(f"/export/across-markers.csv?{query}")
        assert response.status_code == 400 and parameter in response.get_data(as_text=True), query


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# ---------------------------------------------------------------------------------------------- the figure
def test_the_panel_as_one_figure_names_the_term_the_species_and_the_top_marker(demo, tmp_path):
    import shutil
    import subprocess

    from flask import Flask
    from PIL import Image

    from server.export import export_blueprint

    app = Flask(__name__)
    app.register_blueprint(export_blueprint(demo.context))
    client = app.test_client()
    summary = across_species(demo.context, demo.spatial[0], D1, LEVEL)
    assert set(summary.figure) == {"png", "svg", "pdf"}
    hidden, body = species_callbacks.panel_step(True, demo.spatial[0], {"level": LEVEL, "name": D1}, demo.context)
    assert summary.figure["pdf"] in str(body)
    top_gene = summary.genes[0]
    species_words = {s["species"] for s in summary.shares}
    assert len(species_words) == 3

    response = client.get(summary.figure["pdf"])
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert "across-species_STR-D1-MSN.pdf" in response.headers["Content-Disposition"]
    assert shutil.which("pdftotext")
    (tmp_path / "f.pdf").write_bytes(response.data)
    text = subprocess.run(["pdftotext", str(tmp_path / "f.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    for word in (D1, "striatum", "DHBA:10333", top_gene, "Share of cells", "Regions of its cells",
                 *(s["label"] for s in summary.shares), *species_words):
        assert word in text, word
    assert text.count("1 mm") + text.count("µm") >= 3  # one scale bar per species' map

    response = client.get(summary.figure["svg"])
    svg = response.get_data(as_text=True)
    assert response.status_code == 200 and "<svg" in svg
    for word in (D1, top_gene, "Marmoset · Xenium", "MSN = medium spiny neuron"):
        assert word in svg, word
    assert svg.count("<image") >= 3  # the maps' rasters

    response = client.get(summary.figure["png"])
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.data)).size == (2400, 1800)


def test_a_figure_across_species_without_a_shared_term_is_refused_naming_the_parameter(demo):
    from flask import Flask

    from server.export import export_blueprint

    app = Flask(__name__)
    app.register_blueprint(export_blueprint(demo.context))
    client = app.test_client()
    cluster, finest = a_cluster(demo)
    base = f"/export/figure.pdf?dataset={demo.spatial[0]}&panels=across"
    for query, parameter in (("", "term"), (f"&term={cluster}&term_level={finest}", "term_level"),
                             (f"&term={D1}&term_level={LEVEL}&width=200&height=150", "panels")):
        response = client.get(base + query)
        assert response.status_code == 400 and parameter in response.get_data(as_text=True), query
