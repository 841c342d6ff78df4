"""Exact float32 expression end to end, a bounded number of open files, and a prepare that resumes after a kill."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from abc_builders import WMB, build_umap_cache
from data_layer import Atlas
from data_layer.analysis import export_cells_csv
from data_layer.prepare import prepare_store

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}


def _source_columns(cache: Path, genes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(cell labels, float32 values [n_cells, len(genes)]) read straight from the cache's h5ad."""
    path = next((cache / "expression_matrices").rglob("*.h5ad"))
    with h5py.File(path, "r") as f:
        indptr, indices, data = f["X/indptr"][:], f["X/indices"][:], f["X/data"][:]
        labels = f["obs"][f["obs"].attrs["_index"]].asstr()[:]
        shape = tuple(f["X"].attrs["shape"])
    import scipy.sparse as sp

    matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
    return np.asarray(labels, dtype=object), matrix[:, genes].toarray().astype(np.float32)


@pytest.fixture(scope="module")
def exact_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    build_umap_cache(root / "cache", n_cells=3_000, n_genes=200, per_row=40)
    prepare_store(root / "cache", root / "store", workers=1)
    return root


def test_atlas_gene_gives_the_source_float32_bits_that_float16_cannot_hold(exact_store):
    atlas = Atlas.open(exact_store / "store")
    genes = [0, 7, 101, 199]
    labels, source = _source_columns(exact_store / "cache", genes)
    order = pd.Series(np.arange(len(labels)), index=labels)[atlas.cells(WMB)["cell_label"].to_numpy()].to_numpy()
    expected = source[order]
    assert not np.array_equal(expected.astype(np.float16).astype(np.float32), expected)
    for k, g in enumerate(genes):
        got = atlas.gene(WMB, f"Gene{g}")
        np.testing.assert_array_equal(got.view(np.uint32), expected[:, k].view(np.uint32))
        part = atlas.gene(WMB, f"Gene{g}")[1000:1700]
        np.testing.assert_array_equal(part, expected[1000:1700, k])


def test_the_cells_csv_reads_back_as_the_source_float32_values(exact_store):
    atlas = Atlas.open(exact_store / "store")
    cells = atlas.cells(WMB)
    genes = {"Gene7": atlas.gene(WMB, "Gene7"), "Gene101": atlas.gene(WMB, "Gene101")}
    text = export_cells_csv(cells, genes)
    back = pd.read_csv(io.StringIO(text), dtype={"Gene7": np.float32, "Gene101": np.float32})
    for name, values in genes.items():
        np.testing.assert_array_equal(back[name].to_numpy(np.float32).view(np.uint32), values.view(np.uint32))


def test_the_store_is_smaller_than_uncompressed_indices_and_values(exact_store):
    atlas = Atlas.open(exact_store / "store")
    gm = atlas.expression_matrix(WMB)
    nnz = int(gm.indptr[-1])
    assert nnz == 3_000 * 40
    assert gm.stored_bytes() < 8 * nnz * 0.75


OPEN_FILES_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import numpy as np, pyarrow as pa
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    from data_layer.expression import GeneMatrix, convert_expression
    if __name__ == "__main__":  # the worker processes import this file
        h5ad, out, n_cells = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
        labels = pa.array([f"CELL{i:08d}" for i in range(n_cells)])
        summary = convert_expression([h5ad], labels, out, workers=2, entries_per_task=2_000)
        gm = GeneMatrix(out, n_cells)
        print(json.dumps({"blocks": summary.conversion["n_blocks"], "slices": summary.conversion["n_slices"],
                          "gene3": gm.values(3).tolist()}))
