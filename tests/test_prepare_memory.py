"""``--memory-limit`` bounds the whole prepare (cell tables, the conversion and its worker processes) at 4 M cells; the
cell tables of every builder (WMB-10X: 4 M cells, the consensus mouse: 7.65 M, the aligned basal ganglia 10X: 2 M, a
MERSCOPE or Xenium set: 1-1.5 M) cost no Python object per cell."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abc_builders import (BG_10X, BG_TAX, BG_TREE, CONSENSUS, HUMAN, WMB, CacheBuilder, QuirkyCache, add_consensus,
                          build_quirky_cache, build_umap_cache)

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, sys
    # Everything prepare imports, so the baseline is taken after imports.
    import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, pyarrow.compute, pyarrow.ipc, h5py, scipy
    import anndata, anndata.io, tqdm, tqdm.contrib.logging, numcodecs
    from data_layer.prepare import prepare_store
    from bench.width_bench import TreeMemory

    if __name__ == "__main__":  # the worker processes import this file
        with TreeMemory(0.005) as memory:  # this process and its workers, sampled every 5 ms
            report = prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=int(sys.argv[3]), workers=2)
        print(json.dumps({"growth": memory.peak - memory.base, "datasets": report.datasets}))
""")


@pytest.mark.slow
def test_prepare_and_its_workers_stay_under_the_memory_limit_at_four_million_cells(tmp_path):
    limit = 2 << 30
    build_umap_cache(tmp_path / "cache", n_cells=4_000_000, n_genes=50, per_row=2)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / "store"), str(limit)],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["datasets"] == {WMB: "prepared"}
    assert 0 < result["growth"] < limit, f"grew {result['growth'] >> 20} MB; limit {limit >> 20} MB"


