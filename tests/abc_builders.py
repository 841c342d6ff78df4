"""Write small, hand-made ABC caches (exact ABC layout, manifest with true sizes and MD5s) for data-layer tests.

:class:`CacheBuilder` writes single files; :func:`build_quirky_cache` writes a tiny cache holding every quirk of
ABC_LAYOUT.md (string and integer cluster aliases, a term named ``NA``, mixed-case colours, the marmoset column
order, mixed ``alignment_job_id``, empty ``abc_sample_id``, bool ``qc_pass``, cells in the h5ad but not the
metadata and vice versa, unmapped and Adjacent cells, a ``views/`` file, GeometryCollection polygons, a plane
without polygons, an unknown extra file) and returns the source tables so tests derive their expectations.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

RELEASE = "20251031"
META_VERSION = "20250531"
EXPR_VERSION = "20250531"
BG_TAX = "HMBA-BG-taxonomy-CCN20250428"
BG_10X = "HMBA-10xMultiome-BG-Aligned"
HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"
MARMOSET = "HMBA-Xenium-CJ23.56.004-BG"
WMB_TAX = "WMB-taxonomy"
WMB = "WMB-10X"
CONSENSUS = "Consensus-WMB-integrated-taxonomy"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class CacheBuilder:
    """Write files in the ABC cache layout and a manifest listing them."""

    def __init__(self, root: Path, release: str = RELEASE):
        self.root = Path(root)
        self.release = release
        self.entries: list[dict] = []

    def _register(self, dataset: str, kind: str, tag: str, rel: str, fmt: str, variant: str | None = None,
                  version: str = META_VERSION) -> Path:
        self.entries = [e for e in self.entries if e["rel"] != rel]
        self.entries.append({"dataset": dataset, "kind": kind, "tag": tag, "rel": rel, "fmt": fmt,
                             "variant": variant, "version": version})
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def csv(self, dataset: str, tag: str, table: pd.DataFrame | str, *, version: str = META_VERSION,
            view: bool = False) -> Path:
        rel = f"metadata/{dataset}/{version}/{'views/' if view else ''}{tag}.csv"
        path = self._register(dataset, "metadata", tag, rel, "csv", version=version)
        if isinstance(table, str):
            path.write_text(table)
        else:
            table.to_csv(path, index=False)
        return path

    def h5ad(self, dataset: str, tag: str, matrix, cell_labels, gene_ids, gene_symbols=None, *,
             variant: str = "log2", version: str = EXPR_VERSION, encoding: str = "csr") -> Path:
        rel = f"expression_matrices/{dataset}/{version}/{tag}-{variant}.h5ad"
        path = self._register(dataset, "expression_matrices", tag, rel, "h5ad", variant=variant, version=version)
        if sp.issparse(matrix) and encoding in ("csr", "csc"):
            x = matrix.asformat(encoding)  # no densifying: matrices of the memory tests are large
        else:
            dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
            dense = dense.astype(np.float32)
            x = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[encoding](dense)
        var = pd.DataFrame(index=pd.Index(list(gene_ids), name="gene_identifier"))
        if gene_symbols is not None:
            var["gene_symbol"] = list(gene_symbols)
        adata = ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(list(cell_labels), name="cell_label")), var=var)
        adata.write_h5ad(path)
        return path

    def geojson(self, dataset: str, plane: str, data: dict, *, version: str = META_VERSION) -> Path:
        rel = f"image_volumes/{dataset}/{version}/{plane}.geojson"
        path = self._register(dataset, "image_volumes", plane, rel, "geojson", version=version)
        path.write_text(json.dumps(data))
        return path

    def unlisted(self, rel: str, content: str = "not in the manifest\n") -> Path:
        """A file the manifest does not list (must be ignored with a log line)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def write_manifest(self) -> Path:
        listing: dict = {}
        dirs: dict = {}
        for e in self.entries:
            path = self.root / e["rel"]
            info = {"version": e["version"], "relative_path": e["rel"],
                    "url": f"https://example.invalid/{e['rel']}", "size": path.stat().st_size,
                    "file_hash": _md5(path)}
            kinds = listing.setdefault(e["dataset"], {})
            tags = kinds.setdefault(e["kind"], {})
            if e["kind"] == "expression_matrices":
                tags.setdefault(e["tag"], {})[e["variant"]] = {"files": {e["fmt"]: info}}
            else:
                tags[e["tag"]] = {"files": {e["fmt"]: info}}
            dirs.setdefault(e["dataset"], {"directories": {}})["directories"][e["kind"]] = {
                "version": e["version"], "relative_path": f"{e['kind']}/{e['dataset']}/{e['version']}",
                "url": "", "view_link": "", "total_size": 0}
        manifest = {"version": self.release, "resource_uri": "s3://allen-brain-cell-atlas/",
                    "directory_listing": dirs, "file_listing": listing}
        path = self.root / "releases" / self.release / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1))
        return path