""")


@pytest.mark.slow
def test_a_conversion_with_more_blocks_and_slices_than_open_files_allowed_succeeds(tmp_path):
    build_umap_cache(tmp_path / "cache", n_cells=4_000, n_genes=400, per_row=60)
    h5ad = next((tmp_path / "cache" / "expression_matrices").rglob("*.h5ad"))
    script = tmp_path / "child.py"
    script.write_text(OPEN_FILES_CHILD)
    out = subprocess.run([sys.executable, str(script), str(h5ad), str(tmp_path / "out"), "4000"],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["blocks"] > 64 and result["slices"] > 64
    _, source = _source_columns(tmp_path / "cache", [3])
    np.testing.assert_array_equal(np.asarray(result["gene3"], dtype=np.float32), source[:, 0])


KILL_CHILD = ("import sys; from data_layer.prepare import prepare_store; "
              "prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=96 << 20, workers=1)")


@pytest.mark.slow
def test_a_prepare_killed_after_some_slices_resumes_them_and_gives_the_same_store(tmp_path):
    cache, store = tmp_path / "cache", tmp_path / "store"
    build_umap_cache(cache, n_cells=20_000, n_genes=1_000, per_row=400)
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(cache), str(store)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(store.glob(".work/*/slice-*.npz"))) < 2:
        assert time.monotonic() < deadline, "prepare never finished a slice"
        try:
            child.wait(timeout=0.005)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError("prepare ended before it could be killed midway")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    done_before = len(list(store.glob(".work/*/slice-*.npz")))
    assert not (store / "catalog.json").exists()

    report = prepare_store(cache, store, memory_limit_bytes=96 << 20, workers=1)
    assert report.datasets == {WMB: "prepared"}
    assert not (store / ".work").exists() and not list(store.glob(".tmp-*"))
    atlas = Atlas.open(store)
    meta = atlas.expression_matrix(WMB).meta
    assert meta["conversion"]["slices_resumed"] >= done_before >= 2
    assert meta["conversion"]["slices_resumed"] < meta["conversion"]["n_slices"]

    fresh = tmp_path / "fresh"
    prepare_store(cache, fresh, memory_limit_bytes=96 << 20, workers=1)
    again = Atlas.open(fresh)
    for gene in ("Gene0", "Gene5", "Gene999"):
        np.testing.assert_array_equal(atlas.gene(WMB, gene), again.gene(WMB, gene))
    np.testing.assert_array_equal(atlas.cluster_stats(WMB).mean, again.cluster_stats(WMB).mean)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 6382])
def test_a_chunk_decodes_to_the_same_rows_and_value_bits(n):
    from data_layer import chunks

    rng = np.random.default_rng(n)
    rows = np.sort(rng.choice(20 * max(n, 1), n, replace=False)) + 300_000
    values = rng.gamma(2.0, 3.0, n).astype(np.float32)
    got_rows, got_values = chunks.decode(chunks.encode(rows, values, base=262_144), base=262_144)
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_values.view(np.uint32), values.view(np.uint32))


def test_sorted_rows_cost_under_two_bytes_whatever_the_entry_count():
    from data_layer import chunks

    rng = np.random.default_rng(0)
    for n in (6_376, 6_382):  # Blosc skips its bit shuffle when a buffer is not a multiple of 8 words
        rows = np.cumsum(rng.geometric(0.3, n))
        frame = chunks.encode(rows, np.zeros(n, dtype=np.float32))
        assert len(frame) < 2 * n, (n, len(frame))


def test_a_frame_of_several_genes_restarting_its_deltas_decodes_exactly():
    from data_layer import chunks

    rng = np.random.default_rng(3)
    genes = [np.sort(rng.choice(5_000, k, replace=False)) + 70_000 for k in (40, 0, 1, 300, 9)]
    rows = np.concatenate(genes)
    values = rng.random(len(rows)).astype(np.float32)
    firsts = np.cumsum([len(g) for g in genes])[:-1]
    restarts = np.unique(firsts[(firsts > 0) & (firsts < len(rows))])
    frame = chunks.encode(rows, values, base=70_000, restarts=restarts)
    got_rows, got_values = chunks.decode(frame, base=70_000, restarts=restarts)
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_values, values)
    assert len(frame) < len(chunks.encode(rows, values))  # no jump between genes to store


POOL_CHILD = textwrap.dedent("""
    import sys
    from data_layer.prepare import prepare_store
    if __name__ == "__main__":  # the worker processes import this file
        prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=1 << 30, workers=2)
""")


@pytest.mark.slow
def test_the_worker_processes_of_a_killed_prepare_end_too(tmp_path):
    import psutil

    cache, store = tmp_path / "cache", tmp_path / "store"
    build_umap_cache(cache, n_cells=20_000, n_genes=1_000, per_row=400)
    script = tmp_path / "child.py"
    script.write_text(POOL_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(cache), str(store)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(store.glob(".work/*/slice-*.npz")):
        assert time.monotonic() < deadline, "prepare never finished a slice"
        try:
            child.wait(timeout=0.005)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError("prepare ended before it could be killed midway")
    helpers = psutil.Process(child.pid).children(recursive=True)
    assert len(helpers) >= 2  # the pool's processes
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    _, alive = psutil.wait_procs(helpers, timeout=15)
    for proc in alive:  # leave nothing behind, then fail
        proc.kill()
    assert alive == []


def test_read_range_gives_the_bytes_h5py_reads_for_any_range_layout_and_filter(tmp_path):
    import h5py

    from data_layer.convert import read_range

    rng = np.random.default_rng(11)
    values = {"i4": rng.integers(0, 32_000, 10_007).astype(np.int32),
              "f4": rng.random(10_007).astype(np.float32), ">i8": rng.integers(0, 1 << 40, 10_007).astype(">i8")}
    layouts = {"gzip": {"chunks": (1_000,), "compression": "gzip", "compression_opts": 1},
               "gzip_shuffle": {"chunks": (1_000,), "compression": "gzip", "shuffle": True},
               "chunked_plain": {"chunks": (1_000,)}, "contiguous": {}}
    with h5py.File(tmp_path / "m.h5", "w") as f:
        for kind, data in values.items():
            for name, opts in layouts.items():
                f.create_dataset(f"{kind}/{name}", data=data, **opts)
    ranges = [(0, 10_007), (0, 1), (999, 1_001), (1_000, 2_000), (3_333, 9_999), (10_000, 10_007), (5, 5)]
    with h5py.File(tmp_path / "m.h5", "r") as f:
        for kind in values:
            for name in layouts:
                ds = f[f"{kind}/{name}"]
                for a, b in ranges:
                    got = read_range(ds, a, b)
                    assert got.dtype == ds.dtype and got.tobytes() == ds[a:b].tobytes(), (kind, name, a, b)
                out = np.full(500, -1, dtype=ds.dtype)
                assert read_range(ds, 1_500, 2_000, out) is out and out.tobytes() == ds[1_500:2_000].tobytes()
