"""The aligned 10X Multiome nuclei (``HMBA-10xMultiome-BG-Aligned``) and the BG taxonomy dataset.

Nuclei of three primates come from dissections of caudate, putamen, accumbens, both pallidal segments,
substantia nigra, subthalamic nucleus and ventral tegmental area, NeuN-enriched so neurons dominate.
The taxonomy dataset (``HMBA-BG-taxonomy-CCN20250428``) holds the term tables, the nuclei's cluster
membership and their UMAP (``cell_2d_embedding_coordinates``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .bgmodel import BGModel, assign_clusters, assign_groups
from .compositions import DISSECTION_NAMES, dissection_composition
from .counts import log2_cpm, sample_counts
from .genes import ncbi_id
from .h5ad_writer import write_h5ad
from .scale import DemoScale
from .taxonomy_bg import TAXONOMY, taxonomy_tables
from .umap import branching_embedding
from .util import palette, stable_int, stream, uuids, write_csv

log = logging.getLogger(__name__)

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
ALIGNED_VERSION = "20250531"
TAXONOMY_VERSION = "20250630"

TENX_DONORS = {  # donor -> (species, sex, age, share of the species' nuclei)
    "H18.30.002": ("Human", "Male", 42, 0.4), "H19.30.001": ("Human", "Female", 61, 0.35),
    "H20.30.001": ("Human", "Male", 55, 0.25),
    "QM21.26.001": ("Macaque", "Female", 9, 0.55), "QM22.32.002": ("Macaque", "Male", 6, 0.45),
    "CJ22.07.001": ("Marmoset", "Female", 3, 0.5), "CJ23.56.002": ("Marmoset", "Male", 5, 0.5),
}
SPECIES_SHARE = {"Human": 0.45, "Macaque": 0.35, "Marmoset": 0.20}
SPECIES_INFO = {
    "Human": ("NCBITaxon:9606", "Homo sapiens"), "Macaque": ("NCBITaxon:9544", "Macaca mulatta"),
    "Marmoset": ("NCBITaxon:9483", "Callithrix jacchus"),
}
ROI_SHARE = {"Ca": 0.2, "Pu": 0.2, "NAC": 0.14, "GPe": 0.12, "GPi": 0.1, "SN": 0.1, "STH": 0.07, "VTA": 0.07}
ROI_COLORS = {"Ca": "#b5719b", "Pu": "#cd86cc", "NAC": "#e08be0", "GPe": "#53DB33", "GPi": "#A7DB33",
              "SN": "#89522A", "STH": "#907991", "VTA": "#C06B3E"}
SPECIES_COLORS = {"Human": "#377EB8", "Macaque": "#E41A1C", "Marmoset": "#4DAF4A"}


def _libraries(rng: np.random.Generator, n_cells: int) -> pd.DataFrame:
    rows = []
    for donor, (species, _sex, _age, share) in TENX_DONORS.items():
        for roi, roi_share in ROI_SHARE.items():
            n = n_cells * SPECIES_SHARE[species] * share * roi_share
            for k in range(2):
                date = f"{22 + int(rng.integers(0, 3))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
                well = f"{'ABCDEFGH'[int(rng.integers(0, 8))]}{int(rng.integers(1, 13)):02d}"
                rows.append({
                    "library_label": f"L8XR_{date}_{int(rng.integers(1, 3)):02d}_{well}",
                    "library_method": "10xMultiome;GEX",
                    "barcoded_cell_sample_label": f"{int(rng.integers(1000, 9999))}_{well}",
                    "enrichment_population": "70% NeuN+, 30% NeuN-",
                    "region_of_interest_label": roi, "region_of_interest_name": DISSECTION_NAMES[roi],
                    "donor_label": donor, "_species": species, "_cells": n * rng.uniform(0.8, 1.2),
                })
    lib = pd.DataFrame(rows).drop_duplicates("library_label")
    lib["_cells"] = np.round(lib["_cells"] * n_cells / lib["_cells"].sum()).astype(int)
    return lib


def write_tenx_and_taxonomy(cache: Path, model: BGModel, scale: DemoScale, seed: int, bar=None) -> dict:
    """Write ``HMBA-10xMultiome-BG-Aligned`` and ``HMBA-BG-taxonomy-CCN20250428``; returns a summary."""
    rng = stream(seed, "tenx")
    lib = _libraries(rng, scale.tenx_cells)
    n = int(lib["_cells"].sum())
    lib_of_cell = np.repeat(np.arange(len(lib)), lib["_cells"].to_numpy())
    species_of_cell = lib["_species"].to_numpy()[lib_of_cell]

    groups = np.empty(n, dtype=object)
    for i, (roi, species) in enumerate(zip(lib["region_of_interest_label"], lib["_species"])):
        idx = np.flatnonzero(lib_of_cell == i)
        comp = dissection_composition(roi, 5.0, model.neuron_groups)
        groups[idx] = assign_groups(comp, len(idx), species, model, rng)
    cluster_rows = np.empty(n, dtype=np.int64)
    for s in SPECIES_SHARE:
        idx = np.flatnonzero(species_of_cell == s)
        cluster_rows[idx] = assign_clusters(groups[idx], s, model, rng)
    if bar is not None:
        bar.update(1)

    # expression on the aligned gene universe
    neuron = np.array([g in model.neuron_groups for g in groups])
    size = np.where(neuron, 2.2, 1.0) * rng.lognormal(0.0, 0.35, n) * 1.6
    counts_parts = []
    order_parts = []
    for s in SPECIES_SHARE:
        idx = np.flatnonzero(species_of_cell == s)
        mean = model.profiles * model.species_factor[s][None, :]
        counts_parts.append(sample_counts(mean, cluster_rows[idx], size[idx], rng))
        order_parts.append(idx)
    counts = sp.vstack(counts_parts).tocsr()
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate(order_parts)] = np.arange(n)
    counts = counts[inverse]
    if bar is not None:
        bar.update(1)

    barcodes = _barcodes(rng, n)
    library_labels = lib["library_label"].to_numpy()[lib_of_cell]
    labels = np.array([f"{b}-{l}" for b, l in zip(barcodes, library_labels)], dtype=object)
    job_ids = np.array([str(stable_int(l, 10)) if stable_int("j" + l, 2) % 3 else
                        f"{stable_int(l, 16):x}{stable_int('h' + l, 16):x}"[:32] for l in lib["library_label"]],
                       dtype=object)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    # the matrix holds a few thousand of the nuclei's ~17,000 genes: a nucleus' UMIs are several times the
    # counts written, and its log2 CPM is normalised by all of them (values in the release's range, not inflated)
    umi = np.maximum(np.round(totals * rng.uniform(4.5, 6.5, n)), 1).astype(np.int64)

    meta_dir = cache / "metadata" / ALIGNED / ALIGNED_VERSION
    cell_metadata = pd.DataFrame({
        "cell_label": labels, "cell_barcode": barcodes,
        "donor_label": lib["donor_label"].to_numpy()[lib_of_cell],
        "barcoded_cell_sample_label": lib["barcoded_cell_sample_label"].to_numpy()[lib_of_cell],
        "library_label": library_labels, "alignment_job_id": job_ids[lib_of_cell],
        "doublet_score": np.round(rng.beta(1.2, 14, n), 4),
        "umi_count": umi,
        "feature_matrix_label": ALIGNED, "dataset_label": ALIGNED, "abc_sample_id": uuids(rng, n),
    })
    write_csv(cell_metadata, meta_dir / "cell_metadata.csv")
    write_csv(lib.drop(columns=["_species", "_cells"]), meta_dir / "library.csv")
    write_csv(_donor_table(), meta_dir / "donor.csv")
    genes = pd.DataFrame({
        "gene_identifier": [f"NCBIGene:{ncbi_id('aligned', g.symbol)}" for g in model.genes],
        "gene_symbol": [g.symbol for g in model.genes],
        "description": [g.description for g in model.genes],
        "molecular_type": ["ncRNA" if g.symbol.startswith("LOC") and stable_int(g.symbol, 2) % 4 == 0 else "mRNA"
                           for g in model.genes],
    })
    write_csv(genes, meta_dir / "gene.csv")
    write_csv(_value_sets(), meta_dir / "value_sets.csv")
    write_h5ad(cache / "expression_matrices" / ALIGNED / ALIGNED_VERSION / f"{ALIGNED}-log2.h5ad",
               log2_cpm(counts, umi), labels, genes["gene_identifier"].to_numpy(), genes["gene_symbol"].to_numpy())
    if bar is not None:
        bar.update(1)

    # taxonomy dataset: terms, memberships, UMAP
    tax_dir = cache / "metadata" / TAXONOMY / TAXONOMY_VERSION
    clusters = model.all_clusters
    aliases = np.array([c.alias for c in clusters], dtype=object)
    cells_per_alias = dict(zip(*np.unique(aliases[cluster_rows], return_counts=True)))
    for name, table in taxonomy_tables(model.taxonomy, cells_per_alias).items():
        write_csv(table, tax_dir / f"{name}.csv")
    write_csv(pd.DataFrame({"cell_label": labels, "cluster_alias": aliases[cluster_rows]}),
              tax_dir / "cell_to_cluster_membership.csv")

    tax = model.taxonomy
    paths = []
    for c in clusters:
        g = tax.groups[c.group]
        paths.append((g.neighborhood, g.cls, g.subclass, g.name, c.alias))
    urng = stream(seed, "tenx", "umap")
    xy = branching_embedding(paths, cluster_rows, urng)
    write_csv(pd.DataFrame({"cell_label": labels, "x": np.round(xy[:, 0], 5), "y": np.round(xy[:, 1], 5)}),
              tax_dir / "cell_2d_embedding_coordinates.csv")
    if bar is not None:
        bar.update(1)
    species_counts = {s: int((species_of_cell == s).sum()) for s in SPECIES_SHARE}
    log.debug("%s: %d nuclei (%s), %d genes, %d libraries", ALIGNED, n, species_counts, len(model.genes), len(lib))
    return {"dataset": ALIGNED, "cells": n, "genes": len(model.genes), "species": species_counts,
            "clusters": len(tax.clusters), "adjacent_clusters": len(tax.adjacent_clusters)}


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(n, 16))]
    return np.ascontiguousarray(codes).view("S16").ravel().astype(str).astype(object)


def _donor_table() -> pd.DataFrame:
    rows = []
    for donor, (species, sex, age, _share) in TENX_DONORS.items():
        taxon, sci = SPECIES_INFO[species]
        rows.append({
            "donor_label": donor, "donor_species": taxon, "species_scientific_name": sci, "species_genus": species,
            "donor_sex": sex, "donor_age": f"{age} yrs", "donor_age_value": age, "donor_age_unit": "years",
            "donor_nhash_id": f"DO-{stable_int(donor, 4)}-{stable_int('n' + donor, 4)}",
        })
    return pd.DataFrame(rows)


def _value_sets() -> pd.DataFrame:
    rows = []
    for i, (roi, name) in enumerate(DISSECTION_NAMES.items()):
        rows.append((roi, "library", "region_of_interest_label", name, i + 1, "", "", ROI_COLORS[roi], ""))
    for i, (s, col) in enumerate(SPECIES_COLORS.items()):
        rows.append((s, "donor", "species_genus", s, i + 1, SPECIES_INFO[s][0], "", col, ""))
    sexes = palette(["Female", "Male"], 0.9)
    for i, s in enumerate(("Female", "Male")):
        rows.append((s, "donor", "donor_sex", s.lower(), i + 1, "", "", sexes[s], ""))
    df = pd.DataFrame(rows, columns=["label", "table", "field", "description", "order", "external_identifier",
                                     "parent_label", "color_hex_triplet", "comment"])
    return df
