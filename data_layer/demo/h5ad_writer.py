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


class StreamingH5adWriter:
    """Write one expression matrix chunk of cells by chunk of cells, in bounded memory.

    The same layout as :func:`write_h5ad` (float32 CSR ``X`` with ``int32`` indices and ``int64`` indptr, gzip
    chunks, ``obs`` indexed by ``cell_label``, ``var`` by ``gene_identifier`` with ``gene_symbol``), but ``X/data``,
    ``X/indices``, ``X/indptr`` and the ``obs`` index are resizable datasets that grow with each
    :meth:`append`, so a matrix of any size is written without holding it. Use as a context manager; the shape
    attribute and the ``var`` table are written when it closes.

    Parameters
    ----------
    path : Path
        Output ``.h5ad`` file (parents are created).
    gene_identifiers, gene_symbols : sequence of str, length n_genes
    compression_level : int
        gzip level of the matrix chunks (1: fast, as large files need).
    chunk_elements : int
        Elements per HDF5 chunk of ``X/data`` and ``X/indices``.
    """

    def __init__(self, path: Path, gene_identifiers, gene_symbols, compression_level: int = 1,
                 chunk_elements: int = 1 << 18):
        if len(gene_identifiers) != len(gene_symbols):
            raise ValueError(f"{path.name}: {len(gene_identifiers)} gene identifiers but {len(gene_symbols)} symbols")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gene_identifiers = np.asarray(gene_identifiers, dtype=object)
        self.gene_symbols = np.asarray(gene_symbols, dtype=object)
        self.n_cells = 0
        self.nnz = 0
        gz = {"compression": "gzip", "compression_opts": compression_level}
        self._file = h5py.File(self.path, "w", libver="earliest")
        _attrs(self._file, "anndata", "0.1.0")
        x = self._file.create_group("X")
        _attrs(x, "csr_matrix", "0.1.0")
        self._x = x
        self._data = x.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32,
                                      chunks=(chunk_elements,), **gz)
        self._indices = x.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32,
                                         chunks=(chunk_elements,), **gz)
        self._indptr = x.create_dataset("indptr", data=np.zeros(1, dtype=np.int64), maxshape=(None,),
                                        chunks=(1 << 16,), **gz)
        obs = self._file.create_group("obs")
        _attrs(obs, "dataframe", "0.2.0")
        obs.attrs["_index"] = "cell_label"
        obs.attrs["column-order"] = np.array([], dtype=np.float64)
        self._labels = obs.create_dataset("cell_label", shape=(0,), maxshape=(None,), dtype=_STR,
                                          chunks=(1 << 16,), compression="gzip")
        _attrs(self._labels, "string-array", "0.2.0")

    @staticmethod
    def _grow(ds: h5py.Dataset, values: np.ndarray) -> None:
        start = ds.shape[0]
        ds.resize((start + len(values),))
        if len(values):
            ds[start:] = values

    def append(self, matrix: sp.csr_matrix, cell_labels) -> None:
        """Add ``matrix`` (CSR, shape (n, n_genes)) as the next ``n`` cells, named ``cell_labels``."""
        matrix = sp.csr_matrix(matrix)
        matrix.sort_indices()
        if matrix.shape[1] != len(self.gene_identifiers) or matrix.shape[0] != len(cell_labels):
            raise ValueError(f"{self.path.name}: chunk {matrix.shape} does not match {len(cell_labels)} cells "
                             f"and {len(self.gene_identifiers)} genes")
        self._grow(self._data, matrix.data.astype(np.float32, copy=False))
        self._grow(self._indices, matrix.indices.astype(np.int32, copy=False))
        self._grow(self._indptr, matrix.indptr[1:].astype(np.int64) + self.nnz)
        self._grow(self._labels, np.asarray(cell_labels, dtype=object))
        self.n_cells += matrix.shape[0]
        self.nnz += matrix.nnz

    def close(self) -> Path:
        """Write the shape, ``var`` and the empty AnnData groups, and close the file."""
        if self._file is None:
            return self.path
        try:
            self._x.attrs["shape"] = np.array([self.n_cells, len(self.gene_identifiers)], dtype=np.int64)
            _dataframe(self._file.create_group("var"), "gene_identifier", self.gene_identifiers,
                       {"gene_symbol": self.gene_symbols}, "gzip")
            for name in ("layers", "obsm", "obsp", "uns", "varm", "varp"):
                _attrs(self._file.create_group(name), "dict", "0.1.0")
        finally:
            self._file.close()
            self._file = None
        return self.path

    def __enter__(self) -> "StreamingH5adWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)
            return
        self.close()
