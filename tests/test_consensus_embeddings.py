"""The consensus taxonomy's neighborhood UMAPs: stored from the release's ``<neighborhood>_cell_2d_embedding_
coordinates`` tables (the demo's), read by the atlas, named by ``embedding=`` in the one view reader (a 400 naming
it when wrong), drawn by the map callback."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dash import no_update

from callbacks import map_view, navigation
from components import ids
from core.context import ViewerContext
from core.errors import ViewError
from core.state import parse_query, strict_view, to_query
from data_layer import Atlas
from data_layer.demo import consensus
from settings import Settings

NAME = consensus.TAXONOMY


@pytest.fixture(scope="module")
def context(demo_store):
    return ViewerContext.build(Atlas.open(demo_store), Settings(store=demo_store))


def _table(demo_cache, neighborhood: str) -> pd.DataFrame:
    path = next(demo_cache.rglob(f"{consensus.NEIGHBORHOOD_TABLE.format(neighborhood)}.csv"))
    return pd.read_csv(path, dtype={"cell_label": str})


def test_each_neighborhood_umap_holds_the_csvs_cells_and_coordinates(demo_cache, context):
    atlas = context.atlas
    assert atlas.embeddings(NAME) == sorted(consensus.DEMO_NEIGHBORHOOD_UMAPS)
    for neighborhood in consensus.DEMO_NEIGHBORHOOD_UMAPS:
        table = _table(demo_cache, neighborhood).set_index("cell_label")
        cells = atlas.cells(NAME, embedding=neighborhood)
        labels = cells["cell_label"].astype(str).to_numpy()
        assert sorted(labels) == sorted(table.index)
        np.testing.assert_array_equal(cells["x"].to_numpy(), table.loc[labels, "x"].to_numpy(np.float32))
        np.testing.assert_array_equal(cells["y"].to_numpy(), table.loc[labels, "y"].to_numpy(np.float32))
        assert set(cells["neighborhood"].astype(str)) == {neighborhood}
        # the same cells as in the whole UMAP, with their own coordinates there
        whole = atlas.cells(NAME).set_index("cell_label")
        a, b = atlas.row_range(NAME, embedding=neighborhood)
        assert b - a == len(table)
        np.testing.assert_array_equal(atlas.cells(NAME).iloc[a:b]["cell_label"].astype(str), labels)
        assert not np.allclose(whole.loc[labels, "x"].to_numpy(), cells["x"].to_numpy())
        gene = atlas.gene(NAME, "Snap25", embedding=neighborhood)
        np.testing.assert_array_equal(gene, atlas.gene(NAME, "Snap25")[a:b])
    with pytest.raises(KeyError, match="no UMAP 'MB-GABA'"):
        atlas.cells(NAME, embedding="MB-GABA")


def test_the_view_reader_reads_embedding_and_refuses_a_bad_one_naming_it(context):
    lookups = context.lookups
    kw = dict(gene_lookup=lookups.gene_symbol, term_lookup=lookups.term_level)
    state, notices = parse_query(f"?dataset={NAME}&embedding=nn-imn", context.catalog, **kw)
    assert (state.embedding, notices) == ("NN-IMN", [])
    assert "embedding=NN-IMN" in to_query(state)
    state, notices = parse_query(f"?dataset={NAME}&embedding=Atlantis", context.catalog, **kw)
    assert state.embedding is None and [n.parameter for n in notices] == ["embedding"]
    for dataset, bad in ((NAME, "Atlantis"), ("WMB-10X", "NN-IMN")):
        with pytest.raises(ViewError) as err:
            strict_view({"dataset": dataset, "embedding": bad}, context.catalog, **kw)
        assert err.value.parameter == "embedding" and bad in str(err.value)


def test_the_api_draws_a_neighborhood_umap_and_answers_400_naming_a_bad_embedding(context, demo_store):
    from app import create_app

    client = create_app(Settings(store=demo_store), atlas=context.atlas).server.test_client()
    good = client.get(f"/api/render?dataset={NAME}&embedding=NN-IMN&width=200&height=150")
    assert good.status_code == 200 and good.content_type == "image/png"
    whole = client.get(f"/api/render?dataset={NAME}&width=200&height=150")
    assert whole.data != good.data
    bad = client.get(f"/api/render?dataset={NAME}&embedding=NN&width=200&height=150")
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "embedding"


def test_choosing_a_neighborhood_umap_resets_the_zoom_and_the_map_draws_it(context):
    entry = context.catalog.get(NAME)
    values = {ids.DATASET: NAME, ids.SLAB_PLANE: None, ids.SECTION: None, ids.EMBEDDING: "Pallium-Glut",
              ids.COLOR_BY: "class", ids.GENE: None, ids.TERM: None, ids.GENE_VMIN: None, ids.GENE_VMAX: None,
              ids.VIEWPORT: {"x0": 0, "x1": 1, "y0": 0, "y1": 1}}
    outputs = navigation.selection_step(ids.EMBEDDING, values, context)
    out = {f"{o.component_id}.{o.component_property}": v for o, v in zip(navigation.SELECTION_OUTPUTS, outputs)}
    assert out["viewport.data"] is None and out["embedding.value"] is no_update  # the dropdown already shows it
    state, _ = navigation.resolve_view(ids.EMBEDDING, values, context)
    assert state.embedding == "Pallium-Glut"
    figure, title, notices, key = map_view.map_figure_step(None, state.replace(viewport=None), None, False, context)
    assert "embedding=Pallium-Glut" in figure["layout"]["images"][0]["source"]
    assert f"UMAP of Pallium-Glut · {entry.embedding('Pallium-Glut').n_cells:,} cells" in title
    x_min, x_max = entry.embedding("Pallium-Glut").bounds[:2]
    x_range = figure["layout"]["xaxis"]["range"]
    assert x_range[0] <= x_min and x_range[1] >= x_max and x_range[1] - x_range[0] < 1.3 * (x_max - x_min)
    # a new embedding is a new frame: a full figure, not a patch of the whole UMAP's
    assert key != map_view.frame_key(state.replace(embedding=None))
    # the taxonomy tree counts the neighborhood's cells beside the whole dataset's
    from callbacks import tree

    here = context.atlas.cells(NAME, embedding="Pallium-Glut")["class"].astype(str).value_counts()
    rows = tree.TreeData(context).rows(NAME, None, None, "Pallium-Glut")["class"]
    assert {r.name: r.n_section for r in rows if r.n_section} == here.to_dict()
    assert sum(r.n_total for r in rows) > sum(r.n_section for r in rows)


def test_a_box_in_a_neighborhood_umap_selects_its_cells_by_their_coordinates_there(context):
    from callbacks import selection as sel

    atlas = context.atlas
    x, y = (np.asarray(v, dtype=np.float64) for v in atlas.xy(NAME, embedding="NN-IMN"))
    cx, cy = float(np.median(x)), float(np.median(y))
    box = {"range": {"x": [cx - 2, cx + 2], "y": [cy - 2, cy + 2]}}
    store = sel.selection_step(box, "map", NAME, None, None, None, context, "NN-IMN")
    assert store["embedding"] == "NN-IMN"
    cells, mask, where = sel.SelectedCells(context).get(store)
    inside = (x >= cx - 2) & (x <= cx + 2) & (y >= cy - 2) & (y <= cy + 2)
    assert where == {"embedding": "NN-IMN"} and len(cells) == len(x) and 0 < inside.sum() < len(x)
    np.testing.assert_array_equal(mask, inside)
    # it belongs to that UMAP only: not to the whole one, whose address then drops it
    assert sel.applies(store, NAME, None, None, context, "NN-IMN")
    assert not sel.applies(store, NAME, None, None, context, None)
    href = sel.export_href(store, NAME, None, None, None, "class", None, context, embedding="NN-IMN")
    assert "embedding=NN-IMN" in href
    from app import create_app

    client = create_app(Settings(store=context.settings.store), atlas=atlas).server.test_client()
    answer = client.get(href)
    assert answer.status_code == 200
    labels = set(pd.read_csv(__import__("io").StringIO(answer.get_data(as_text=True)), comment="#")["cell_label"])
    assert labels == set(cells["cell_label"].astype(str)[inside])
    state = navigation.address_state({ids.DATASET: NAME, ids.EMBEDDING: "NN-IMN", ids.COLOR_BY: "class",
                                      ids.SELECTION: store}, context)
    assert "embedding=NN-IMN" in to_query(state) and "sel=" in to_query(state)


def _post(app, output_id: str, values: dict):
    """Answer of the page's callback that outputs ``output_id``'s ``figure``/``children``, posted as Dash's renderer
    posts it: ``values`` maps ``(component id, property)`` to the value of each input and state (others None)."""
    output, spec = next((o, s) for o, s in app.callback_map.items()
                        if s.get("callback") is not None and f"..{output_id}." in f"..{o.lstrip('.')}")
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in parts]
    items = [{"id": d["id"], "property": d["property"], "value": values.get((d["id"], d["property"]))}
             for d in [*spec["inputs"], *spec.get("state", [])]]
    n = len(spec["inputs"])
    body = {"output": output, "outputs": outputs if output.startswith("..") else outputs[0], "inputs": items[:n],
            "state": items[n:], "changedPropIds": [f"{items[0]['id']}.{items[0]['property']}"]}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def test_the_marker_card_and_summary_of_a_selection_in_a_neighborhood_umap_use_that_umaps_cells(context):
    """A box drawn in the NN-IMN UMAP: the page's marker and summary callbacks (real Dash requests) count and compare
    the cells inside the box by their NN-IMN coordinates, against the neighborhood's other cells."""
    from app import create_app
    from callbacks import selection as sel
    from data_layer.analysis import markers_for_selection

    atlas = context.atlas
    x, y = (np.asarray(v, dtype=np.float64) for v in atlas.xy(NAME, embedding="NN-IMN"))
    cx, cy = float(np.median(x)), float(np.median(y))
    store = sel.selection_step({"range": {"x": [cx - 1, cx + 1], "y": [cy - 1, cy + 1]}}, "map", NAME, None, None,
                               None, context, "NN-IMN")
    inside = (x >= cx - 1) & (x <= cx + 1) & (y >= cy - 1) & (y <= cy + 1)
    assert 0 < inside.sum() < len(x) // 2
    app = create_app(Settings(store=context.settings.store), atlas=atlas)
    view = {(ids.DATASET, "value"): NAME, (ids.EMBEDDING, "value"): "NN-IMN", (ids.SELECTION, "data"): store,
            (ids.COMPOSITION_LEVEL, "value"): "class", (ids.ANALYSIS_PANEL, "hidden"): False}
    answer = _post(app, ids.MARKERS_GRAPH, view)
    figure, title, info = (answer[i][p] for i, p in ((ids.MARKERS_GRAPH, "figure"), (ids.MARKERS_TITLE, "children"),
                                                     (ids.MARKERS_INFO, "children")))
    assert title == "of the selection in the NN-IMN UMAP of " + NAME, (title, info)
    rows = figure["layout"]["yaxis"]["categoryarray"]
    assert rows[:2] == [f"Selection ({int(inside.sum()):,})", "Rest"]
    # each dot is the gene's mean log2 and fraction expressing over the cells with expression: the box's cells,
    # then the neighborhood's other cells (not the whole dataset's)
    trace = figure["data"][0]
    dots = {(r, g): (f, m) for g, r, f, m in zip(trace["x"], trace["y"], trace["marker"]["size"],
                                                   trace["marker"]["color"])}
    genes = figure["layout"]["xaxis"]["categoryarray"]
    for gene in genes[:3]:
        values = np.asarray(atlas.gene(NAME, gene, embedding="NN-IMN"), dtype=np.float64)
        for row, part in zip(rows[:2], (inside, ~inside)):
            measured = values[part & np.isfinite(values)]
            np.testing.assert_allclose(dots[(row, gene)], (np.mean(measured > 0), measured.mean()), rtol=1e-5)
    top = markers_for_selection(atlas, NAME, inside, n=len(genes), embedding="NN-IMN")
    assert genes[:len(top)] == top["gene_symbol"].astype(str).tolist()[:len(genes)]
    summary = _post(app, ids.SELECTION_SUMMARY, view)[ids.SELECTION_SUMMARY]["children"]
    assert summary.startswith(f"{int(inside.sum()):,} cells selected in the NN-IMN UMAP of {NAME}")
    # the selection is a group of A versus B, over the same cells; the table's link names the UMAP
    classes = atlas.cells(NAME, embedding="NN-IMN")["class"].astype(str)
    other = classes[~inside].value_counts().index[0]
    compare = {**view, (ids.MARKERS_A, "value"): "@selection", (ids.MARKERS_B, "value"): other}
    href = _post(app, ids.MARKERS_CSV, compare)[ids.MARKERS_CSV]["href"]
    assert "embedding=NN-IMN" in href
    table = app.server.test_client().get(href)
    assert table.status_code == 200
    answer = _post(app, ids.MARKERS_GRAPH, compare)
    counts = answer[ids.MARKERS_GRAPH]["figure"]["data"][0]["text"]
    values = np.asarray(atlas.gene(NAME, genes[0], embedding="NN-IMN"), dtype=np.float64)
    assert any(f"of {int((inside & np.isfinite(values)).sum()):,} cells" in t for t in counts)
