"""Selections (``callbacks.selection``, ``core.selection``): a Plotly lasso or box becomes a compact
selection, selects exactly the cells inside it on a known layout, counts its composition, highlights it in its
view and its clusters in the other view, clears, and gives a CSV export link the export route answers.

The known layout is a 10 x 10 grid of cells at integer coordinates (left half term "A", right half "B") behind a
minimal atlas; the demo store checks the linking of a section and its UMAP.
"""
from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from dash import no_update

from callbacks import selection as sel
from core.context import ViewerContext
from core.catalog import Catalog, DatasetEntry, SectionEntry, SlabPlaneEntry
from core.selection import (MAX_LASSO_VERTICES, compact_selection, decode_codes, encode_codes,
                                           parse_selection_param, selection_from_event, selection_param)
from settings import Settings

DATASET = "GRID"
SECTION = "S1"
PLANE = "P1"


# ---------------------------------------------------------------------------------------------- a known layout
class GridAtlas:
    """100 cells at (i, j), i, j in 0..9: level ``Class`` is "A" for x < 5 and "B" otherwise; ``Cluster`` is
    "c<x>" (one cluster per column)."""

    levels = ["Class", "Cluster"]

    def __init__(self):
        xs, ys = np.meshgrid(np.arange(10, dtype=np.float32), np.arange(10, dtype=np.float32))
        self.x, self.y = xs.ravel(), ys.ravel()
        self.class_categories = ["A", "B", "Adjacent", "unassigned"]
        self.cluster_categories = [f"c{i}" for i in range(10)] + ["Adjacent", "unassigned"]

    def cells(self, dataset, section=None, slab_plane=None):
        assert dataset == DATASET
        return pd.DataFrame({
            "cell_label": [f"cell{i}" for i in range(self.x.size)],
            "x": self.x, "y": self.y,
            "Class": pd.Categorical(np.where(self.x < 5, "A", "B"), categories=self.class_categories),
            "Cluster": pd.Categorical([f"c{int(v)}" for v in self.x], categories=self.cluster_categories),
        })

    def xy(self, dataset, section=None, slab_plane=None):
        assert dataset == DATASET
        return self.x, self.y

    COLORS = {"Class": ["#ff0000", "#0000ff", "#808080", "#c8c8c8"],
              "Cluster": [f"#0000{i:02x}" for i in range(10)] + ["#808080", "#c8c8c8"]}

    def colors(self, dataset, column):
        return list(self.COLORS[column])

    def categories(self, dataset, level):
        return self.class_categories if level == "Class" else self.cluster_categories


@pytest.fixture()
def grid_context(tmp_path):
    entry = DatasetEntry(
        name=DATASET, kind="spatial", species="Test", platform="grid", taxonomy="T", levels=("Class", "Cluster"),
        n_cells=100, n_genes=0, umap_dataset=None, bounds=(0.0, 9.0, 0.0, 9.0),
        slab_planes=(SlabPlaneEntry(PLANE, (SECTION,), 100, (0.0, 9.0, 0.0, 9.0), False),),
        sections={SECTION: SectionEntry(SECTION, PLANE, 100, (0.0, 9.0, 0.0, 9.0))},
    )
    return ViewerContext(atlas=GridAtlas(), settings=Settings(store=tmp_path), catalog=Catalog({DATASET: entry}),
                         lookups=None)


def lasso_event(xs, ys):
    return {"points": [], "lassoPoints": {"x": list(xs), "y": list(ys)}}


# an L-shaped (concave) lasso: x 0.5..6.5 at the bottom (y 0.5..2.5), then x 0.5..2.5 up to y 7.5
L_XS = [0.5, 6.5, 6.5, 2.5, 2.5, 0.5]
L_YS = [0.5, 0.5, 2.5, 2.5, 7.5, 7.5]
L_INSIDE = {(x, y) for x in range(1, 7) for y in (1, 2)} | {(x, y) for x in (1, 2) for y in range(3, 8)}


# ---------------------------------------------------------------------------------------------- geometry
def test_a_lasso_event_becomes_a_compact_lasso_without_its_closing_vertex():
    compact = selection_from_event(lasso_event(L_XS + L_XS[:1], L_YS + L_YS[:1]))
    assert compact == {"kind": "lasso", "xs": L_XS, "ys": L_YS}


def test_a_box_event_becomes_a_box_with_sorted_bounds():
    compact = selection_from_event({"points": [], "range": {"x": [4.0, 1.0], "y": [3.5, -2.0]}})
    assert compact == {"kind": "box", "xs": [1.0, 4.0], "ys": [-2.0, 3.5]}


