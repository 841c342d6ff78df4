"""The expression conversion's temporary disk bound (passes over the sources) and its dask.distributed runner:
both give the store the local one-pass conversion gives, value for value."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from data_layer.expression import ExpressionError, GeneMatrix, convert_expression
from test_expression import _write

N_CELLS, N_GENES = 900, 60


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two CSR files of a 900 x 60 float32 matrix (skewed gene densities), and a store order that permutes and
    drops rows and adds cells without expression."""
    d = tmp_path_factory.mktemp("passes")
    rng = np.random.default_rng(11)
    density = np.linspace(0.02, 0.6, N_GENES)[rng.permutation(N_GENES)]
    mask = rng.random((N_CELLS, N_GENES)) < density
    dense = np.where(mask, rng.gamma(1.5, 3.0, mask.shape), 0).astype(np.float32)
    labels = [f"c{i}" for i in range(N_CELLS)]
    genes = [f"ID{j}" for j in range(N_GENES)]
    paths = [_write(d / "a.h5ad", sp.csr_matrix(dense[:500]), labels[:500], genes),
             _write(d / "b.h5ad", sp.csr_matrix(dense[500:]), labels[500:], genes)]
    order = rng.permutation(N_CELLS)[:850]
    store_labels = [labels[i] for i in order] + ["none1", "none2"]
    clusters = rng.integers(-1, 5, len(store_labels)).astype(np.int32)
    return {"dir": d, "paths": paths, "labels": pa.array(store_labels), "clusters": clusters}


def _convert(source, out, **kw):
    summary = convert_expression(source["paths"], source["labels"], out, cluster_codes=source["clusters"],
                                 n_clusters=5, memory_limit_bytes=64 << 20, entries_per_task=5_000, **kw)
    return summary, GeneMatrix(out, len(source["labels"]))


def _assert_same_store(got: GeneMatrix, want: GeneMatrix) -> None:
    np.testing.assert_array_equal(got.indptr, want.indptr)
    for g in range(want.n_genes):
        for a, b in zip(got.entries(g), want.entries(g)):
            np.testing.assert_array_equal(a, b)  # rows and the float32 bits
        np.testing.assert_array_equal(got.values(g), want.values(g))
    for name in ("cluster_mean.npy", "cluster_fraction.npy", "cluster_n_cells.npy", "gene_range.npy",
                 "has_expression.npy"):
        np.testing.assert_array_equal(np.load(got.folder / name), np.load(want.folder / name), err_msg=name)


@pytest.fixture(scope="module")
def one_pass(source, tmp_path_factory):
    return _convert(source, tmp_path_factory.mktemp("one") / "store", workers=1)


def test_a_temporary_disk_limit_converts_in_passes_within_the_limit_and_gives_the_same_store(source, one_pass,
                                                                                              tmp_path):
    limit = 160_000
    summary, gm = _convert(source, tmp_path / "store", workers=1, temp_limit_bytes=limit)
    conv = summary.conversion
    assert conv["extra"]["passes"] > 1
    assert 0 < conv["temp_bytes_peak"] <= limit
    assert one_pass[0].conversion["extra"]["passes"] == 1
    _assert_same_store(gm, one_pass[1])
    assert not (tmp_path / "store" / "_work").exists()


def test_a_temporary_disk_limit_too_small_for_one_gene_group_is_a_clear_error(source, tmp_path):
    with pytest.raises(ExpressionError, match=r"temporary disk limit .*--temp-limit"):
        _convert(source, tmp_path / "store", workers=1, temp_limit_bytes=20_000)


def test_a_dask_scheduler_runs_the_same_tasks_and_gives_the_same_store(source, one_pass, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="1GB") as cluster:
        summary, gm = _convert(source, tmp_path / "store", scheduler=cluster.scheduler_address)
    assert summary.conversion["workers"] == 2
    assert summary.conversion["extra"]["scheduler"] == cluster.scheduler_address
    _assert_same_store(gm, one_pass[1])


def test_an_unreachable_scheduler_is_a_clear_error(source, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import data_layer.convert as cv

    monkeypatch.setattr(cv, "SCHEDULER_TIMEOUT_S", 2.0)
    with pytest.raises(ExpressionError, match="tcp://127.0.0.1:1"):
        _convert(source, tmp_path / "store", scheduler="tcp://127.0.0.1:1")


def test_a_conversion_in_passes_killed_midway_resumes_and_gives_the_same_store(source, one_pass, tmp_path,
                                                                             monkeypatch):
    import data_layer.convert as cv

    real, calls = cv.run_block, []

    def dies_at_the_third_block(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(cv, "run_block", dies_at_the_third_block)
    kw = {"workers": 1, "temp_limit_bytes": 160_000, "work_dir": tmp_path / "work"}
    with pytest.raises(RuntimeError, match="killed"):
        _convert(source, tmp_path / "store", **kw)
    assert 2 in calls
    monkeypatch.setattr(cv, "run_block", real)
    summary, gm = _convert(source, tmp_path / "store", **kw)
    assert summary.conversion["extra"]["passes"] > 1
    assert summary.conversion["blocks_resumed"] == len(calls) - 1 >= 2  # every block but the one that died
    _assert_same_store(gm, one_pass[1])
