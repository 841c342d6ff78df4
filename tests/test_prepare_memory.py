"""``--memory-limit`` bounds the whole prepare (cell tables, the conversion and its worker processes) at 4 M cells; the
consensus mouse's cell tables (7.65 M cells in the release) cost no Python object per cell."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abc_builders import CONSENSUS, WMB, CacheBuilder, QuirkyCache, add_consensus, build_umap_cache

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


def test_the_consensus_cell_tables_hold_no_python_object_per_cell(tmp_path):
    """The consensus UMAP's cells joined to its two cell tables, its memberships and a neighborhood UMAP (the
    builder prepare runs before the expression): the Python objects and numpy arrays it allocates at its peak stay
    under 150 bytes a cell (a Python string per cell label is about 80 bytes, and every pandas join of them
    makes more), and the cells' values are the tables'."""
    import tracemalloc

    import data_layer.prepare as pr
    from data_layer.manifest import LocalCache

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
    b.write_manifest()
    cache = pr._Cache(LocalCache(tmp_path / "cache"))
    plan = next(p for p in pr.plan_units(cache)[1] if p.name == CONSENSUS)
    tracemalloc.start()
    try:
        table = pr.BUILDERS[plan.builder](cache, plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * n, f"{peak / n:.0f} bytes a cell"
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
    import tracemalloc

    import data_layer.prepare as pr
    from data_layer.manifest import LocalCache

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
    b.write_manifest()
    cache = pr._Cache(LocalCache(tmp_path / "cache"))
    plan = next(p for p in pr.plan_units(cache)[1] if p.name == WMB)
    tracemalloc.start()
    try:
        table = pr.BUILDERS[plan.builder](cache, plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * n, f"{peak / n:.0f} bytes a cell"
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