def test_an_event_without_geometry_or_an_empty_box_is_no_selection():
    assert selection_from_event({"points": [{"x": 1, "y": 2}]}) is None
    assert selection_from_event({"range": {"x": [1.0, 1.0], "y": [0.0, 2.0]}}) is None
    assert selection_from_event(lasso_event([0, 1, 0], [0, 1, 0])) is None  # two distinct vertices
    assert selection_from_event(None) is None


def test_a_hand_drawn_lasso_is_simplified_to_a_bounded_polygon_that_keeps_its_shape():
    angles = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    xs, ys = 10 + 3 * np.cos(angles), 20 + 3 * np.sin(angles)
    compact = compact_selection("lasso", xs, ys)
    assert 3 <= len(compact["xs"]) <= MAX_LASSO_VERTICES
    radii = np.hypot(np.asarray(compact["xs"]) - 10, np.asarray(compact["ys"]) - 20)
    assert np.all(np.abs(radii - 3) < 0.05)  # the vertices still lie on the circle drawn
    assert len(selection_param(compact)) < 3000  # small enough for a picture URL


def test_the_selection_parameter_round_trips_and_rejects_bad_values():
    lasso = {"kind": "lasso", "xs": L_XS, "ys": L_YS}
    assert parse_selection_param(selection_param(lasso)) == lasso
    box = {"kind": "box", "xs": [1.0, 2.0], "ys": [3.0, 4.0]}
    assert parse_selection_param(selection_param(box)) == box
    for bad in ("1,2,x,4", "1,nan,3,4", "2,1,3,4", "1,2,3,4,5", "1,2,3,4,5,6,7,8,9,10,11"):
        with pytest.raises(ValueError):
            parse_selection_param(bad)


def test_cluster_codes_travel_as_ranges():
    assert encode_codes([5, 3, 4, 9, 3]) == "3-5,9"
    assert decode_codes("3-5,9", 10).tolist() == [3, 4, 5, 9]
    with pytest.raises(ValueError):
        decode_codes("3-12", 10)
    with pytest.raises(ValueError):
        decode_codes("5-3", 10)


# ---------------------------------------------------------------------------------------------- callbacks
def test_a_lasso_on_the_map_selects_exactly_the_cells_inside_it(grid_context):
    store = sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, None, grid_context)
    assert store["view"] == "map" and store["section"] == SECTION and store["kind"] == "lasso"
    cells, mask, where = sel.SelectedCells(grid_context).get(store)
    chosen = {(int(x), int(y)) for x, y in zip(cells["x"][mask], cells["y"][mask])}
    assert chosen == L_INSIDE
    assert where == {"section": SECTION}


def test_one_lasso_mask_serves_the_summary_the_picture_and_the_cell_export(grid_context, monkeypatch):
    """The count, the highlighted picture and the exported cells of one lasso read one mask, computed once."""
    from core.cells import count_cells
    from core.picture import PictureRequest
    from core.render import render_rgba
    from core.state import ViewSelection, ViewState
    from core.viewport import Window

    calls = []
    original = grid_context.atlas.xy
    monkeypatch.setattr(grid_context.atlas, "xy", lambda *a, **k: calls.append(a) or original(*a, **k))
    store = sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, None, grid_context)
    _, mask, _ = sel.SelectedCells(grid_context).get(store)
    assert int(mask.sum()) == len(L_INSIDE) and not mask.flags.writeable
    picture = PictureRequest(dataset=DATASET, section=SECTION, slab_plane=None, color_by="Class", gene=None,
                             term=None, term_level=None, window=Window(-0.5, 9.5, -0.5, 9.5), width_px=20,
                             height_px=20, selection=selection_param(store))
    render_rgba(grid_context, picture)
    view = ViewState(dataset=DATASET, slab_plane=PLANE, section=SECTION, color_by="Class",
                     selection=ViewSelection.from_geometry("map", store))
    assert count_cells(grid_context, view, store) == len(L_INSIDE)
    assert len(calls) == 1


def test_the_mask_cache_is_shared_by_threads_and_bounded(grid_context):
    from concurrent.futures import ThreadPoolExecutor

    masks = grid_context.masks
    boxes = [{"kind": "box", "xs": [0.5, 0.5 + i], "ys": [0.5, 8.5]} for i in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda box: int(masks.mask(DATASET, {"section": SECTION}, box).sum()), boxes * 4))
    assert found == [8 * i for i in range(1, 9)] * 4
    assert len(masks._masks) <= masks.size


