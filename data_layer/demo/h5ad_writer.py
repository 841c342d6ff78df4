"""Write expression matrices as AnnData ``.h5ad`` files, byte for byte reproducibly.

The file follows the AnnData on-disk specification (``encoding-type`` attributes) that ``anndata.read_h5ad``
reads, as the ABC release files do: ``X`` a CSR matrix of float32 with gzip-compressed chunks, ``obs``
indexed by ``cell_label``, ``var`` indexed by ``gene_identifier`` with a ``gene_symbol`` column. Written
directly with h5py (no timestamps, fixed chunking) so the same input always gives the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

_STR = h5py.string_dtype("utf-8")


def _attrs(obj, encoding_type: str, version: str) -> None:
    obj.attrs["encoding-type"] = encoding_type
    obj.attrs["encoding-version"] = version


def _string_array(group: h5py.Group, name: str, values, compression: str | None) -> None:
    data = np.asarray(values, dtype=object)
    ds = group.create_dataset(name, data=data, dtype=_STR, compression=compression,
                              chunks=(min(len(data), 65536),) if len(data) else None)
    _attrs(ds, "string-array", "0.2.0")


def _dataframe(group: h5py.Group, index_name: str, index, columns: dict[str, np.ndarray],
               compression: str | None) -> None:
    _attrs(group, "dataframe", "0.2.0")
    group.attrs["_index"] = index_name
    group.attrs["column-order"] = np.array(list(columns), dtype=object) if columns else np.array([], dtype=np.float64)
    _string_array(group, index_name, index, compression)
    for name, values in columns.items():
        _string_array(group, name, values, compression)


def write_h5ad(path: Path, matrix: sp.csr_matrix, cell_labels, gene_identifiers, gene_symbols,
               compression_level: int = 1, chunk_elements: int = 1 << 18) -> Path:
    """Write one expression matrix.

    Parameters
    ----------
    path : Path
        Output ``.h5ad`` file (parents are created).
    matrix : scipy.sparse.csr_matrix, shape (n_cells, n_genes)
        Values; stored as float32 CSR (``indices`` int32, ``indptr`` int64).
    cell_labels : sequence of str, length n_cells
        ``obs`` index, named ``cell_label``.
    gene_identifiers, gene_symbols : sequence of str, length n_genes
        ``var`` index (``gene_identifier``) and its ``gene_symbol`` column.
    compression_level : int
        gzip level of the matrix chunks.
    chunk_elements : int
        Elements per chunk of ``X/data`` and ``X/indices``.
    """
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    n_cells, n_genes = matrix.shape
    if len(cell_labels) != n_cells or len(gene_identifiers) != n_genes or len(gene_symbols) != n_genes:
        raise ValueError(f"{path.name}: matrix {matrix.shape} does not match {len(cell_labels)} cells "
                         f"and {len(gene_identifiers)} genes")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = matrix.data.astype(np.float32, copy=False)
    indices = matrix.indices.astype(np.int32, copy=False)
    indptr = matrix.indptr.astype(np.int64, copy=False)
    nnz = len(data)
    chunk = (max(1, min(nnz, chunk_elements)),)
    with h5py.File(path, "w", libver="earliest") as f:
        _attrs(f, "anndata", "0.1.0")
        x = f.create_group("X")
        _attrs(x, "csr_matrix", "0.1.0")
        x.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        x.create_dataset("data", data=data, chunks=chunk, compression="gzip", compression_opts=compression_level)
        x.create_dataset("indices", data=indices, chunks=chunk, compression="gzip",
                         compression_opts=compression_level)
        x.create_dataset("indptr", data=indptr, compression="gzip", compression_opts=compression_level,
                         chunks=(max(1, min(len(indptr), chunk_elements)),))
        _dataframe(f.create_group("obs"), "cell_label", cell_labels, {}, "gzip")
        _dataframe(f.create_group("var"), "gene_identifier", gene_identifiers,
                   {"gene_symbol": np.asarray(gene_symbols, dtype=object)}, "gzip")
        for name in ("layers", "obsm", "obsp", "uns", "varm", "varp"):
            _attrs(f.create_group(name), "dict", "0.1.0")
    return path