def log2cpm(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=1, keepdims=True)
    total[total == 0] = 1
    return np.log2(counts / total * 1e6 + 1).astype(np.float32)


@dataclass
class QuirkyCache:
    """The cache's root and the source tables, to derive expected values in tests."""

    root: Path
    builder: CacheBuilder
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    expression: dict[str, tuple[np.ndarray, list[str], list[str], list[str]]] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- BG taxonomy
BG_LEVELS = ["Neighborhood", "Class", "Subclass", "Group", "Cluster"]
BG_TREE = {  # cluster alias -> (neighborhood, class, subclass, group)
    "Human-143": ("Subpallium GABA", "CN LGE GABA", "STR D1 MSN", "STR D1 MSN"),
    "Human-7": ("Subpallium GABA", "CN LGE GABA", "STR D2 MSN", "STR D2 MSN"),
    "Macaque-490": ("Subpallium GABA", "CN LGE GABA", "STR D1 MSN", "STR D1 MSN"),
    "Marmoset-12": ("Subpallium GABA", "CN LGE GABA", "STR D2 MSN", "STR D2 MSN"),
    "Human-88": ("Nonneuron", "Astro-Epen", "Astrocyte", "Astrocyte"),
    "Marmoset-3": ("Nonneuron", "Astro-Epen", "Astrocyte", "Astrocyte"),
    "Human-2": ("Nonneuron", "OPC-Oligo", "Oligodendrocyte", "Oligo"),
}
BG_PREFIX = ["NEIGH", "CLASS", "SUBCL", "GROUP", "CLUST"]


def _bg_taxonomy(b: CacheBuilder, q: QuirkyCache) -> None:
    term_sets = pd.DataFrame({
        "label": [f"CCN20250428_LEVEL_{i}" for i in range(5)], "name": BG_LEVELS,
        "description": ["" for _ in BG_LEVELS], "order": [0, 1, 2, 3, 4],
        "parent_term_set_label": ["", *[f"CCN20250428_LEVEL_{i}" for i in range(4)]],
    })
    rows = []
    label_of: dict[tuple[int, str], str] = {}
    order = 0
    for level in range(5):
        names = list(dict.fromkeys(path[level] if level < 4 else alias for alias, path in BG_TREE.items()))
        for k, name in enumerate(names):
            label = f"CS20250428_{BG_PREFIX[level]}_{k:04d}"
            label_of[(level, name)] = label
            parent_name = ""
            if level:
                alias = next(a for a, p in BG_TREE.items() if (p[level] if level < 4 else a) == name)
                parent_name = BG_TREE[alias][level - 1]
            color = f"#{(37 * order + 20) % 256:02X}{(91 * order + 40) % 256:02x}{(53 * order) % 256:02X}"
            rows.append({"label": label, "name": name, "cluster_annotation_term_set_label": f"CCN20250428_LEVEL_{level}",
                         "cluster_annotation_term_set_name": BG_LEVELS[level], "color_hex_triplet": color,
                         "term_order": order, "term_set_order": level, "parent_term_name": parent_name})
            order += 1
    terms = pd.DataFrame(rows)
    terms["parent_term_label"] = [label_of.get((int(s[-1]) - 1, p), "") if p else ""
                                  for s, p in zip(terms["cluster_annotation_term_set_label"], terms["parent_term_name"])]
    terms["parent_term_set_label"] = [f"CCN20250428_LEVEL_{int(s[-1]) - 1}" if p else ""
                                      for s, p in zip(terms["cluster_annotation_term_set_label"], terms["parent_term_name"])]
    # The BG file's column order differs from the mouse one.
    terms = terms[["label", "name", "cluster_annotation_term_set_label", "parent_term_label", "parent_term_set_label",
                   "parent_term_name", "term_set_order", "term_order", "cluster_annotation_term_set_name",
                   "color_hex_triplet"]]
    cluster = pd.DataFrame({"label": [label_of[(4, a)] for a in BG_TREE], "cluster_alias": list(BG_TREE),
                            "number_of_cells": [100 + i for i in range(len(BG_TREE))]})
    mem = []
    for alias, path in BG_TREE.items():
        for level in range(5):
            name = path[level] if level < 4 else alias
            mem.append({"cluster_annotation_term_label": label_of[(level, name)],
                        "cluster_annotation_term_set_label": f"CCN20250428_LEVEL_{level}", "cluster_alias": alias,
                        "cluster_annotation_term_set_name": BG_LEVELS[level], "cluster_annotation_term_name": name})
    b.csv(BG_TAX, "cluster_annotation_term_set", term_sets)
    b.csv(BG_TAX, "cluster_annotation_term", terms)
    b.csv(BG_TAX, "cluster", cluster)
    b.csv(BG_TAX, "cluster_to_cluster_annotation_membership", pd.DataFrame(mem))
    q.tables["bg_terms"] = terms
    q.tables["bg_cluster"] = cluster