def test_the_summary_counts_the_selection_and_its_composition_per_level(grid_context):
    box = sel.selection_step({"range": {"x": [0.5, 6.5], "y": [-0.5, 1.5]}}, "map", DATASET, PLANE, SECTION, None,
                             grid_context)  # x 1..6, y 0..1: 12 cells, 8 of A (x 1..4), 4 of B (x 5, 6)
    selected = sel.SelectedCells(grid_context)
    text, figure = sel.summary_step(box, "Class", DATASET, PLANE, SECTION, selected)
    assert text.startswith("12 cells selected in section S1 (box)")
    bars = figure["data"][0]
    assert bars["y"] == ["A", "B"] and bars["x"] == [8, 4]
    assert bars["marker"]["color"] == ["#ff0000", "#0000ff"]  # the terms' own colours
    assert bars["customdata"] == [["Class", "A"], ["Class", "B"]]
    _, by_cluster = sel.summary_step(box, "Cluster", DATASET, PLANE, SECTION, selected)
    assert sorted(by_cluster["data"][0]["y"]) == [f"c{i}" for i in range(1, 7)]
    assert by_cluster["data"][0]["x"] == [2] * 6


def test_the_selection_highlights_its_cells_in_its_own_picture(grid_context):
    store = sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, None, grid_context)
    map_highlight, umap_highlight = sel.highlight_step(store, DATASET, PLANE, SECTION,
                                                       sel.SelectedCells(grid_context), None, {"clusters": "1"})
    assert map_highlight == {"selection": selection_param(store)}
    assert umap_highlight is None  # this dataset has no UMAP beside it: nothing linked there
    # unchanged values are not sent again
    assert sel.highlight_step(store, DATASET, PLANE, SECTION, sel.SelectedCells(grid_context), map_highlight,
                              None) == (no_update, no_update)


def test_a_selection_of_another_section_no_longer_applies(grid_context):
    store = sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, None, grid_context)
    assert sel.applies(store, DATASET, PLANE, SECTION, grid_context)
    assert not sel.applies(store, DATASET, PLANE, None, grid_context)  # the whole slab plane
    shown = {"selection": selection_param(store)}
    assert sel.highlight_step(store, DATASET, PLANE, None, sel.SelectedCells(grid_context), shown,
                              None) == (None, no_update)


def test_plotly_deselect_clears_the_selection_of_its_view_only(grid_context):
    store = sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, None, grid_context)
    assert sel.selection_step(None, "map", DATASET, PLANE, SECTION, store, grid_context) is None
    assert sel.selection_step(None, "umap", DATASET, PLANE, SECTION, store, grid_context) is no_update
    # the same lasso again changes nothing
    assert sel.selection_step(lasso_event(L_XS, L_YS), "map", DATASET, PLANE, SECTION, store,
                              grid_context) is no_update


def test_clearing_drops_the_outline_in_both_views_and_a_new_selection_in_the_other_one():
    map_patch, umap_patch = sel.outline_patches(None)
    assert map_patch is not no_update and umap_patch is not no_update
    map_patch, umap_patch = sel.outline_patches({"view": "map"})
    assert map_patch is no_update and umap_patch is not no_update
    operations = {tuple(op["location"]): op["params"]["value"] for op in umap_patch.to_plotly_json()["operations"]}
    assert operations[("layout", "selections")] == []


def test_a_new_selection_opens_the_analysis_panel_and_the_button_toggles_it():
    from components import ids

    assert sel.panel_step(ids.SELECTION, {"view": "map"}, True) is False
    assert sel.panel_step(ids.SELECTION, {"view": "map"}, False) is no_update
    assert sel.panel_step(ids.SELECTION, None, False) is no_update  # clearing leaves the panel as it is
    assert sel.panel_step(ids.ANALYSIS_OPEN, None, False) is True
    assert sel.panel_step(ids.ANALYSIS_OPEN, None, True) is False


def test_clicking_a_composition_bar_picks_its_term():
    picked = sel.pick_from_chart({"points": [{"customdata": ["Class", "A"]}]})
    assert (picked["level"], picked["name"]) == ("Class", "A")
    assert sel.pick_from_chart({"points": [{"customdata": ["", ""]}]}) is no_update  # the "others" bar
    assert sel.pick_from_chart(None) is no_update


# ---------------------------------------------------------------------------------------------- demo store
@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("selection") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store, export_burst=10_000))
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = str(atlas.sections(dataset)["brain_section_label"].iloc[0])
    return SimpleNamespace(atlas=atlas, context=context, dataset=dataset, section=section,
                           plane=context.catalog.get(dataset).sections[section].slab_plane, settings_store=store)


