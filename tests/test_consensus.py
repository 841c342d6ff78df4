"""The consensus mouse taxonomy as a dataset: its UMAP cells joined to their expression in the WMB-10X and the
Macosko h5ad files through the Consensus-WMB-AIBS-10X and -Macosko-10X cell tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from abc_builders import CONSENSUS, CacheBuilder, QuirkyCache, add_consensus
from data_layer import Atlas
from data_layer.prepare import prepare_store

AIBS = "Consensus-WMB-AIBS-10X"
MACOSKO = "Consensus-WMB-Macosko-10X"


@pytest.fixture(scope="module")
def consensus(tmp_path_factory):
    root = tmp_path_factory.mktemp("consensus_expr")
    b = CacheBuilder(root / "cache")
    q = QuirkyCache(root=root / "cache", builder=b)
    rng = np.random.default_rng(5)
    add_consensus(b, q, rng, n=40)
    labels = list(q.tables["consensus/labels"]["cell_label"])
    aibs, macosko = labels[:20], labels[20:38]  # the last two cells are in neither table
    b.csv(AIBS, "cell_metadata", pd.DataFrame({
        "cell_label": aibs, "cell_barcode": "AAAC", "barcoded_cell_sample_label": "s1", "library_label": "L1",
        "dataset_label": "WMB-10Xv3", "feature_matrix_label": "WMB-10Xv3-HPF"}))
    b.csv(MACOSKO, "cell_metadata", pd.DataFrame({
        "cell_label": macosko, "cell_barcode": "GGTC", "barcoded_cell_sample_label": "s2", "library_label": "L2",
        "dataset_label": MACOSKO, "feature_matrix_label": "Macosko-10X-HPF"}))
    b.csv(MACOSKO, "value_sets", pd.DataFrame({
        "label": ["WMB-AIBS", "WMB-Macosko"], "table": "cell_metadata", "field": "origin_dataset",
        "description": "", "order": [0, 1], "external_identifier": "", "parent_label": "",
        "color_hex_triplet": ["#1F77B4", "#FF7F0E"]}))
    genes = [f"ENSMUSG{i:011d}" for i in range(6)]
    symbols = ["Snap25", "Gad1", "Slc17a7", "Olig2", "Aqp4", "Tac1"]
    wmb_rows = aibs + ["OTHER-CELL"]  # a WMB-10X cell that is not a consensus cell
    wmb_x = (rng.gamma(2.0, 2.0, (len(wmb_rows), 6)) * (rng.random((len(wmb_rows), 6)) < 0.6)).astype(np.float32)
    mac_x = (rng.gamma(2.0, 2.0, (len(macosko), 4)) * (rng.random((len(macosko), 4)) < 0.6)).astype(np.float32)
    b.h5ad("WMB-10Xv3", "WMB-10Xv3-HPF", sp.csr_matrix(wmb_x), wmb_rows, genes, symbols)
    b.h5ad(MACOSKO, "Macosko-10X-HPF", sp.csr_matrix(mac_x), macosko, genes[:4], symbols[:4])
    b.write_manifest()
    prepare_store(q.root, root / "store", workers=1)
    expected = pd.DataFrame(np.nan, index=labels, columns=symbols, dtype=np.float32)
    expected.loc[aibs, :] = wmb_x[:20]
    expected.loc[macosko, symbols[:4]] = mac_x
    # a gene the Macosko files do not hold is not measured in their cells: NaN, not 0
    return Atlas.open(root / "store"), expected


def test_the_consensus_dataset_is_listed_with_expression_and_its_six_levels(consensus):
    atlas, _ = consensus
    assert CONSENSUS in atlas.datasets()
    info = atlas.info(CONSENSUS)
    assert (info.kind, info.species, info.n_genes) == ("umap", "Mouse", 6)
    assert info.levels == ["neurotransmitter", "neighborhood", "class", "subclass", "supertype", "cluster"]


def test_consensus_genes_come_from_the_wmb_and_the_macosko_files_exactly(consensus):
    atlas, expected = consensus
    cells = atlas.cells(CONSENSUS)
    want = expected.loc[cells["cell_label"].astype(str)]
    for symbol in ("Snap25", "Olig2", "Aqp4", "Tac1"):
        np.testing.assert_array_equal(atlas.gene(CONSENSUS, symbol), want[symbol].to_numpy(np.float32))


def test_cluster_statistics_of_a_gene_count_only_the_cells_that_measured_it(consensus):
    atlas, expected = consensus
    cells = atlas.cells(CONSENSUS)
    stats = atlas.cluster_stats(CONSENSUS)
    aqp4 = atlas.gene(CONSENSUS, "Aqp4")
    col = stats.gene_symbols.index("Aqp4")
    for k, cluster in enumerate(stats.clusters):
        inside = (cells["cluster"].astype(str) == cluster).to_numpy() & np.isfinite(aqp4)
        if inside.any():
            assert stats.mean[k, col] == pytest.approx(aqp4[inside].mean(), rel=1e-5)


def test_consensus_cells_carry_their_origin_dataset(consensus):
    atlas, _ = consensus
    cells = atlas.cells(CONSENSUS)
    assert cells["origin_dataset"].value_counts().to_dict() == {"WMB-AIBS": 20, "WMB-Macosko": 18, "unknown": 2}
    assert atlas.colors(CONSENSUS, "origin_dataset")[:2] == ["#1f77b4", "#ff7f0e"]


def test_neighborhood_umaps_keep_a_cell_listed_twice_in_the_first_and_leave_out_unknown_cells(tmp_path, caplog):
    b = CacheBuilder(tmp_path / "cache")
    q = QuirkyCache(root=tmp_path / "cache", builder=b)
    add_consensus(b, q, np.random.default_rng(3), n=30)
    labels = list(q.tables["consensus/labels"]["cell_label"])
    b.csv(CONSENSUS, "A-GABA_cell_2d_embedding_coordinates", pd.DataFrame(
        {"cell_label": labels[:10], "x": np.arange(10.0), "y": np.arange(10.0) * 2}))
    b.csv(CONSENSUS, "B-Glut_cell_2d_embedding_coordinates", pd.DataFrame(
        {"cell_label": labels[9:15] + ["NOT-A-CELL"], "x": -np.arange(7.0), "y": np.zeros(7)}))
    b.write_manifest()
    with caplog.at_level("INFO"):
        prepare_store(q.root, tmp_path / "store", workers=1)
    atlas = Atlas.open(tmp_path / "store")
    assert atlas.embeddings(CONSENSUS) == ["A-GABA", "B-Glut"]
    a = atlas.cells(CONSENSUS, embedding="A-GABA")
    assert sorted(a["cell_label"].astype(str)) == sorted(labels[:10])
    np.testing.assert_array_equal(a["y"].to_numpy(), 2 * a["x"].to_numpy())
    got = atlas.cells(CONSENSUS, embedding="B-Glut")
    assert sorted(got["cell_label"].astype(str)) == sorted(labels[10:15])  # labels[9] stays in A-GABA
    assert len(atlas.cells(CONSENSUS)) == 30  # the whole UMAP keeps every cell
    assert "in an earlier neighborhood's UMAP too" in caplog.text and "not cells of the dataset" in caplog.text