GENES = ["DRD1", "DRD2", "PENK", "TAC1", "GAD1", "AQP4", "MBP", "TH", "SLC17A7", "PVALB"]


def _region_value_sets() -> pd.DataFrame:
    regions = [("Basal ganglia and adjacent", "#BEBEBE"), ("STR", "#cd86cc"), ("GP", "#7AE361"), ("GPe", "#53DB33"),
               ("GPi", "#A7DB33"), ("VeP", "#9b19f5"), ("STH", "#907991"), ("SN", "#89522A")]
    return pd.DataFrame({"label": [r for r, _ in regions], "table": "cell_anatomical_annotations",
                         "field": "parcellation_term_symbol", "description": "", "order": range(len(regions)),
                         "external_identifier": "", "parent_label": "", "color_hex_triplet": [c for _, c in regions],
                         "comment": ""})


def _square(x0, y0, size):
    return [[[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]]


def _spatial(b: CacheBuilder, q: QuirkyCache, rng: np.random.Generator, *, dataset: str, donor: str,
             planes: list[tuple[str, int, list[tuple[str, int]]]], marmoset: bool, encoding: str,
             aliases: list[str], n_per_section: int) -> None:
    """A spatial dataset: planes = [(slab_plane_label, slab_plane_order, [(section_label, ordinal), ...])]."""
    cells, coords, specimen, ann, mem = [], [], [], [], []
    k = 0
    regions = ["STR", "GPe", "GPi", "SN", "STH", ""]
    for plane, plane_order, sections in planes:
        for section, ordinal in sections:
            specimen.append({"brain_section_label": section, "brain_section_barcode": str(1324989000 + ordinal),
                             "brain_section_ordinal": ordinal, "slab_plane_label": plane,
                             "slab_plane_order": plane_order, "donor_label": donor, "hemisphere": "left"})
            for i in range(n_per_section):
                label = (f"1382042951_abmk{k:04d}-1-20250227" if marmoset else f"1324989690_{k}-20250227")
                qc = bool(i % 7 != 3)
                cells.append({"cell_label": label, "brain_section_label": section,
                              "brain_section_barcode": str(1324989000 + ordinal), "segmentation_job_id": "sis_cellpose_v1",
                              "x_experiment": rng.normal(5000, 100), "y_experiment": rng.normal(2000, 100),
                              "qc_pass": qc, "dataset_label": dataset,
                              "feature_matrix_label": dataset.removeprefix("HMBA-"),
                              "abc_sample_id": "" if not qc else f"ddc7b0c5-{k:06d}"})
                x, y = rng.uniform(0, 10), rng.uniform(0, 8)
                coords.append({"cell_label": label, "brain_section_label": section, "x_rotated_um": x * 1000,
                               "y_rotated_um": y * 1000, "slab_plane_label": plane, "x_slab_mm": x, "y_slab_mm": y})
                if i % 11 != 5:  # some cells have no anatomical annotation row
                    region = regions[k % len(regions)]
                    ann.append({"cell_label": label, "Basal ganglia and adjacent": True,
                                **{r: r == region for r in ["STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"]},
                                "parcellation_term_symbol": region})
                if i % 9 == 4:
                    pass  # unmapped: no membership row
                elif i % 13 == 6:
                    mem.append({"cell_label": label, "cluster_alias": f"{aliases[0].split('-')[0]}-Adjacent-2",
                                "cluster_label": "CS20250428_CLUST_9999"})
                else:
                    mem.append({"cell_label": label, "cluster_alias": aliases[k % len(aliases)], "cluster_label": ""})
                k += 1
    cells_df = pd.DataFrame(cells)
    coords_df = pd.DataFrame(coords)
    # Two cells with metadata but no coordinates (inner join drops them); one coordinate row without metadata.
    coords_df = coords_df.iloc[2:].reset_index(drop=True)
    dropped = list(cells_df["cell_label"][:2])
    extra_coord = coords_df.iloc[[0]].copy()
    extra_coord["cell_label"] = "9999999999_orphan-20250227"
    coords_df = pd.concat([coords_df, extra_coord], ignore_index=True)
    if marmoset:
        coords_df = coords_df[["cell_label", "brain_section_label", "x_rotated_um", "y_rotated_um", "slab_plane_label",
                               "x_slab_mm", "y_slab_mm"]]
    else:
        coords_df = coords_df[["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"]]
    shuffled = cells_df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    b.csv(dataset, "cell_metadata", shuffled)
    b.csv(dataset, "slab_plane_coordinates", coords_df)
    b.csv(dataset, "specimen_metadata", pd.DataFrame(specimen))
    b.csv(dataset, "cell_anatomical_annotations", pd.DataFrame(ann))
    b.csv(dataset, "cell_to_cluster_membership", pd.DataFrame(mem))
    b.csv(dataset, "value_sets", _region_value_sets())
    gene_ids = ([f"ENSG{i:011d}" for i in range(len(GENES))] if not marmoset
                else [f"NCBIGene:{100 + i}" for i in range(len(GENES))])
    b.csv(dataset, "gene", pd.DataFrame({"gene_identifier": gene_ids, "gene_symbol": GENES,
                                         "description": "", "molecular_type": "protein_coding"}))
    b.csv(dataset, "donor", pd.DataFrame({"donor_label": [donor], "species_genus": ["Marmoset" if marmoset else "Human"]}))
    b.csv(dataset, "mmc_results", pd.DataFrame({"cell_label": cells_df["cell_label"][:3], "whatever": 1}))
    # Expression: all cells with coordinates except two, plus two cells absent from the metadata.
    in_store = [c for c in cells_df["cell_label"] if c not in dropped]
    no_expr = in_store[3:5]
    rows = [c for c in in_store if c not in no_expr] + ["0000000000_extra-1", "0000000000_extra-2"]
    rows = list(rng.permutation(rows))
    counts = rng.poisson(0.8, size=(len(rows), len(GENES))).astype(np.float64)
    counts[:, 0] += np.arange(len(rows)) % 3  # DRD1 varies
    values = log2cpm(counts)
    b.h5ad(dataset, dataset.removeprefix("HMBA-"), values, rows, gene_ids, GENES, encoding=encoding)
    q.tables[f"{dataset}/cell_metadata"] = cells_df
    q.tables[f"{dataset}/coords"] = coords_df
    q.tables[f"{dataset}/annotations"] = pd.DataFrame(ann)
    q.tables[f"{dataset}/membership"] = pd.DataFrame(mem)
    q.tables[f"{dataset}/specimen"] = pd.DataFrame(specimen)
    q.expression[dataset] = (values, rows, gene_ids, GENES)
    q.facts[f"{dataset}/no_coords"] = dropped
    q.facts[f"{dataset}/no_expression"] = no_expr


def _bg_10x(b: CacheBuilder, q: QuirkyCache, rng: np.random.Generator, n: int = 60) -> None:
    donors = pd.DataFrame({"donor_label": ["H19.30.002", "QM23.50.002", "CJ23.56.001"],
                           "donor_species": ["Homo sapiens", "Macaca mulatta", "Callithrix jacchus"],
                           "species_scientific_name": ["Homo sapiens", "Macaca mulatta", "Callithrix jacchus"],
                           "species_genus": ["Human", "Macaque", "Marmoset"], "donor_sex": ["M", "F", "M"]})
    libs = pd.DataFrame({"library_label": ["L8TX_1", "L8TX_2", "L8TX_3"], "region_of_interest_label": ["Ca", "GPe", "SN"],
                         "donor_label": donors["donor_label"]})
    labels = [f"AAACCC{i:06d}-L8TX_{i % 3 + 1}" for i in range(n)]
    cm = pd.DataFrame({
        "cell_label": labels, "cell_barcode": [f"AAACCC{i:06d}" for i in range(n)],
        "donor_label": [donors["donor_label"][i % 3] for i in range(n)],
        "barcoded_cell_sample_label": "x", "library_label": [f"L8TX_{i % 3 + 1}" for i in range(n)],
        "alignment_job_id": [str(1400000 + i) if i % 2 else hashlib.md5(str(i).encode()).hexdigest()[:20]
                             for i in range(n)],
        "doublet_score": rng.uniform(0, 0.3, n), "umi_count": rng.integers(1000, 5000, n),
        "feature_matrix_label": BG_10X, "dataset_label": BG_10X,
        "abc_sample_id": ["" if i % 10 == 0 else f"s{i}" for i in range(n)],
    })
    emb_labels = labels[:-3] + ["GGGTTT000001-L8TX_9"]  # 3 cells without UMAP; one UMAP cell without metadata
    emb = pd.DataFrame({"cell_label": emb_labels, "x": rng.normal(0, 5, len(emb_labels)),
                        "y": rng.normal(0, 5, len(emb_labels))})
    aliases = list(BG_TREE)
    mem = pd.DataFrame({"cell_label": [c for i, c in enumerate(labels) if i % 8 != 1],
                        "cluster_alias": [aliases[i % len(aliases)] for i, c in enumerate(labels) if i % 8 != 1]})
    gene_ids = [f"NCBIGene:{100 + i}" for i in range(len(GENES))]
    b.csv(BG_10X, "cell_metadata", cm)
    b.csv(BG_10X, "donor", donors)
    b.csv(BG_10X, "library", libs)
    b.csv(BG_10X, "gene", pd.DataFrame({"gene_identifier": gene_ids, "gene_symbol": GENES, "description": "",
                                         "molecular_type": "protein_coding"}))
    b.csv(BG_TAX, "cell_2d_embedding_coordinates", emb)
    b.csv(BG_TAX, "cell_to_cluster_membership", mem)
    counts = rng.poisson(1.0, size=(n, len(GENES))).astype(np.float64)
    values = log2cpm(counts)
    b.h5ad(BG_10X, BG_10X, values, labels, gene_ids, GENES, encoding="csc")
    q.tables["bg10x/cell_metadata"] = cm
    q.tables["bg10x/embedding"] = emb
    q.tables["bg10x/membership"] = mem
    q.tables["bg10x/donor"] = donors
    q.expression[BG_10X] = (values, labels, gene_ids, GENES)


WMB_LEVELS = ["neurotransmitter", "class", "subclass", "supertype", "cluster"]
WMB_TREE = {  # alias -> names of neurotransmitter .. supertype, cluster
    "1": ("Glut", "01 IT-ET Glut", "001 CLA-EPd-CTX Car3 Glut", "0001 CLA-EPd-CTX Car3 Glut_1",
          "0001 CLA-EPd-CTX Car3 Glut_1"),
    "14": ("Glut", "01 IT-ET Glut", "002 IT EP-CLA Glut", "0003 IT EP-CLA Glut_1", "0014 IT EP-CLA Glut_1"),
    "5300": ("NA", "30 Astro-Epen", "319 Astro-TE NN", "1163 Astro-TE NN_1", "5300 Astro-TE NN_1"),
    "5301": ("NA", "30 Astro-Epen", "319 Astro-TE NN", "1163 Astro-TE NN_1", "5301 Astro-TE NN_1"),
    "2000": ("GABA", "06 CTX-CGE GABA", "046 Vip Gaba", "0190 Vip Gaba_1", "0700 Vip Gaba_1"),
}


def _wmb(b: CacheBuilder, q: QuirkyCache, rng: np.random.Generator, n: int = 50) -> None:
    sets = pd.DataFrame({"label": [f"CCN20230722_{p}" for p in ("NEUR", "CLAS", "SUBC", "SUPT", "CLUS")],
                         "name": WMB_LEVELS, "description": "", "order": range(5)})
    rows, label_of, k = [], {}, 0
    for level in range(5):
        for name in dict.fromkeys(path[level] for path in WMB_TREE.values()):
            label = f"CS20230722_{sets['label'][level][-4:]}_{k:04d}"
            label_of[(level, name)] = label
            parent = ""
            if level:
                path = next(p for p in WMB_TREE.values() if p[level] == name)
                parent = label_of[(level - 1, path[level - 1])]
            rows.append({"label": label, "name": name, "cluster_annotation_term_set_label": sets["label"][level],
                         "parent_term_label": parent, "parent_term_set_label": sets["label"][level - 1] if level else "",
                         "term_set_order": level, "term_order": k, "cluster_annotation_term_set_name": WMB_LEVELS[level],
                         "color_hex_triplet": f"#{(k * 45) % 256:02X}{(k * 77) % 256:02X}{(k * 19) % 256:02X}"})
            k += 1
    terms = pd.DataFrame(rows)  # older mouse schema: no parent_term_name
    mem = []
    for alias, path in WMB_TREE.items():
        for level in range(5):
            mem.append({"cluster_annotation_term_label": label_of[(level, path[level])],
                        "cluster_annotation_term_set_label": sets["label"][level], "cluster_alias": int(alias),
                        "cluster_annotation_term_set_name": WMB_LEVELS[level],
                        "cluster_annotation_term_name": path[level], "number_of_cells": 10,
                        "color_hex_triplet": "#AABBCC"})
    b.csv(WMB_TAX, "cluster_annotation_term_set", sets)
    b.csv(WMB_TAX, "cluster_annotation_term", terms)
    b.csv(WMB_TAX, "cluster", pd.DataFrame({"label": [label_of[(4, p[4])] for p in WMB_TREE.values()],
                                            "cluster_alias": [int(a) for a in WMB_TREE], "number_of_cells": 10}))
    b.csv(WMB_TAX, "cluster_to_cluster_annotation_membership", pd.DataFrame(mem))
    pivot = pd.DataFrame([{"cluster_alias": int(a), **dict(zip(WMB_LEVELS, p))} for a, p in WMB_TREE.items()])
    b.csv(WMB_TAX, "cluster_to_cluster_annotation_membership_pivoted", pivot, view=True)

    aliases = [int(a) for a in WMB_TREE]
    alias_col = [str(aliases[i % len(aliases)]) for i in range(n)]
    alias_col[7] = "9999"  # not in the taxonomy -> Adjacent
    alias_col[8] = ""  # unmapped -> unassigned
    labels = [f"GCGAGAAGTTAAGGGC-{i:03d}-CHEM{i % 2}" for i in range(n)]
    fml = ["WMB-10Xv3-STR" if i % 2 else "WMB-10Xv2-HPF" for i in range(n)]
    cm = pd.DataFrame({"cell_label": labels, "cell_barcode": "x", "barcoded_cell_sample_label": "y",
                       "library_label": "L8", "feature_matrix_label": fml,
                       "entity": "cell", "brain_section_label": "", "library_method": ["10Xv3" if i % 2 else "10Xv2"
                                                                                     for i in range(n)],
                       "region_of_interest_acronym": ["STR" if i % 2 else "HPF" for i in range(n)],
                       "donor_label": "Snap25-IRES2-Cre", "donor_genotype": "wt", "donor_sex": "M",
                       "dataset_label": ["WMB-10Xv3" if i % 2 else "WMB-10Xv2" for i in range(n)],
                       "x": rng.normal(0, 10, n), "y": rng.normal(0, 10, n), "cluster_alias": alias_col,
                       "abc_sample_id": [f"a{i}" for i in range(n)]})
    b.csv(WMB, "cell_metadata", cm)
    gene_ids = [f"ENSMUSG{i:011d}" for i in range(6)]
    symbols = ["Drd1", "Drd2", "Penk", "Gad1", "Aqp4", "Slc17a7"]
    b.csv(WMB, "gene", pd.DataFrame({"gene_identifier": gene_ids, "gene_symbol": symbols, "name": ""}))
    for ds, tag, parity in (("WMB-10Xv3", "WMB-10Xv3-STR", 1), ("WMB-10Xv2", "WMB-10Xv2-HPF", 0)):
        rows = [lab for i, lab in enumerate(labels) if i % 2 == parity]
        counts = rng.poisson(1.2, size=(len(rows), len(gene_ids))).astype(np.float64)
        values = log2cpm(counts)
        # The v2 file has no gene_symbol column: symbols then come from gene.csv.
        b.h5ad(ds, tag, values, rows, gene_ids, symbols if parity else None)
        q.expression[tag] = (values, rows, gene_ids, symbols)
    q.tables["wmb/cell_metadata"] = cm
    q.tables["wmb/terms"] = terms


def build_quirky_cache(root: Path, *, seed: int = 0, n_per_section: int = 24, wmb: bool = True,
                       bg10x: bool = True, marmoset: bool = True) -> QuirkyCache:
    """Write the quirky cache into ``root`` (see the module docstring) and return its source tables."""
    rng = np.random.default_rng(seed)
    b = CacheBuilder(root)
    q = QuirkyCache(root=Path(root), builder=b)
    _bg_taxonomy(b, q)
    # Plane order is the reverse of label order, and section ordinals the reverse of label order, so sorting by
    # label would be wrong.
    _spatial(b, q, rng, dataset=HUMAN, donor="H22.30.001", marmoset=False, encoding="csr",
             aliases=["Human-143", "Human-7", "Human-88", "Human-2"], n_per_section=n_per_section,
             planes=[("H22.30.001.CX.13.Plane.05", 1, [("H22.30.001.CX.13.01.03.02", 2), ("H22.30.001.CX.13.01.03.01", 1)]),
                     ("H22.30.001.CX.12.Plane.01", 2, [("H22.30.001.CX.12.01.01.04", 1)])])
    b.geojson(HUMAN, "H22.30.001.CX.13.Plane.05", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "STR"}, "geometry": {"type": "Polygon", "coordinates": _square(1, 1, 3)}},
        {"type": "Feature", "properties": {"label": "GPe"}, "geometry": {"type": "MultiPolygon", "coordinates": [
            _square(5, 1, 1), _square(7, 1, 1)]}},
        {"type": "Feature", "properties": {"label": "SN"}, "geometry": {"type": "GeometryCollection", "geometries": [
            {"type": "Polygon", "coordinates": _square(5, 5, 1)},
            {"type": "MultiPolygon", "coordinates": [_square(7, 5, 1)]},
            {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}]}},
    ]})
    # (plane CX.12.Plane.01 has no geojson)
    if marmoset:
        _spatial(b, q, rng, dataset=MARMOSET, donor="CJ23.56.004", marmoset=True, encoding="dense",
                 aliases=["Marmoset-12", "Marmoset-3"], n_per_section=n_per_section,
                 planes=[("CJ23.56.004.BG.01.Plane.02", 1, [("CJ23.56.004.BG.01.01.01.01", 1),
                                                             ("CJ23.56.004.BG.01.01.01.02", 2)])])
    if bg10x:
        _bg_10x(b, q, rng)
    if wmb:
        _wmb(b, q, rng)
    b.unlisted(f"metadata/{HUMAN}/{META_VERSION}/notes.txt")
    b.write_manifest()
    return q


