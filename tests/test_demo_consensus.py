"""The demo's consensus mouse taxonomy is a dataset like WMB-10X: listed, six levels, coloured by a gene whose
values are those of its cells' source h5ad files (WMB-10Xv3 for AIBS cells, Macosko-10X for Macosko cells)."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from data_layer import Atlas
from data_layer.demo import consensus

NAME = consensus.TAXONOMY


def test_the_demo_consensus_dataset_is_in_the_catalog_with_levels_and_genes(demo_store):
    atlas = Atlas.open(demo_store)
    assert NAME in atlas.datasets() and atlas.datasets().index(NAME) < atlas.datasets().index("WMB-10X")
    info = atlas.info(NAME)
    assert (info.kind, info.species) == ("umap", "Mouse")
    assert info.levels == list(consensus.LEVELS)
    assert info.n_genes == atlas.info("WMB-10X").n_genes  # Macosko genes are a subset of the WMB-10X genes
    assert atlas.search_genes("snap", NAME)[0]["gene_symbol"] == "Snap25"
    neighborhoods = set(atlas.cells(NAME)["neighborhood"].astype(str))
    assert neighborhoods <= set(consensus.NEIGHBORHOODS) and len(neighborhoods) >= 6


def _lacking_in_macosko(demo_cache) -> str:
    wmb = ad.read_h5ad(next(demo_cache.rglob("WMB-10Xv3-HPF-log2.h5ad")), backed="r")
    mac = ad.read_h5ad(next(demo_cache.rglob("Macosko-10X-HPF-log2.h5ad")), backed="r")
    return str(sorted(set(wmb.var["gene_symbol"].astype(str)) - set(mac.var["gene_symbol"].astype(str)))[0])


def test_demo_consensus_gene_values_are_the_source_values_of_both_origins(demo_cache, demo_store):
    atlas = Atlas.open(demo_store)
    cells = atlas.cells(NAME)
    origins = cells["origin_dataset"].astype(str).to_numpy()
    assert set(origins) == {"WMB-AIBS", "WMB-Macosko"}
    for symbol in ("Snap25", _lacking_in_macosko(demo_cache)):
        values = pd.Series(atlas.gene(NAME, symbol), index=cells["cell_label"].astype(str).to_numpy())
        checked = {"WMB-AIBS": 0, "WMB-Macosko": 0}
        for path in sorted(demo_cache.rglob("*-log2.h5ad")):
            if not path.name.startswith(("WMB-10Xv3-HPF", "Macosko-10X-HPF")):
                continue
            source = ad.read_h5ad(path)
            shared = source.obs_names.intersection(values.index)
            symbols = list(source.var["gene_symbol"].astype(str))
            if symbol in symbols:
                want = np.asarray(source[shared].X[:, symbols.index(symbol)].todense()).ravel().astype(np.float32)
            else:  # the file does not hold the gene: its cells never measured it
                want = np.full(len(shared), np.nan, dtype=np.float32)
            np.testing.assert_array_equal(values.loc[shared].to_numpy(np.float32), want)
            checked["WMB-Macosko" if path.name.startswith("Macosko") else "WMB-AIBS"] += len(shared)
        assert min(checked.values()) > 100
