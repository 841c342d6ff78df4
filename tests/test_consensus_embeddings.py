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
