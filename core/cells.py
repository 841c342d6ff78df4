"""Cell export of a view: its cells (its section or slab plane inside its viewport, optionally a box or polygon
selection) as CSV or as h5ad with the chosen genes, with the release's values.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np

from core.context import ViewerContext
from core.errors import ViewError
from core.requests import MAX_EXPORT_CELLS, MAX_EXPORT_VALUES, CellOptions
from core.state import ViewState, to_query
from core.scope import inside_window, where_of

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- cells
def cells_mask(context: ViewerContext, state: ViewState, cells: Any, selection: dict | None) -> np.ndarray:
    """``(n,)`` bool mask of the cells of a view: inside its viewport (all without one) and its selection
    (``{"kind", "xs", "ys"}``, read from the app's one mask cache)."""
    x = cells["x"].to_numpy()
    y = cells["y"].to_numpy()
    mask = np.ones(len(cells), dtype=bool) if state.viewport is None else inside_window(x, y, state.viewport)
    if selection is not None:
        mask = mask & context.masks.mask(state.dataset, where_of(context, state), selection)
    return mask


def count_cells(context: ViewerContext, state: ViewState, selection: dict | None = None) -> int:
    """Cells a cell export of this view would hold."""
    cells = context.atlas.cells(state.dataset, **where_of(context, state))
    return int(np.count_nonzero(cells_mask(context, state, cells, selection)))


def export_cells(context: ViewerContext, state: ViewState, options: CellOptions) -> tuple[bytes, int]:
    """The cells of a view as CSV or h5ad.

    CSV: one line per cell with its label, coordinates, section, slab plane, region, every taxonomy level and
    the chosen genes (log2; empty where the cell has no expression row). h5ad: ``X`` = the chosen genes' log2
    values (float32 ``(n_cells, n_genes)``, NaN where the cell has no expression row), ``obs`` = the cell table
    indexed by ``cell_label``, ``var`` = the genes (symbol index, ``gene_identifier``), ``obsm["spatial"]``
    (sections, mm) or ``obsm["X_umap"]``, and ``uns["atlas_viewer"]`` = the view's address.

    Returns
    -------
    (bytes, int)
        The file and its number of cells.

    Raises
    ------
    ViewError
        Naming ``selection`` (too many cells) or ``genes`` (too many values).
    """
    from data_layer.analysis import export_cells_csv

    atlas = context.atlas
    where = where_of(context, state)
    cells = atlas.cells(state.dataset, **where)
    mask = cells_mask(context, state, cells, options.selection)
    n_cells = int(np.count_nonzero(mask))
    if n_cells > MAX_EXPORT_CELLS:
        raise ViewError("selection", f"the view holds {n_cells:,} cells; an export is limited to "
                                              f"{MAX_EXPORT_CELLS:,} (zoom in or select)")
    if n_cells * len(options.genes) > MAX_EXPORT_VALUES:
        raise ViewError("genes", f"{n_cells:,} cells x {len(options.genes)} genes is over "
                                          f"{MAX_EXPORT_VALUES:,} values; choose fewer genes or cells")
    genes = {symbol: atlas.gene(state.dataset, symbol, **where) for symbol in options.genes}
    if options.fmt == "csv":
        text = export_cells_csv(cells, genes, mask)
        return text.encode("utf-8"), n_cells
    return _h5ad_bytes(context, state, cells, genes, mask), n_cells


def _h5ad_bytes(context: ViewerContext, state: ViewState, cells: Any, genes: dict[str, np.ndarray],
                mask: np.ndarray) -> bytes:
    import anndata
    import pandas as pd

    entry = context.catalog.get(state.dataset)
    obs = cells.loc[mask].reset_index(drop=True)
    for name in obs.columns:
        if isinstance(obs[name].dtype, pd.CategoricalDtype):
            obs[name] = obs[name].cat.remove_unused_categories()
        elif name == "cell_label" or pd.api.types.is_string_dtype(obs[name]):
            obs[name] = obs[name].astype(str).astype(object)
    obs.index = pd.Index(obs.pop("cell_label").to_numpy(dtype=object), name="cell_label")
    obs.index = obs.index.astype(str)
    symbols = list(genes)
    if symbols:
        matrix = np.column_stack([np.asarray(genes[s], dtype=np.float32)[mask] for s in symbols])
    else:
        matrix = np.zeros((len(obs), 0), dtype=np.float32)
    identifiers = [str(context.atlas.resolve_gene(state.dataset, s)[0]) for s in symbols]
    var = pd.DataFrame({"gene_identifier": identifiers}, index=pd.Index(symbols, dtype=object, name="gene_symbol"))
    adata = anndata.AnnData(X=matrix, obs=obs, var=var)
    xy = np.column_stack([obs["x"].to_numpy(np.float32), obs["y"].to_numpy(np.float32)])
    adata.obsm["spatial" if entry.spatial else "X_umap"] = xy
    adata.uns["atlas_viewer"] = {
        "dataset": state.dataset, "view": to_query(state), "units": "mm" if entry.spatial else "UMAP",
        "X": "log2 expression of the chosen genes; NaN where the cell has no expression row",
    }
    handle, path = tempfile.mkstemp(prefix="atlas-export-", suffix=".h5ad")
    os.close(handle)
    try:
        adata.write_h5ad(path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


