"""The out-of-core gene-major expression converter and its memory-mapped reader."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from abc_builders import build_umap_cache
from data_layer.expression import ExpressionError, GeneMatrix, convert_expression

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, matrix, labels, genes, symbols=None, encoding="csr") -> Path:
    x = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": lambda m: np.asarray(m.todense())}[encoding](matrix)
    var = pd.DataFrame(index=pd.Index(genes, name="gene_identifier"))
    if symbols is not None:
        var["gene_symbol"] = symbols
    ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(labels, name="cell_label")), var=var).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 600 x 40 log2-like matrix, its h5ad in three encodings, and a store order that permutes, drops and adds."""
    d = tmp_path_factory.mktemp("expr")
    rng = np.random.default_rng(3)
    matrix = sp.random(600, 40, density=0.3, format="csr", dtype=np.float32, random_state=4)
    matrix.data = (matrix.data * 12).astype(np.float32)
    labels = [f"c{i}" for i in range(600)]
    genes = [f"ID{j}" for j in range(40)]
    symbols = [f"Gene{j}" for j in range(40)]
    paths = {enc: _write(d / f"{enc}.h5ad", matrix, labels, genes, symbols, enc) for enc in ("csr", "csc", "dense")}
    perm = rng.permutation(600)[:500]  # 100 h5ad rows are not store cells
    store_labels = [labels[i] for i in perm] + ["absent1", "absent2", "absent3"]
    clusters = rng.integers(-1, 6, len(store_labels)).astype(np.int32)
    dense = matrix.toarray()
    expected = np.vstack([dense[perm], np.full((3, 40), np.nan, dtype=np.float32)])
    return {"dir": d, "paths": paths, "labels": store_labels, "clusters": clusters, "expected": expected,
            "genes": genes, "symbols": symbols}


def _convert(source, tmp_path, encoding="csr", limit=64 << 20, **kw) -> GeneMatrix:
    out = tmp_path / f"out-{encoding}-{limit}"
    convert_expression([source["paths"][encoding]], pa.array(source["labels"]), out,
                       cluster_codes=source["clusters"], n_clusters=6, memory_limit_bytes=limit, **kw)
    return GeneMatrix(out, len(source["labels"]))


@pytest.mark.parametrize("encoding", ["csr", "csc", "dense"])
def test_every_gene_column_equals_the_source_matrix_in_store_row_order(source, tmp_path, encoding):
    gm = _convert(source, tmp_path, encoding)
    got = np.column_stack([gm.values(g) for g in range(gm.n_genes)])
    np.testing.assert_allclose(got, source["expected"], rtol=1e-3, atol=1e-3, equal_nan=True)


def test_the_three_encodings_give_identical_stores(source, tmp_path):
    outs = [_convert(source, tmp_path, enc) for enc in ("csr", "csc", "dense")]
    for gm in outs[1:]:
        np.testing.assert_array_equal(gm.indptr, outs[0].indptr)
        for g in range(gm.n_genes):
            for got, want in zip(gm.entries(g), outs[0].entries(g)):
                np.testing.assert_array_equal(got, want)


def test_a_tiny_memory_budget_splits_genes_into_blocks_without_changing_the_result(source, tmp_path, caplog):
    small = _convert(source, tmp_path, "csr", limit=1, entries_per_task=1_000)  # several slices and blocks
    large = _convert(source, tmp_path, "csr", limit=1 << 30)
    assert small.meta["conversion"]["n_blocks"] > 1 and small.meta["conversion"]["n_slices"] > 1
    for g in range(small.n_genes):
        for got, want in zip(small.entries(g), large.entries(g)):
            np.testing.assert_array_equal(got, want)
    meta = small.meta
    assert meta["nnz"] == int(np.count_nonzero(np.nan_to_num(source["expected"])))


def test_indices_are_sorted_store_rows_within_each_gene(source, tmp_path):
    gm = _convert(source, tmp_path)
    for g in range(gm.n_genes):
        idx, _ = gm.entries(g)
        assert len(idx) == gm.indptr[g + 1] - gm.indptr[g] and (np.diff(idx) > 0).all()