def _build_within_150_bytes_a_cell(b: CacheBuilder, dataset: str, n: int):
    """The cell table prepare's builder makes of ``dataset`` from the cache ``b`` writes (before the expression),
    after checking that the Python objects and numpy arrays it allocated at its peak stay under 150 bytes a cell
    of its ``n``."""
    import tracemalloc

    import data_layer.prepare as pr
    from data_layer.manifest import LocalCache

    b.write_manifest()
    cache = pr._Cache(LocalCache(b.root))
    plan = next(p for p in pr.plan_units(cache)[1] if p.name == dataset)
    tracemalloc.start()
    try:
        table = pr.BUILDERS[plan.builder](cache, plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * n, f"{dataset}: {peak / n:.0f} bytes a cell"
    return table


def test_the_consensus_cell_tables_hold_no_python_object_per_cell(tmp_path):
    """The consensus UMAP's cells joined to its two cell tables, its memberships and a neighborhood UMAP (the
    builder prepare runs before the expression): the Python objects and numpy arrays it allocates at its peak stay
    under 150 bytes a cell (a Python string per cell label is about 80 bytes, and every pandas join of them
    makes more), and the cells' values are the tables'."""
    n = 100_000
    b = CacheBuilder(tmp_path / "cache")
    q = QuirkyCache(root=tmp_path / "cache", builder=b)
    rng = np.random.default_rng(0)
    add_consensus(b, q, rng, n=n)
    labels = q.tables["consensus/labels"]["cell_label"].to_numpy()
    for ds, rows, fml in (("Consensus-WMB-AIBS-10X", slice(0, n // 2), "WMB-10Xv3-HPF"),
                          ("Consensus-WMB-Macosko-10X", slice(n // 2, n - 5), "Macosko-10X-HPF")):
        b.csv(ds, "cell_metadata", pd.DataFrame({"cell_label": labels[rows], "dataset_label": ds,
                                                 "feature_matrix_label": fml}))
    nn = pd.DataFrame({"cell_label": labels[n // 3:], "x": rng.normal(size=n - n // 3),
                       "y": rng.normal(size=n - n // 3)})
    b.csv(CONSENSUS, "NN-IMN_cell_2d_embedding_coordinates", nn)
    table = _build_within_150_bytes_a_cell(b, CONSENSUS, n)
    cells = table.cells
    assert cells["cell_label"].astype(str).tolist() == labels.tolist()
    origin = np.array(["WMB-AIBS"] * (n // 2) + ["WMB-Macosko"] * (n - 5 - n // 2) + ["unknown"] * 5)
    np.testing.assert_array_equal(cells["origin_dataset"].astype(str).to_numpy(), origin)
    assert cells["feature_matrix_label"].astype(str).tolist()[n - 6:] == ["Macosko-10X-HPF"] + [""] * 5
    expected_alias = [str(i % 3 + 1) for i in range(n - 2)] + ["", ""]  # the membership leaves out two cells
    assert cells["cluster_alias"].tolist() == expected_alias
    emb = table.embeddings["NN-IMN"]
    np.testing.assert_array_equal(emb["row"].to_numpy(), np.arange(n // 3, n))
    np.testing.assert_array_equal(emb[["x", "y"]].to_numpy(), nn[["x", "y"]].to_numpy())


def test_the_wmb_cell_table_holds_no_python_object_per_cell_and_keeps_the_release_values(tmp_path):
    """WMB-10X's ``cell_metadata`` (4 M cells in the release) read by the builder prepare runs before the
    expression: under 150 bytes a cell of Python objects and numpy arrays at its peak; the first row of a repeated
    label is kept, a cell without coordinates left out, an empty region of interest reads ``unknown`` and an alias
    written ``14.0`` is cluster ``14``."""
    n = 100_000
    b = build_umap_cache(tmp_path / "cache", n_cells=10, n_genes=5, per_row=1)
    rng = np.random.default_rng(1)
    labels = np.array([f"GCGAGAAGTTAAGGGC-{i:07d}-CHEM" for i in range(n)], dtype=object)
    labels[5] = labels[4]  # repeated: the first row (4) stays
    x = rng.normal(size=n)
    x[9] = np.nan  # no coordinates: left out
    alias = (np.arange(n) % 12 + 1).astype(str).astype(object)
    alias[3] = "12.0"
    region = np.where(np.arange(n) % 2, "STR", "HPF").astype(object)
    region[10] = ""
    cm = pd.DataFrame({"cell_label": labels, "x": x, "y": rng.normal(size=n), "cluster_alias": alias,
                       "feature_matrix_label": "WMB-10Xv3-STR", "dataset_label": "WMB-10Xv3",
                       "region_of_interest_acronym": region, "library_method": "10Xv3"})
    b.csv(WMB, "cell_metadata", cm)
    table = _build_within_150_bytes_a_cell(b, WMB, n)
    kept = np.ones(n, dtype=bool)
    kept[[5, 9]] = False
    cells = table.cells
    assert cells["cell_label"].astype(str).tolist() == labels[kept].tolist()
    np.testing.assert_array_equal(cells["x"].to_numpy(), x[kept])
    expected_alias = alias[kept].copy()
    expected_alias[3] = "12"
    assert cells["cluster_alias"].tolist() == expected_alias.tolist()
    expected_region = region[kept].copy()
    expected_region[expected_region == ""] = "unknown"
    assert cells["region_of_interest_acronym"].astype(str).tolist() == expected_region.tolist()
    assert table.categorical["region_of_interest_acronym"][0] == ["HPF", "STR", "unknown"]
    assert [f.tag for f in table.expression_files] == ["WMB-10Xv3-STR"]


def test_a_spatial_cell_table_holds_no_python_object_per_cell_and_keeps_the_release_values(tmp_path):
    """A MERSCOPE set's cells (1-1.5 M in the release) joined to their slab coordinates, annotations, memberships and
    supplemental measurements by the builder prepare runs before the expression: under 150 bytes a cell of Python
    objects and numpy arrays at its peak; cells keep cell_metadata's order, the first row of a repeated label (in
    either table), a cell without coordinates is left out, an empty or missing region is the default one, a cell
    is drawn in its section's slab plane (specimen_metadata's, else its coordinates' most common)."""
    from data_layer.prepare import DEFAULT_REGION

    n = 100_000
    rng = np.random.default_rng(2)
    b = CacheBuilder(tmp_path / "cache")
    labels = np.array([f"1324989690_{i}-20250227" for i in range(n)], dtype=object)
    labels[5] = labels[4]  # repeated: row 4 stays
    sections = np.array(["H22.S.01.02", "H22.S.01.01", "H22.S.02.01", "H22.S.03.01"], dtype=object)
    section = sections[np.arange(n) % 4]
    qc = np.arange(n) % 7 != 3
    b.csv(HUMAN, "cell_metadata", pd.DataFrame({
        "cell_label": labels, "brain_section_label": section, "qc_pass": qc, "feature_matrix_label": "MERSCOPE-H22",
        "dataset_label": HUMAN, "abc_sample_id": [f"ddc7b0c5-{i:06d}" for i in range(n)]}))
    section_plane = {"H22.S.01.02": "H22.P.01", "H22.S.01.01": "H22.P.01", "H22.S.02.01": "H22.P.02",
                     "H22.S.03.01": "H22.P.03"}  # the last section is not in specimen_metadata
    plane = np.array([section_plane[s] for s in section], dtype=object)
    coord_plane = plane.copy()
    coord_plane[20:40:4] = "H22.P.02"  # a few cells' coordinates name another plane than their section's
    x, y = rng.uniform(0, 10, n), rng.uniform(0, 8, n)
    distinct = np.flatnonzero(np.arange(n) != 5)
    placed = distinct[distinct != 9]  # cell 9 has no coordinates
    coords = pd.DataFrame({"cell_label": labels[placed], "slab_plane_label": coord_plane[placed],
                           "x_slab_mm": x[placed], "y_slab_mm": y[placed]}).iloc[::-1]
    again = coords[coords["cell_label"] == labels[7]].assign(x_slab_mm=99.0)  # a later row of cell 7: ignored
    orphan = coords.iloc[:1].assign(cell_label="9999999999_orphan-20250227")
    b.csv(HUMAN, "slab_plane_coordinates", pd.concat([coords, again, orphan], ignore_index=True))
    b.csv(HUMAN, "specimen_metadata", pd.DataFrame({
        "brain_section_label": sections[:3], "slab_plane_label": ["H22.P.01", "H22.P.01", "H22.P.02"],
        "slab_plane_order": [1, 1, 2], "brain_section_ordinal": [2, 1, 1], "donor_label": "H22.30.001"}))
    region = np.array(["STR", "GPe", ""], dtype=object)[np.arange(n) % 3]
    annotated = distinct[distinct % 10 != 1]  # every tenth cell has no annotation row
    b.csv(HUMAN, "cell_anatomical_annotations", pd.DataFrame({"cell_label": labels[annotated], "STR": True,
                                                             "parcellation_term_symbol": region[annotated]}))
    alias = np.array([f"Human-{i % 5 + 1}" for i in range(n)], dtype=object)
    mapped = distinct[distinct != 11]
    b.csv(HUMAN, "cell_to_cluster_membership", pd.DataFrame({"cell_label": labels[mapped],
                                                            "cluster_alias": alias[mapped]}))
    volume, count = rng.uniform(100, 900, n), rng.integers(10, 2000, n)
    measured = distinct[distinct != 12]
    b.csv(HUMAN, "cell_supplemental_metadata", pd.DataFrame({"cell_label": labels[measured],
                                                            "volume": volume[measured],
                                                            "transcript_count": count[measured]}))
    b.csv(HUMAN, "donor", pd.DataFrame({"donor_label": ["H22.30.001"], "species_genus": ["Human"]}))
    table = _build_within_150_bytes_a_cell(b, HUMAN, n)

    kept = np.ones(n, dtype=bool)
    kept[[5, 9]] = False
    cells = table.cells
    assert cells["cell_label"].astype(str).tolist() == labels[kept].tolist()
    assert cells["brain_section_label"].astype(str).tolist() == section[kept].tolist()
    np.testing.assert_array_equal(cells["x"].to_numpy(), x[kept])  # cell 7's first coordinate row
    np.testing.assert_array_equal(cells["y"].to_numpy(), y[kept])
    assert cells["qc_pass"].dtype == bool
    np.testing.assert_array_equal(cells["qc_pass"].to_numpy(), qc[kept])
    assert cells["slab_plane_label"].astype(str).tolist() == plane[kept].tolist()
    expected_region = region.copy()
    expected_region[np.arange(n) % 10 == 1] = ""
    expected_region[expected_region == ""] = DEFAULT_REGION
    assert cells["region"].astype(str).tolist() == expected_region[kept].tolist()
    assert table.categorical["region"][0] == [DEFAULT_REGION, "GPe", "STR"]
    expected_alias = alias.copy()
    expected_alias[11] = ""
    assert cells["cluster_alias"].tolist() == expected_alias[kept].tolist()
    assert table.numeric == ["volume", "transcript_count"]
    expected_volume = volume.copy()
    expected_volume[12] = np.nan
    np.testing.assert_array_equal(cells["volume"].to_numpy(), expected_volume[kept])
    expected_count = np.where(np.arange(n) == 12, np.nan, count)
    np.testing.assert_array_equal(cells["transcript_count"].to_numpy(), expected_count[kept])
    assert cells["feature_matrix_label"].astype(str).unique().tolist() == ["MERSCOPE-H22"]
    assert table.sections["brain_section_label"].tolist() == ["H22.S.01.01", "H22.S.01.02", "H22.S.02.01",
                                                              "H22.S.03.01"]
    assert table.sections["slab_plane_label"].tolist() == ["H22.P.01", "H22.P.01", "H22.P.02", "H22.P.03"]
    assert table.species == "Human"


def test_the_aligned_10x_cell_table_holds_no_python_object_per_cell_and_keeps_the_release_values(tmp_path):
    """The aligned basal ganglia 10X (2.04 M nuclei in the release): its taxonomy's UMAP joined to its cell_metadata,
    donors, libraries and memberships by the builder prepare runs before the expression: under 150 bytes a cell of
    Python objects and numpy arrays at its peak; cells keep the UMAP's order, the first row of a repeated label (in
    either table), UMAP cells absent from cell_metadata are left out, species come from the donor (``unknown``
    without one) and regions of interest from the library (``unknown`` when empty or absent)."""
    n = 100_000
    rng = np.random.default_rng(3)
    q = build_quirky_cache(tmp_path / "cache", wmb=False, marmoset=False)
    b = q.builder
    labels = np.array([f"AAACCC{i:010d}-L8TX_{i % 4 + 1}" for i in range(n)], dtype=object)
    labels[5] = labels[4]  # repeated: row 4 stays
    donor = np.array(["H19.30.002", "QM23.50.002", "CJ23.56.001", "X99.00.001"], dtype=object)[np.arange(n) % 4]
    library = np.array([f"L8TX_{i % 4 + 1}" for i in range(n)], dtype=object)
    umi, doublet = rng.integers(1000, 5000, n), rng.uniform(0, 0.3, n)
    b.csv(BG_10X, "cell_metadata", pd.DataFrame({
        "cell_label": labels, "donor_label": donor, "library_label": library,
        "alignment_job_id": [str(1400000 + i) if i % 2 else f"5f3a{i:08x}" for i in range(n)],
        "doublet_score": doublet, "umi_count": umi, "feature_matrix_label": BG_10X, "dataset_label": BG_10X,
        "abc_sample_id": [f"s{i}" for i in range(n)]}))
    b.csv(BG_10X, "library", pd.DataFrame({"library_label": ["L8TX_1", "L8TX_2", "L8TX_3"],
                                           "region_of_interest_label": ["Ca", "GPe", ""]}))  # no L8TX_4
    x, y = rng.normal(0, 5, n), rng.normal(0, 5, n)
    distinct = np.flatnonzero(np.arange(n) != 5)
    in_umap = distinct[distinct != 9][::-1]  # the UMAP lists the cells in reverse; cell 9 is not in it
    emb = pd.DataFrame({"cell_label": labels[in_umap], "x": x[in_umap], "y": y[in_umap]})
    stray = pd.DataFrame({"cell_label": ["GGGTTT000001-L8TX_9", "GGGTTT000002-L8TX_9"], "x": 0.0, "y": 0.0})
    again = emb[emb["cell_label"] == labels[7]].assign(x=99.0)  # a later row of cell 7: ignored
    b.csv(BG_TAX, "cell_2d_embedding_coordinates", pd.concat([emb.iloc[:50], stray, emb.iloc[50:], again],
                                                             ignore_index=True))
    aliases = np.array(list(BG_TREE), dtype=object)[np.arange(n) % len(BG_TREE)]
    mapped = distinct[distinct != 11]
    b.csv(BG_TAX, "cell_to_cluster_membership", pd.DataFrame({"cell_label": labels[mapped],
                                                             "cluster_alias": aliases[mapped]}))
    table = _build_within_150_bytes_a_cell(b, BG_10X, n)

    cells = table.cells
    assert cells["cell_label"].astype(str).tolist() == labels[in_umap].tolist()
    np.testing.assert_array_equal(cells["x"].to_numpy(), x[in_umap])  # cell 7's first row
    np.testing.assert_array_equal(cells["y"].to_numpy(), y[in_umap])
    species = {"H19.30.002": "Human", "QM23.50.002": "Macaque", "CJ23.56.001": "Marmoset", "X99.00.001": "unknown"}
    assert cells["species"].astype(str).tolist() == [species[d] for d in donor[in_umap]]
    assert table.categorical["species"][0] == ["Human", "Macaque", "Marmoset", "unknown"]
    assert table.species is None
    roi = {"L8TX_1": "Ca", "L8TX_2": "GPe", "L8TX_3": "unknown", "L8TX_4": "unknown"}
    assert cells["region_of_interest_label"].astype(str).tolist() == [roi[lib] for lib in library[in_umap]]
    assert table.numeric == ["doublet_score", "umi_count"]
    np.testing.assert_array_equal(cells["umi_count"].to_numpy(), umi[in_umap])
    assert cells["umi_count"].dtype == np.int64
    np.testing.assert_array_equal(cells["doublet_score"].to_numpy(), doublet[in_umap])
    expected_alias = aliases.copy()
    expected_alias[11] = ""
    assert cells["cluster_alias"].tolist() == expected_alias[in_umap].tolist()
    assert cells["feature_matrix_label"].astype(str).unique().tolist() == [BG_10X]
    assert [f.dataset for f in table.expression_files] == [BG_10X]
