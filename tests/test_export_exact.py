"""Exports and the HTTP API give the release's float32 gene values exactly (the h5ad's bits), read through
``Atlas`` from the compressed store, on a cache whose values float16 cannot hold."""
from __future__ import annotations

import io
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest

from abc_builders import WMB, build_umap_cache
from data_layer import Atlas
from data_layer.prepare import prepare_store
from test_expression_exact import _source_columns

GENES = [3, 150]


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    from app import create_app
    from settings import Settings

    root = tmp_path_factory.mktemp("export_exact")
    build_umap_cache(root / "cache", n_cells=2_000, n_genes=200, per_row=30)
    prepare_store(root / "cache", root / "store", workers=1)
    atlas = Atlas.open(root / "store")
    app = create_app(Settings(store=root / "store", export_burst=10_000), atlas=atlas)
    labels, values = _source_columns(root / "cache", GENES)
    expected = pd.DataFrame(values, index=labels, columns=[f"Gene{g}" for g in GENES])
    assert not np.array_equal(values.astype(np.float16).astype(np.float32), values)
    return app.server.test_client(), expected


@pytest.mark.parametrize("route", ["/api/cells.csv", "/export/cells.csv"])
def test_the_cells_csv_holds_the_source_float32_values(exact, route):
    client, expected = exact
    response = client.get(f"{route}?{urlencode({'dataset': WMB, 'genes': ','.join(expected.columns)})}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)), dtype={g: np.float32 for g in expected})
    assert len(table) == len(expected)
    want = expected.loc[table["cell_label"].astype(str)]
    for gene in expected.columns:
        np.testing.assert_array_equal(table[gene].to_numpy(np.float32).view(np.uint32),
                                      want[gene].to_numpy(np.float32).view(np.uint32))


@pytest.mark.parametrize("route", ["/api/cells.h5ad", "/export/cells.h5ad"])
def test_the_cells_h5ad_holds_the_source_float32_values(exact, route, tmp_path):
    import anndata

    client, expected = exact
    response = client.get(f"{route}?{urlencode({'dataset': WMB, 'genes': ','.join(expected.columns)})}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    path = tmp_path / "cells.h5ad"
    path.write_bytes(response.data)
    adata = anndata.read_h5ad(path)
    got = np.asarray(adata[:, list(expected.columns)].X, dtype=np.float32)
    want = expected.loc[adata.obs_names.astype(str)].to_numpy(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