@pytest.mark.parametrize("store_order", ["ascending", "permuted"])
@pytest.mark.parametrize("columns", ["ascending", "reversed"])
def test_a_transpose_in_bands_of_columns_keeps_every_entry_and_each_gene_in_row_order(tmp_path, monkeypatch, columns,
                                                                                      store_order):
    import data_layer.convert as cv

    monkeypatch.setattr(cv, "SCATTER_BAND", 7)  # 40 genes: six bands
    matrix = sp.random(300, 40, density=0.3, format="csr", dtype=np.float32, random_state=5)
    if columns == "reversed":  # CSR rows whose columns descend: one sweep instead of bands
        for r in range(300):
            a, b = matrix.indptr[r], matrix.indptr[r + 1]
            matrix.indices[a:b], matrix.data[a:b] = matrix.indices[a:b][::-1].copy(), matrix.data[a:b][::-1].copy()
        matrix.has_sorted_indices = False
    labels = [f"c{i}" for i in range(300)]
    path = _write(tmp_path / "m.h5ad", matrix, labels, [f"ID{j}" for j in range(40)])
    import h5py

    with h5py.File(path, "r") as f:
        first = f["X/indices"][int(f["X/indptr"][0]):int(f["X/indptr"][1])]
    assert (np.diff(first) < 0).all() if columns == "reversed" else (np.diff(first) > 0).all()
    order = np.arange(300) if store_order == "ascending" else np.random.default_rng(2).permutation(300)
    out = tmp_path / "out"
    convert_expression([path], pa.array([labels[i] for i in order]), out, workers=1)
    gm = GeneMatrix(out, 300)
    dense = matrix.toarray()[order]
    for g in range(40):
        np.testing.assert_array_equal(gm.values(g).view(np.uint32), dense[:, g].view(np.uint32))
        rows, _ = gm.entries(g)
        assert (np.diff(rows) > 0).all()


def test_cells_without_a_row_are_nan_and_undetected_genes_are_zero(source, tmp_path):
    gm = _convert(source, tmp_path)
    v = gm.values(0)
    assert np.isnan(v[-3:]).all()
    assert (v[:-3][source["expected"][:-3, 0] == 0] == 0).all()
    assert gm.has_expression.sum() == len(source["labels"]) - 3


def test_a_row_range_equals_the_slice_of_the_whole_column(source, tmp_path):
    gm = _convert(source, tmp_path)
    for g in (0, 7, 39):
        np.testing.assert_array_equal(gm.values(g, 120, 377), gm.values(g)[120:377])


def test_cluster_mean_and_fraction_match_a_direct_computation(source, tmp_path):
    gm = _convert(source, tmp_path, limit=1)
    stats = gm.cluster_stats([f"k{i}" for i in range(6)])
    exp = source["expected"]
    for c in range(6):
        rows = (source["clusters"] == c) & ~np.isnan(exp[:, 0])
        np.testing.assert_allclose(stats.mean[c], exp[rows].mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.fraction[c], (exp[rows] > 0).mean(axis=0), rtol=1e-6)
        assert stats.n_cells[c] == rows.sum()


def test_values_are_the_source_float32_bits_including_those_float16_cannot_hold(source, tmp_path):
    values = np.array([[9.4221, 0.0, 5000.0001], [1e-7, 3.0, -2.5], [np.float32(2049.0), 7.000061, 0.0]],
                      dtype=np.float32)
    path = _write(tmp_path / "exact.h5ad", sp.csr_matrix(values), ["a", "b", "c"], ["g1", "g2", "g3"])
    convert_expression([path], pa.array(["c", "a", "b"]), tmp_path / "exact")
    gm = GeneMatrix(tmp_path / "exact", 3)
    got = np.column_stack([gm.values(g) for g in range(3)])
    np.testing.assert_array_equal(got.view(np.uint32), values[[2, 0, 1]].view(np.uint32))
    assert not np.array_equal(values.astype(np.float16).astype(np.float32), values)  # float16 would differ


def test_a_cell_in_two_files_keeps_its_first_row(tmp_path):
    a = _write(tmp_path / "a.h5ad", sp.csr_matrix(np.array([[1.0], [2.0]], dtype=np.float32)), ["x", "y"], ["g"])
    b = _write(tmp_path / "b.h5ad", sp.csr_matrix(np.array([[9.0], [3.0]], dtype=np.float32)), ["y", "z"], ["g"])
    convert_expression([a, b], pa.array(["z", "y", "x"]), tmp_path / "out")
    np.testing.assert_array_equal(GeneMatrix(tmp_path / "out", 3).values(0), [3.0, 2.0, 1.0])


