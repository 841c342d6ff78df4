"""The basal ganglia model shared by the spatial and the 10X demo datasets.

One taxonomy, one gene universe and one set of cluster expression profiles, so a cell type looks the
same in the MERSCOPE/Xenium panels and in the aligned 10X data, and a gene symbol means the same gene in
every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counts import cluster_profiles, group_profiles
from .genes import MARKER_GENES, OTHER_GENES, REAL_GENES, Gene, filler_genes
from .taxonomy_bg import SPECIES, BGTaxonomy, Cluster, build_bg_taxonomy
from .util import stream

#: Spatial panel sizes of the release (human 314, macaque 315, marmoset 300 genes).
PANEL_SIZES = {"Human": 314, "Macaque": 315, "Marmoset": 300}


@dataclass
class BGModel:
    """Taxonomy, genes and expression profiles of the demo basal ganglia."""

    taxonomy: BGTaxonomy
    genes: list[Gene]                  # the 10X gene universe; panels are subsets
    gene_index: dict[str, int]
    all_clusters: list[Cluster]        # taxonomy clusters then Adjacent ones
    cluster_index: dict[str, int]      # alias -> row of ``profiles``
    profiles: np.ndarray               # (n_clusters, n_genes) mean counts, spatial scale
    species_factor: dict[str, np.ndarray]
    cluster_weights: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (group, species) -> (rows, p)
    neuron_groups: set[str]
    panels: dict[str, list[str]]

    def clusters_for(self, group: str, species: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``profiles`` of the clusters of (group, species) and their abundance weights."""
        return self.cluster_weights[(group, species)]


def build_bg_model(seed: int, n_genes: int) -> BGModel:
    """The BG model for ``seed`` with a 10X gene universe of ``n_genes`` genes (>= the real catalogue)."""
    tax = build_bg_taxonomy()
    genes = list(REAL_GENES) + filler_genes(max(0, n_genes - len(REAL_GENES)))
    gene_index = {g.symbol: i for i, g in enumerate(genes)}
    groups = list(tax.groups.values())
    group_row = {g.name: i for i, g in enumerate(groups)}

    rng = stream(seed, "bg", "profiles")
    gprof = group_profiles(genes, groups, rng)
    n_real = len(REAL_GENES)
    gprof[:, n_real:] *= 0.08  # the long tail of genes is expressed at low levels

    all_clusters = tax.clusters + tax.adjacent_clusters
    cluster_index = {c.alias: i for i, c in enumerate(all_clusters)}
    cgi = np.array([group_row[c.group] for c in all_clusters])
    profiles = cluster_profiles(gprof, cgi, rng,
                                specific_genes=np.array([i for i, g in enumerate(genes) if not g.rules]))

    species_factor = {s: stream(seed, "bg", "species", s).lognormal(0.0, 0.15, size=len(genes)) for s in SPECIES}

    wrng = stream(seed, "bg", "cluster-weights")
    cluster_weights = {}
    for g in groups:
        for s in SPECIES:
            rows = np.array([cluster_index[c.alias] for c in tax.clusters_of(g.name, s)], dtype=np.int64)
            if len(rows):
                w = wrng.lognormal(0.0, 0.6, size=len(rows))
                cluster_weights[(g.name, s)] = (rows, w / w.sum())

    neuron_groups = {g.name for g in groups if "neuron" in g.tags}

    panels = {}
    marker_symbols = [g.symbol for g in MARKER_GENES]
    for s in SPECIES:
        prng = stream(0, "bg", "panel", s)  # panels do not depend on the seed
        extra = PANEL_SIZES[s] - len(marker_symbols)
        pick = sorted(prng.choice(len(OTHER_GENES), size=extra, replace=False))
        panels[s] = marker_symbols + [OTHER_GENES[i].symbol for i in pick]
    return BGModel(tax, genes, gene_index, all_clusters, cluster_index, profiles, species_factor,
                   cluster_weights, neuron_groups, panels)


#: Spatial panels: marker means saturate at about this many counts per unit of cell size (a panel is designed so
#: that no gene crowds the others out), and non-marker genes are switched on in this share of neuronal and of
#: glial groups (neurons detect more of a panel than glia).
PANEL_SATURATION = 8.0
PANEL_PROGRAM_SHARE = {"neuron": 0.5, "other": 0.3}
PANEL_PROGRAM_LEVEL = 0.8
#: Marker levels below this are a marker's background in cell types it does not mark.
PANEL_MARKER_BACKGROUND = 0.05


def panel_means(model: BGModel, species: str, panel: list[str], seed: int) -> np.ndarray:
    """Mean counts per unit of cell size of a spatial panel, float64, shape (n_clusters, len(panel)).

    The model's profiles saturate at :data:`PANEL_SATURATION` (``K * (1 - exp(-m / K))``: low levels unchanged,
    the strongest markers no more than a few times the typical one), and each group expresses a random share of
    the panel's non-marker genes at a low level, so a neuron detects about a hundred of ~300 genes, a glial cell
    fewer, and most genes are detected in a minority of cells.
    """
    gidx = np.array([model.gene_index[g] for g in panel])
    base = model.profiles[:, gidx] * model.species_factor[species][gidx][None, :]
    k = PANEL_SATURATION
    # a marker's background (cell types without a rule) stays rare: a few percent of cells, not one in ten
    marker = np.array([bool(model.genes[i].rules) for i in gidx])
    base = np.where(marker[None, :] & (base < PANEL_MARKER_BACKGROUND), base * 0.2, base)
    mean = k * -np.expm1(-base / k)
    groups = list(model.taxonomy.groups)
    row_group = np.array([groups.index(c.group) for c in model.all_clusters])
    rng = stream(seed, "bg", "panel-programs", species)
    share = np.array([PANEL_PROGRAM_SHARE["neuron" if g in model.neuron_groups else "other"] for g in groups])
    non_marker = np.array([not model.genes[i].rules for i in gidx])
    on = (rng.random((len(groups), len(gidx))) < share[:, None]) & non_marker[None, :]
    level = rng.lognormal(np.log(PANEL_PROGRAM_LEVEL), 0.8, size=on.shape)
    return mean + (on * level)[row_group]


def assign_groups(composition: dict[str, float], n: int, species: str, model: BGModel,
                  rng: np.random.Generator) -> np.ndarray:
    """``n`` group names drawn from ``composition`` (groups absent in ``species`` left out); object array."""
    names = [g for g, w in composition.items()
             if w > 0 and species not in model.taxonomy.groups[g].absent_in]
    if not names or n == 0:
        return np.empty(0, dtype=object)
    p = np.array([composition[g] for g in names])
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def assign_clusters(group_of_cell: np.ndarray, species: str, model: BGModel, rng: np.random.Generator) -> np.ndarray:
    """Row of ``model.profiles`` (int64) for each cell, drawn within its group by cluster abundance."""
    out = np.empty(len(group_of_cell), dtype=np.int64)
    for g in np.unique(group_of_cell):
        idx = np.flatnonzero(group_of_cell == g)
        rows, p = model.clusters_for(g, species)
        out[idx] = rows[rng.choice(len(rows), size=len(idx), p=p)]
    return out