def test_a_map_selection_highlights_its_clusters_in_the_umap(demo):
    cells = demo.atlas.cells(demo.dataset, section=demo.section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    box = {"range": {"x": [cx - 1, cx + 1], "y": [cy - 1, cy + 1]}}
    store = sel.selection_step(box, "map", demo.dataset, demo.plane, demo.section, None, demo.context)
    selected = sel.SelectedCells(demo.context)
    map_highlight, umap_highlight = sel.highlight_step(store, demo.dataset, demo.plane, demo.section, selected)
    assert "selection" in map_highlight
    umap = demo.context.umap_dataset(demo.dataset)
    level = demo.context.catalog.get(umap).levels[-1]
    codes = decode_codes(umap_highlight["clusters"], 10**6)
    linked = {str(demo.atlas.categories(umap, level)[c]) for c in codes}
    inside = cells_in_box(cells, cx, cy)
    counts = cells.loc[inside, level].value_counts()
    expected = {str(t) for t, n in counts.items()
                if n >= sel.LINK_MIN_FRACTION * inside.sum() and t not in ("Adjacent", "unassigned")}
    assert linked == expected and linked


def cells_in_box(cells, cx, cy):
    x, y = cells["x"].to_numpy(), cells["y"].to_numpy()
    return (x >= cx - 1) & (x <= cx + 1) & (y >= cy - 1) & (y <= cy + 1)


def test_a_umap_selection_highlights_its_clusters_in_the_map(demo):
    umap = demo.context.umap_dataset(demo.dataset)
    cells = demo.atlas.cells(umap)
    d1 = cells[cells["Subclass"] == "STR D1 MSN"]
    d1 = d1[d1["Cluster"] == d1["Cluster"].value_counts().index[0]]  # one stretch of the continuous D1 branch
    x0, x1 = np.percentile(d1["x"], [30, 70])
    y0, y1 = np.percentile(d1["y"], [30, 70])
    store = sel.selection_step({"range": {"x": [x0, x1], "y": [y0, y1]}}, "umap", demo.dataset, demo.plane,
                               demo.section, None, demo.context)
    assert store["view"] == "umap" and store["dataset"] == umap
    map_highlight, umap_highlight = sel.highlight_step(store, demo.dataset, demo.plane, demo.section,
                                                       sel.SelectedCells(demo.context))
    assert "selection" in umap_highlight and "clusters" in map_highlight
    level = demo.context.catalog.get(demo.dataset).levels[-1]
    names = {str(demo.atlas.categories(demo.dataset, level)[c])
             for c in decode_codes(map_highlight["clusters"], 10**6)}
    section_cells = demo.atlas.cells(demo.dataset, section=demo.section)
    lit = section_cells[section_cells[level].isin(names)]
    assert len(lit) and (lit["Subclass"] == "STR D1 MSN").mean() > 0.9  # the map lights up D1 MSNs


def test_the_export_link_writes_exactly_the_selected_cells(demo):
    from app import create_app

    cells = demo.atlas.cells(demo.dataset, section=demo.section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    xs = [cx - 1.5, cx + 1.5, cx, cx - 0.2]
    ys = [cy - 1.0, cy - 1.0, cy + 1.5, cy]
    store = sel.selection_step(lasso_event(xs, ys), "map", demo.dataset, demo.plane, demo.section, None,
                               demo.context)
    href = sel.export_href(store, demo.dataset, demo.plane, demo.section, {"dataset": demo.dataset,
                           "genes": ["DRD1", "PENK"]}, "Subclass", None, demo.context)
    params = parse_qs(urlsplit(href).query)
    assert params["genes"] == ["DRD1,PENK"]
    client = create_app(demo.context.settings, atlas=demo.atlas).server.test_client()
    response = client.get(href)
    assert response.status_code == 200, response.data[:300]
    table = pd.read_csv(pd.io.common.BytesIO(response.data))
    _, mask, _ = sel.SelectedCells(demo.context).get(store)
    assert sorted(table["cell_label"].astype(str)) == sorted(cells.loc[mask, "cell_label"].astype(str))
    for column in ("x", "y", "brain_section_label", "Class", "Subclass", "Cluster", "DRD1", "PENK"):
        assert column in table.columns


def test_no_export_link_without_a_selection(demo):
    assert sel.export_href(None, demo.dataset, demo.plane, demo.section, None, None, None, demo.context) is None