def test_genes_of_several_files_are_united_by_identifier_and_unmeasured_where_a_file_lacks_them(tmp_path):
    a = _write(tmp_path / "a.h5ad", sp.csr_matrix(np.array([[1.0, 2.0]], dtype=np.float32)), ["x"], ["g1", "g2"])
    b = _write(tmp_path / "b.h5ad", sp.csr_matrix(np.array([[3.0, 4.0]], dtype=np.float32)), ["y"], ["g2", "g3"])
    convert_expression([a, b], pa.array(["x", "y"]), tmp_path / "out", gene_symbols={"g3": "Sym3"})
    gm = GeneMatrix(tmp_path / "out", 2)
    assert list(gm.gene_identifiers) == ["g1", "g2", "g3"]
    assert gm.gene_symbols[2] == "Sym3"
    np.testing.assert_array_equal(gm.values(1), [2.0, 3.0])
    np.testing.assert_array_equal(gm.values(2), [np.nan, 4.0])  # a.h5ad does not hold g3: x never measured it
    np.testing.assert_array_equal(gm.values(0), [1.0, np.nan])


def test_genes_resolve_by_symbol_in_any_case_or_by_identifier(source, tmp_path):
    gm = _convert(source, tmp_path)
    assert gm.resolve("gene7") == gm.resolve("GENE7") == gm.resolve("ID7") == 7


def test_an_unknown_gene_raises_keyerror_naming_close_matches(source, tmp_path):
    gm = _convert(source, tmp_path)
    with pytest.raises(KeyError, match="Gene1") as exc:
        gm.resolve("Gene1x", "D")
    assert "unknown gene 'Gene1x' in D" in str(exc.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_h5ad_raises_an_error_naming_the_file(source, tmp_path, damage):
    bad = tmp_path / "bad.h5ad"
    data = source["paths"]["csr"].read_bytes()
    bad.write_bytes(b"not an hdf5 file" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ExpressionError, match="bad.h5ad"):
        convert_expression([bad], pa.array(source["labels"]), tmp_path / "out")


MEMORY_CHILD = textwrap.dedent("""
    import json, sys
    import psutil
    # Everything prepare imports, so the baseline is taken after imports.
    import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, pyarrow.compute, pyarrow.ipc, h5py, scipy
    import anndata, anndata.io, tqdm, tqdm.contrib.logging
    from data_layer.prepare import prepare_store
    # A small cache of the same kind first: the compiled loops are loaded, or compiled when the machine's numba
    # cache is cold (LLVM's memory), once per process like an import; then the peak is reset to now.
    prepare_store(sys.argv[4], sys.argv[5], memory_limit_bytes=int(sys.argv[3]))
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := the current RSS
    baseline = psutil.Process().memory_info().rss
    report = prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=int(sys.argv[3]))
    # VmHWM: peak RSS of this address space. (ru_maxrss would include the forking parent's peak.)
    status = open("/proc/self/status").read()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) * 1024
    print(json.dumps({"baseline": baseline, "peak": peak, "datasets": report.datasets}))
""")


@pytest.mark.slow
def test_prepare_peak_memory_stays_under_the_limit_for_a_matrix_four_times_larger(tmp_path):
    limit = 64 << 20
    build_umap_cache(tmp_path / "cache", n_cells=32_000, n_genes=2_000, per_row=1_000)
    build_umap_cache(tmp_path / "small", n_cells=2_000, n_genes=2_000, per_row=1_000)
    h5ad = next((tmp_path / "cache" / "expression_matrices").rglob("*.h5ad"))
    matrix_bytes = 32_000 * 1_000 * 8  # indices + data
    assert matrix_bytes >= 3.5 * limit and h5ad.stat().st_size >= 3.5 * limit
    script = tmp_path / "child.py"
    script.write_text(MEMORY_CHILD)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / "store"), str(limit),
                          str(tmp_path / "small"), str(tmp_path / "small_store")],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["datasets"] == {"WMB-10X": "prepared"}
    growth = result["peak"] - result["baseline"]
    assert growth < limit, f"peak grew {growth >> 20} MB over the baseline; limit {limit >> 20} MB"
