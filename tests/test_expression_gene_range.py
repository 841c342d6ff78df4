"""A gene's default colour range: stored by prepare, read by ``Atlas.gene_range``, equal to the definition
``rendering.raster.default_gene_range`` over the gene's vector; stores without it compute it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from data_layer import Atlas
from data_layer.expression import (
    DEFAULT_RANGE_PERCENTILE,
    GeneMatrix,
    convert_expression,
    default_range_of_entries,
)
from rendering.raster import default_gene_range


def _write(path: Path, dense: np.ndarray, labels: list[str]) -> Path:
    var = pd.DataFrame(index=pd.Index([f"g{j}" for j in range(dense.shape[1])], name="gene_identifier"))
    obs = pd.DataFrame(index=pd.Index(labels, name="cell_label"))
    ad.AnnData(X=sp.csr_matrix(dense.astype(np.float32)), obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> GeneMatrix:
    """Genes of every shape the definition distinguishes: sparse, none expressed, one cell, negatives, an explicit
    zero; store cells without an expression row (NaN)."""
    d = tmp_path_factory.mktemp("ranges")
    rng = np.random.default_rng(11)
    n_rows = 400
    dense = np.where(rng.random((n_rows, 6)) < 0.2, rng.gamma(2.0, 2.0, (n_rows, 6)), 0.0).astype(np.float32)
    dense[:, 1] = 0.0  # not expressed anywhere
    dense[:, 2] = 0.0
    dense[17, 2] = 3.5  # expressed by one cell
    dense[:, 3] = rng.normal(0.0, 1.0, n_rows)  # z-scores: negatives
    dense[::3, 3] = 0.0
    labels = [f"c{i}" for i in range(n_rows)]
    path = _write(d / "x.h5ad", dense, labels)
    store_labels = labels[50:] + ["no_row_1", "no_row_2"]  # 50 rows dropped, 2 cells without expression
    out = d / "expression"
    convert_expression([path], pa.array(store_labels), out)
    return GeneMatrix(out, len(store_labels))


def test_stored_range_of_every_gene_equals_default_gene_range_of_its_vector(converted):
    assert converted.default_ranges is not None
    for g in range(converted.n_genes):
        assert converted.default_range(g) == default_gene_range(converted.values(g)), g


def test_range_of_a_gene_with_negative_values_is_computed_when_asked(converted):
    assert np.isnan(converted.default_ranges[3]).all()  # needs the implicit zeros: not stored
    vmin, vmax = converted.default_range(3)
    assert vmin < 0 < vmax
    assert (vmin, vmax) == default_gene_range(converted.values(3))


def test_gene_expressed_nowhere_has_range_zero_to_one(converted):
    assert converted.default_range(1) == (0.0, 1.0)


def test_store_without_stored_ranges_computes_the_same_ranges(converted, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(converted.folder, old)
    (old / "gene_range.npy").unlink()
    meta = json.loads((old / "expression.json").read_text())
    meta.pop("default_range_percentile")
    (old / "expression.json").write_text(json.dumps(meta))
    legacy = GeneMatrix(old, converted.n_cells)
    assert legacy.default_ranges is None
    for g in range(legacy.n_genes):
        assert legacy.default_range(g) == converted.default_range(g)


def test_stored_ranges_of_another_percentile_are_not_used(converted, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(converted.folder, other)
    meta = json.loads((other / "expression.json").read_text())
    meta["default_range_percentile"] = DEFAULT_RANGE_PERCENTILE - 4
    (other / "expression.json").write_text(json.dumps(meta))
    assert GeneMatrix(other, converted.n_cells).default_ranges is None


@pytest.mark.parametrize("case", ["sparse", "negative", "all_zero", "nan_and_inf", "constant", "empty"])
def test_range_of_entries_plus_implicit_zeros_equals_the_dense_definition(case):
    rng = np.random.default_rng(5)
    entries = {
        "sparse": rng.gamma(2.0, 1.5, 300).astype(np.float16),
        "negative": rng.normal(0.0, 2.0, 300).astype(np.float32),
        "all_zero": np.zeros(4, dtype=np.float32),
        "nan_and_inf": np.array([np.nan, np.inf, -np.inf, 2.0, 7.0], dtype=np.float32),
        "constant": np.full(20, -1.5, dtype=np.float32),
        "empty": np.zeros(0, dtype=np.float16),
    }[case]
    n_zeros = 0 if case == "constant" else 1000
    dense = np.concatenate([entries.astype(np.float32), np.zeros(n_zeros, np.float32), np.full(30, np.nan, np.float32)])
    assert default_range_of_entries(entries, n_zeros) == default_gene_range(dense)


def test_atlas_gene_range_equals_default_gene_range_on_the_demo_store(demo_store):
    atlas = Atlas.open(demo_store)
    checked = 0
    for dataset in atlas.datasets():
        genes = atlas.genes(dataset)["gene_symbol"].tolist()
        for gene in genes[:: max(1, len(genes) // 15)]:
            expected = default_gene_range(atlas.gene(dataset, gene))
            # both read the same float16 values (widened exactly), so the percentile is the same number
            assert atlas.gene_range(dataset, gene) == expected, (dataset, gene)
            checked += 1
    assert checked > 20
    # the demo store was prepared with the stored ranges
    some = next(d for d in atlas.datasets() if atlas.info(d).n_genes)
    assert atlas.expression_matrix(some).default_ranges is not None


def test_atlas_gene_range_names_an_unknown_gene(demo_store):
    atlas = Atlas.open(demo_store)
    dataset = next(d for d in atlas.datasets() if atlas.info(d).n_genes)
    with pytest.raises(KeyError, match="unknown gene"):
        atlas.gene_range(dataset, "NO_SUCH_GENE_XYZ")
