"""The consensus whole mouse brain demo: ``Consensus-WMB-integrated-taxonomy`` with its UMAP, and the cell tables
that name its cells' expression (``Consensus-WMB-AIBS-10X``, ``Consensus-WMB-Macosko-10X``).

Written after the WMB-10X demo and derived from it, as the release's consensus is from its sources: the AIBS
cells are a sample of the ``WMB-10X`` cells (their expression stays in the ``WMB-10Xv3`` files), the Macosko
cells are new cells of the same clusters whose expression (copied from an AIBS cell of their cluster, on the
genes the Macosko files hold) goes into ``Macosko-10X-<region>-log2.h5ad``. Levels ``neurotransmitter,
neighborhood, class, subclass, supertype, cluster`` (term sets ``CCN20251031_NEUR``, ``CCN20251031_LEVEL_0..4``
with ``parent_term_set_label``); neighborhoods group the classes as the release's nine do; integer aliases.
A few neighborhoods get their own UMAP (``<neighborhood>_cell_2d_embedding_coordinates``, the release's
per-neighborhood tables: ``cell_label, x, y`` of that neighborhood's cells only), laid out from the taxonomy like
the whole-brain one (:func:`neighborhood_embedding`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .h5ad_writer import write_h5ad
from .umap import layout_centres, scatter_islands
from .util import palette, stream, write_csv
import data_layer.demo.wmb as wmb

log = logging.getLogger(__name__)

TAXONOMY = "Consensus-WMB-integrated-taxonomy"
AIBS = "Consensus-WMB-AIBS-10X"
MACOSKO = "Consensus-WMB-Macosko-10X"
VERSION = "20251031"
LEVELS = ("neurotransmitter", "neighborhood", "class", "subclass", "supertype", "cluster")
SET_LABELS = ("CCN20251031_NEUR", "CCN20251031_LEVEL_0", "CCN20251031_LEVEL_1", "CCN20251031_LEVEL_2",
              "CCN20251031_LEVEL_3", "CCN20251031_LEVEL_4")
#: Neighborhood of each WMB class (by its two-digit number), as the release's nine group them.
NEIGHBORHOODS = {
    "Pallium-Glut": (1, 2, 3, 4), "Subpallium-GABA": (5, 6, 7, 8, 9, 10, 11), "HY-EA-Glut-GABA": (12, 13, 14, 15, 16),
    "TH-EPI-Glut": (17, 18, 25), "MB-Glut-Dopa-Sero": (19, 21, 22), "MB-GABA": (20,),
    "P-MY-CB-Glut": (23, 24, 29), "P-MY-CB-GABA": (26, 27, 28), "NN-IMN": (30, 31, 32, 33, 34),
}
#: Neighborhoods whose own UMAP the demo writes (the release has all nine).
DEMO_NEIGHBORHOOD_UMAPS = ("Pallium-Glut", "Subpallium-GABA", "NN-IMN")
#: Table name of a neighborhood's UMAP (the release's file tag).
NEIGHBORHOOD_TABLE = "{}_cell_2d_embedding_coordinates"
#: Macosko files the demo writes: (the release's region of ``Macosko-10X-<region>``, the WMB-10Xv3 region whose
#: cells serve as templates of its cells).
MACOSKO_REGIONS = (("HPF", "HPF"), ("STR", "STR"))
#: The release's ten Macosko files, for a real-size cache (``MY-Pons-BS`` from the WMB ``MY`` cells).
ALL_MACOSKO_REGIONS = (("CB", "CB"), ("HPF", "HPF"), ("HY", "HY"), ("Isocortex", "Isocortex-1"), ("MB", "MB"),
                       ("MY-Pons-BS", "MY"), ("OLF", "OLF"), ("PAL", "PAL"), ("STR", "STR"), ("TH", "TH"))


def write_consensus(cache: Path, n_aibs: int, n_macosko: int, seed: int, bar=None, *, real_size: bool = False
                    ) -> dict:
    """Write the consensus taxonomy and its two cell tables from the WMB-10X demo already in ``cache``.

    Parameters
    ----------
    n_aibs, n_macosko : int
        Cells taken from WMB-10X and new Macosko cells.
    real_size : bool
        The release's proportions (a real-size cache): AIBS cells up to every WMB-10X cell, Macosko cells as
        many as asked over the release's ten Macosko files, and all nine neighborhood UMAPs. Otherwise (the demo)
        at most a third and a sixth of the WMB-10X cells, two Macosko files and three neighborhood UMAPs.

    Returns
    -------
    dict
        ``dataset, cells, aibs_cells, macosko_cells, clusters, genes``.
    """
    rng = stream(seed, "consensus")
    wmb_meta = cache / "metadata" / wmb.CELLS / wmb.CELLS_VERSION
    cells = pd.read_csv(wmb_meta / "cell_metadata.csv", dtype={"cell_label": str, "cluster_alias": "int64",
                                                               "dataset_label": "category",
                                                               "feature_matrix_label": "category"},
                        usecols=["cell_label", "x", "y", "cluster_alias", "dataset_label", "feature_matrix_label"],
                        keep_default_na=False)
    pivot = pd.read_csv(cache / "metadata" / wmb.TAXONOMY / wmb.TAXONOMY_VERSION / "views"
                        / "cluster_to_cluster_annotation_membership_pivoted.csv", keep_default_na=False)
    colors = pd.read_csv(cache / "metadata" / wmb.TAXONOMY / wmb.TAXONOMY_VERSION / "views"
                         / "cluster_to_cluster_annotation_membership_color.csv", keep_default_na=False)
    pivot["neighborhood"] = [_neighborhood(c) for c in pivot["class"]]
    hood_colors = palette(list(NEIGHBORHOODS), 0.61)
    pivot = pivot.merge(colors, on="cluster_alias", how="left")
    pivot["neighborhood_color"] = [hood_colors[h] for h in pivot["neighborhood"]]

    # At most a third of the WMB-10X cells from AIBS and a sixth new ones: the consensus stays smaller than WMB-10X
    # in every demo size (the release's is larger; here WMB-10X stays the demo's big mouse dataset).
    if real_size:
        n_aibs = min(n_aibs, len(cells))
    else:
        n_aibs, n_macosko = min(n_aibs, len(cells) // 3), min(n_macosko, len(cells) // 6)
    aibs = cells.iloc[np.sort(rng.choice(len(cells), n_aibs, replace=False))].reset_index(drop=True)
    macosko, written, genes = _macosko_cells(cache, cells, n_macosko, rng,
                                             ALL_MACOSKO_REGIONS if real_size else MACOSKO_REGIONS)
    if bar is not None:
        bar.update(1)

    tax_dir = cache / "metadata" / TAXONOMY / VERSION
    for name, table in _taxonomy_tables(pivot, colors).items():
        write_csv(table, tax_dir / f"{name}.csv")
    all_cells = pd.concat([aibs[["cell_label", "x", "y", "cluster_alias"]],
                           macosko[["cell_label", "x", "y", "cluster_alias"]]], ignore_index=True)
    order = rng.permutation(len(all_cells))  # the release's table is not grouped by origin
    all_cells = all_cells.iloc[order].reset_index(drop=True)
    write_csv(pd.DataFrame({"cell_label": all_cells["cell_label"], "x": np.round(all_cells["x"], 6),
                            "y": np.round(all_cells["y"], 6)}), tax_dir / "cell_2d_embedding_coordinates.csv")
    write_csv(all_cells[["cell_label", "cluster_alias"]], tax_dir / "cell_to_cluster_membership.csv")
    for hood in (list(NEIGHBORHOODS) if real_size else DEMO_NEIGHBORHOOD_UMAPS):
        coords = neighborhood_embedding(all_cells, pivot, hood, stream(seed, f"consensus-{hood}"))
        if len(coords):
            write_csv(coords, tax_dir / f"{NEIGHBORHOOD_TABLE.format(hood)}.csv")
    if bar is not None:
        bar.update(1)

    write_csv(pd.DataFrame({
        "cell_label": aibs["cell_label"], "cell_barcode": aibs["cell_label"].str.split("-").str[0],
        "barcoded_cell_sample_label": aibs["cell_label"].str.split("-", n=1).str[1],
        "library_label": "L8TX_AIBS", "dataset_label": aibs["dataset_label"],
        "feature_matrix_label": aibs["feature_matrix_label"],
    }), cache / "metadata" / AIBS / VERSION / "cell_metadata.csv")
    mac_dir = cache / "metadata" / MACOSKO / VERSION
    write_csv(pd.DataFrame({
        "cell_label": macosko["cell_label"], "cell_barcode": macosko["cell_label"].str[:16],
        "barcoded_cell_sample_label": macosko["sample"], "library_label": macosko["sample"],
        "dataset_label": MACOSKO, "feature_matrix_label": macosko["feature_matrix_label"],
    }), mac_dir / "cell_metadata.csv")
    write_csv(genes, mac_dir / "gene.csv")
    write_csv(pd.DataFrame({
        "label": ["WMB-AIBS", "WMB-Macosko"], "table": "cell_metadata", "field": "origin_dataset",
        "description": ["Allen Institute 10X cells", "Macosko lab 10X cells"], "order": [0, 1],
        "external_identifier": "", "parent_label": "", "color_hex_triplet": ["#1F77B4", "#FF7F0E"],
    }), mac_dir / "value_sets.csv")
    if bar is not None:
        bar.update(1)
    return {"dataset": TAXONOMY, "cells": len(all_cells), "aibs_cells": len(aibs), "macosko_cells": len(macosko),
            "clusters": len(pivot), "genes": len(genes), "macosko_files": written}


def neighborhood_embedding(cells: pd.DataFrame, pivot: pd.DataFrame, neighborhood: str,
                           rng: np.random.Generator) -> pd.DataFrame:
    """The UMAP of one neighborhood's cells: ``cell_label, x, y`` (rounded to 6 decimals), in the order of
    ``cells`` (columns ``cell_label, cluster_alias``); ``pivot`` has ``cluster_alias, neighborhood, class,
    subclass, supertype, cluster``.

    Like the whole-brain layout (:mod:`.umap`), each cluster an island, islands of a supertype, subclass and class
    gathered, but over this neighborhood's clusters only, so they spread over the whole picture.
    """
    tree = pivot[pivot["neighborhood"] == neighborhood].drop_duplicates("cluster_alias")
    alias_rank = pd.Series(np.arange(len(tree)), index=tree["cluster_alias"].to_numpy())
    rank = cells["cluster_alias"].map(alias_rank)
    inside = rank.notna().to_numpy()
    if not inside.any():
        return pd.DataFrame({"cell_label": [], "x": [], "y": []})
    paths = [tuple(str(v) for v in row) for row in tree[["class", "subclass", "supertype", "cluster"]].to_numpy()]
    centres = layout_centres(paths, (2.2, 0.9, 0.35), rng, top_radius=4.0)
    cluster_of_cell = rank[inside].to_numpy(dtype=np.int64)
    xy = scatter_islands(centres, cluster_of_cell, rng, base_sd=0.06)
    return pd.DataFrame({"cell_label": cells["cell_label"].to_numpy()[inside], "x": np.round(xy[:, 0], 6),
                         "y": np.round(xy[:, 1], 6)})


def _neighborhood(class_name: str) -> str:
    number = int(str(class_name)[:2])
    return next((h for h, classes in NEIGHBORHOODS.items() if number in classes), "NN-IMN")


def _macosko_cells(cache: Path, cells: pd.DataFrame, n: int, rng: np.random.Generator,
                   regions: tuple[tuple[str, str], ...] = MACOSKO_REGIONS
                   ) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """New cells copying the expression of WMB-10Xv3 cells (on a subset of genes) into
    ``Macosko-10X-<region>-log2.h5ad``, for each ``(region, WMB template region)`` of ``regions``; returns
    (cells, files written, the Macosko gene table)."""
    import anndata as ad

    parts, written, genes = [], [], None
    per_region = max(1, n // len(regions))
    by_label = None
    for k, (region, template) in enumerate(regions):
        path = cache / "expression_matrices" / wmb.MATRICES / wmb.MATRICES_VERSION / f"{wmb.MATRICES}-{template}-log2.h5ad"
        if not path.is_file():
            continue
        source = ad.read_h5ad(path)
        if genes is None:  # the Macosko files hold fewer genes (about two thirds in the release): here they
            # lack most predicted (Gm) genes, or the last fifth of the genes when there are few of those
            symbols = source.var["gene_symbol"].astype(str).to_numpy()
            predicted = np.flatnonzero(np.char.startswith(symbols.astype(str), "Gm"))
            if len(predicted) < source.n_vars // 10:
                predicted = np.arange(int(source.n_vars * 0.8), source.n_vars)
            dropped = rng.choice(predicted, int(len(predicted) * 0.8), replace=False)
            keep = np.setdiff1d(np.arange(source.n_vars), dropped)
            genes = pd.DataFrame({"gene_identifier": source.var_names[keep].astype(str),
                                  "gene_symbol": source.var["gene_symbol"].to_numpy()[keep].astype(str)})
        templates = rng.choice(source.n_obs, per_region, replace=True)
        matrix = source.X[templates][:, keep]
        if per_region <= 100_000:  # the demo's labels (its bytes stay as they were)
            labels = np.array([f"{''.join(rng.choice(list('ACGT'), 16))}-MAC{k}{i:06d}" for i in range(per_region)],
                              dtype=object)
        else:  # a real-size cache: the same form, drawn at once
            letters = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (per_region, 16))]
            barcodes = np.ascontiguousarray(letters).view("S16").ravel().astype(str)
            labels = pd.Series(barcodes).str.cat(pd.Series(np.arange(per_region)).map(
                lambda i, k=k: f"MAC{k}{i:07d}"), sep="-").to_numpy(dtype=object)
        tag = f"Macosko-10X-{region}"
        write_h5ad(cache / "expression_matrices" / MACOSKO / VERSION / f"{tag}-log2.h5ad", matrix, labels,
                   genes["gene_identifier"].to_numpy(), genes["gene_symbol"].to_numpy())
        written.append(tag)
        if by_label is None:
            by_label = cells.set_index("cell_label")
        meta = by_label.loc[source.obs_names[templates].astype(str)]
        parts.append(pd.DataFrame({
            "cell_label": labels, "x": meta["x"].to_numpy() + rng.normal(0, 0.05, per_region),
            "y": meta["y"].to_numpy() + rng.normal(0, 0.05, per_region),
            "cluster_alias": meta["cluster_alias"].to_numpy(), "feature_matrix_label": tag,
            "sample": f"pBICCNsMMrMB{k}d230505",
        }))
    if not parts:
        empty = pd.DataFrame(columns=["cell_label", "x", "y", "cluster_alias", "feature_matrix_label", "sample"])
        return empty, written, pd.DataFrame({"gene_identifier": [], "gene_symbol": []})
    return pd.concat(parts, ignore_index=True), written, genes


def _taxonomy_tables(pivot: pd.DataFrame, colors: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Term sets, terms, clusters and cluster memberships of the six levels (the consensus schema)."""
    sets = pd.DataFrame({"label": list(SET_LABELS), "name": list(LEVELS),
                         "description": [f"{lv} level of the consensus taxonomy" for lv in LEVELS],
                         "order": range(len(LEVELS)), "parent_term_set_label": ["", "", *SET_LABELS[1:-1]]})
    rows, labels = [], {}
    for level, name in enumerate(LEVELS):
        seen = pivot.drop_duplicates(name)
        for i, (_, r) in enumerate(seen.iterrows()):
            label = f"CS20251031_{SET_LABELS[level].rsplit('_', 1)[-1]}_{i:04d}"
            labels[(level, r[name])] = label
            # The neurotransmitter and the neighborhood are two roots: a neighborhood mixes neurotransmitters.
            has_parent = level >= 2
            parent = labels[(level - 1, r[LEVELS[level - 1]])] if has_parent else ""
            rows.append({"label": label, "name": r[name], "cluster_annotation_term_set_label": SET_LABELS[level],
                         "cluster_annotation_term_set_name": name, "color_hex_triplet": r[f"{name}_color"],
                         "term_order": i, "term_set_order": level, "parent_term_label": parent,
                         "parent_term_name": r[LEVELS[level - 1]] if has_parent else "",
                         "parent_term_set_label": SET_LABELS[level - 1] if has_parent else ""})
    terms = pd.DataFrame(rows)
    cluster = pd.DataFrame({"label": [labels[(5, c)] for c in pivot["cluster"]],
                            "cluster_alias": pivot["cluster_alias"], "number_of_cells": 0})
    member = [{"cluster_annotation_term_label": labels[(level, r[name])],
               "cluster_annotation_term_set_label": SET_LABELS[level], "cluster_alias": r["cluster_alias"],
               "cluster_annotation_term_set_name": name, "cluster_annotation_term_name": r[name]}
              for _, r in pivot.iterrows() for level, name in enumerate(LEVELS)]
    return {"cluster_annotation_term_set": sets, "cluster_annotation_term": terms, "cluster": cluster,
            "cluster_to_cluster_annotation_membership": pd.DataFrame(member)}