def expected_gene(q: QuirkyCache, dataset: str, symbol: str, cell_labels) -> np.ndarray:
    """Expected float32 values of a gene for the given cells from the source matrices (NaN: no row)."""
    out = np.full(len(cell_labels), np.nan, dtype=np.float32)
    pos = pd.Index(list(cell_labels))
    sources = [q.expression[dataset]] if dataset in q.expression else [
        v for k, v in q.expression.items() if k.startswith("WMB-10X")]
    for values, rows, _ids, symbols in sources:
        j = [s.lower() for s in symbols].index(symbol.lower())
        idx = pos.get_indexer(rows)
        ok = idx >= 0
        out[idx[ok]] = values[ok, j]
    return out


def build_umap_cache(root: Path, *, n_cells: int, n_genes: int, per_row: int, seed: int = 0,
                     n_clusters: int = 12, dataset: str = WMB) -> CacheBuilder:
    """A minimal mouse-like cache (WMB taxonomy + a cell_metadata UMAP dataset + one CSR log2 h5ad) with a
    matrix of ``n_cells * per_row`` non-zeros, built without densifying (for memory and atomicity tests)."""
    rng = np.random.default_rng(seed)
    b = CacheBuilder(root)
    q = QuirkyCache(root=Path(root), builder=b)
    _wmb_taxonomy_only(b, n_clusters)
    labels = np.array([f"CELL{i:08d}" for i in range(n_cells)], dtype=object)
    # written by Arrow's CSV writer: millions of rows in seconds where pandas' takes tens of seconds
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cm = pa.table({"cell_label": pa.array(labels, type=pa.string()), "x": rng.normal(0, 10, n_cells),
                   "y": rng.normal(0, 10, n_cells),
                   "cluster_alias": pa.array(np.arange(n_cells) % n_clusters + 1).cast(pa.string()),
                   "feature_matrix_label": pa.array(["WMB-10Xv3-STR"] * n_cells),
                   "dataset_label": pa.array(["WMB-10Xv3"] * n_cells),
                   "region_of_interest_acronym": pa.array(["STR"] * n_cells)})
    with open(b.csv(dataset, "cell_metadata", ""), "wb") as f:
        f.write((",".join(cm.column_names) + "\n").encode())  # unquoted, as the release writes it
        pacsv.write_csv(cm, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    del cm
    indptr = np.arange(n_cells + 1, dtype=np.int64) * per_row
    start = (np.arange(n_cells, dtype=np.int64) * 7919) % max(1, n_genes - per_row + 1)
    indices = (start[:, None] + np.arange(per_row, dtype=np.int64)[None, :]).astype(np.int32).ravel()
    data = rng.uniform(0.5, 12.0, n_cells * per_row).astype(np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    gene_ids = [f"ENSMUSG{i:011d}" for i in range(n_genes)]
    b.h5ad("WMB-10Xv3", "WMB-10Xv3-STR", matrix, labels, gene_ids, [f"Gene{i}" for i in range(n_genes)])
    b.write_manifest()
    return b


def _wmb_taxonomy_only(b: CacheBuilder, n_clusters: int) -> None:
    sets = pd.DataFrame({"label": ["L0", "L1"], "name": ["class", "cluster"], "order": [0, 1]})
    classes = [f"{k:02d} Class" for k in range(3)]
    rows = [{"label": f"C{k}", "name": c, "cluster_annotation_term_set_label": "L0", "parent_term_label": "",
             "color_hex_triplet": "#112233", "term_order": k} for k, c in enumerate(classes)]
    mem = []
    for i in range(n_clusters):
        alias = str(i + 1)
        rows.append({"label": f"K{i}", "name": f"{i:04d} Cluster_{i}", "cluster_annotation_term_set_label": "L1",
                     "parent_term_label": f"C{i % 3}", "color_hex_triplet": "#445566", "term_order": 10 + i})
        mem += [{"cluster_alias": alias, "cluster_annotation_term_label": f"C{i % 3}",
                 "cluster_annotation_term_set_label": "L0"},
                {"cluster_alias": alias, "cluster_annotation_term_label": f"K{i}",
                 "cluster_annotation_term_set_label": "L1"}]
    b.csv(WMB_TAX, "cluster_annotation_term_set", sets)
    b.csv(WMB_TAX, "cluster_annotation_term", pd.DataFrame(rows))
    b.csv(WMB_TAX, "cluster_to_cluster_annotation_membership", pd.DataFrame(mem))


CONSENSUS_LEVELS = ["neurotransmitter", "neighborhood", "class", "subclass", "supertype", "cluster"]


def add_consensus(b: CacheBuilder, q: QuirkyCache, rng: np.random.Generator, n: int = 30,
                  embedding: bool = True) -> None:
    """The consensus mouse taxonomy: six levels, integer aliases, an embedding and a two-column membership."""
    sets = pd.DataFrame({"label": [f"CCN20250101_LEVEL_{i}" for i in range(6)], "name": CONSENSUS_LEVELS,
                         "description": "", "order": range(6)})
    rows, mem = [], []
    for alias in ("1", "2", "3"):
        parent = ""
        for level, lname in enumerate(CONSENSUS_LEVELS):
            name = f"{lname}-{alias if level >= 3 else 'shared'}"
            label = f"CS20250101_{level}_{name}"
            if not any(r["label"] == label for r in rows):
                rows.append({"label": label, "name": name, "cluster_annotation_term_set_label": sets["label"][level],
                             "parent_term_label": parent, "color_hex_triplet": "#ABCDEF", "term_order": len(rows)})
            mem.append({"cluster_alias": alias, "cluster_annotation_term_label": label,
                        "cluster_annotation_term_set_label": sets["label"][level]})
            parent = label
    b.csv(CONSENSUS, "cluster_annotation_term_set", sets)
    b.csv(CONSENSUS, "cluster_annotation_term", pd.DataFrame(rows))
    b.csv(CONSENSUS, "cluster_to_cluster_annotation_membership", pd.DataFrame(mem))
    if embedding:
        labels = [f"CONS{i:05d}" for i in range(n)]
        b.csv(CONSENSUS, "cell_2d_embedding_coordinates",
              pd.DataFrame({"cell_label": labels, "x": rng.normal(0, 3, n), "y": rng.normal(0, 3, n)}))
        b.csv(CONSENSUS, "cell_to_cluster_membership",
              pd.DataFrame({"cell_label": labels[:-2], "cluster_alias": [str(i % 3 + 1) for i in range(n - 2)]}))
        q.tables["consensus/labels"] = pd.DataFrame({"cell_label": labels})
