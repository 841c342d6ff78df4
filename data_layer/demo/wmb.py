"""The whole mouse brain demo: ``WMB-taxonomy`` (older schema), ``WMB-10X`` cells and ``WMB-10Xv3`` matrices.

Levels ``neurotransmitter, class, subclass, supertype, cluster`` with the 34 real class names and
numbered subclass, supertype and cluster names (``01 IT-ET Glut``, ``0326 ...``); integer cluster
aliases; neurotransmitter terms include one literally named ``NA`` (non-neuronal clusters). The older
membership table carries ``number_of_cells`` and ``color_hex_triplet``, and the pivoted views live under
``views/``. Cells lie on a whole-brain UMAP and their expression is split into regional h5ad files named
by the cells' ``feature_matrix_label``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .counts import cluster_profiles, group_profiles, log2_cpm, sample_counts
from .genes import REAL_GENES, Gene, ensembl_id, mouse_symbol, ncbi_id
from .h5ad_writer import write_h5ad
from .scale import DemoScale
from .umap import layout_centres, scatter_islands
from .util import palette, stable_int, stream, uuids, write_csv

TAXONOMY = "WMB-taxonomy"
TAXONOMY_VERSION = "20231215"
CELLS = "WMB-10X"
CELLS_VERSION = "20241115"
MATRICES = "WMB-10Xv3"
MATRICES_VERSION = "20230630"
LEVELS = ("neurotransmitter", "class", "subclass", "supertype", "cluster")
SET_LABELS = ("CCN20230722_NEUR", "CCN20230722_CLAS", "CCN20230722_SUBC", "CCN20230722_SUPT", "CCN20230722_CLUS")
TERM_PREFIX = ("CS20230722_NEUR_", "CS20230722_CLAS_", "CS20230722_SUBC_", "CS20230722_SUPT_", "CS20230722_CLUS_")

NEUROTRANSMITTERS = {
    "Glut": "#2B93DF", "GABA": "#FF3358", "Glut-GABA": "#0a9964", "GABA-Glyc": "#8b4798", "Chol": "#73E785",
    "Dopa": "#fcf04b", "Sero": "#533691", "Nora": "#b5e9f3", "Hist": "#a6423b", "NA": "#666666",
}

# class | neurotransmitter | abundance | regions (region:weight) | subclasses (";"-separated)
_CLASSES = """
01 IT-ET Glut|Glut|14|Isocortex:0.8,HPF:0.05,CTXsp:0.1,OLF:0.05|001 CLA-EPd-CTX Car3 Glut;002 IT EP-CLA Glut;004 L6 IT CTX Glut;005 L5 IT CTX Glut;006 L4/5 IT CTX Glut;007 L2/3 IT CTX Glut;022 L5 ET CTX Glut
02 NP-CT-L6b Glut|Glut|8|Isocortex:0.9,CTXsp:0.1|028 L6b/CT ENT Glut;029 L6b CTX Glut;030 L6 CT CTX Glut;032 L5 NP CTX Glut
03 OB-CR Glut|Glut|1.5|OLF:0.8,HPF:0.2|033 NP SUB Glut;035 OB Eomes Ms4a15 Glut;036 HPF CR Glut
04 DG-IMN Glut|Glut|5|HPF:0.9,OLF:0.1|037 DG Glut;038 DG-PIR Ex IMN
05 OB-IMN GABA|GABA|4|OLF:0.8,STR:0.2|042 OB-STR-CTX Inh IMN;045 OB-in Frmd7 Gaba
06 CTX-CGE GABA|GABA|3|Isocortex:0.7,HPF:0.2,CTXsp:0.1|046 Vip Gaba;047 Sncg Gaba;049 Lamp5 Gaba;050 Lamp5 Lhx6 Gaba
07 CTX-MGE GABA|GABA|3.5|Isocortex:0.7,HPF:0.2,CTXsp:0.1|051 Pvalb chandelier Gaba;052 Pvalb Gaba;053 Sst Gaba;056 Sst Chodl Gaba
08 CNU-MGE GABA|GABA|1.5|STR:0.4,PAL:0.6|057 NDB-SI-MA-STRv Lhx8 Gaba;058 PAL-STRv Lhx8 Gaba;059 GPe-SI Sox6 Cyp26b1 Gaba;060 STR Chat Lhx8 Gaba
09 CNU-LGE GABA|GABA|9|STR:0.85,PAL:0.1,OLF:0.05|061 STR D1 Gaba;062 STR D2 Gaba;063 STR D1 Sema5a Gaba;064 STR-PAL Chst9 Gaba;065 IA Mgp Gaba;066 OT D3 Folh1 Gaba
10 LSX GABA|GABA|2|STR:0.8,PAL:0.2|071 LSX Prdm12 Zeb2 Gaba;073 LSX Nkx2-1 Gaba
11 CNU-HYa GABA|GABA|1.5|PAL:0.5,HY:0.5|077 CEA-BST Gal Avp Gaba;079 CEA-BST Six3 Cyp26b1 Gaba;081 ACB-BST-FS D1 Gaba
12 HY GABA|GABA|2|HY:1|082 DMH Hmx2 Gaba;084 PVR Six3 Sox3 Gaba;087 ZI Pax6 Gaba
13 CNU-HYa Glut|Glut|0.8|PAL:0.3,HY:0.7|092 BST-MPN Six3 Nrgn Glut;093 RE-Xi Nox4 Glut
14 HY Glut|Glut|2|HY:1|100 AHN Onecut3 Gaba-Glut;101 ZI Pax6 Glut;104 VMH Fezf1 Glut
15 HY Gnrh1 Glut|Glut|0.1|HY:1|111 Gnrh1 Glut
16 HY MM Glut|Glut|0.8|HY:1|114 MM Foxb1 Glut;116 PMd-LHA Foxb1 Glut
17 MH-LH Glut|Glut|0.6|TH:1|145 MH Tac2 Glut;147 LH Pou4f1 Sox1 Glut
18 TH Glut|Glut|4|TH:1|148 AV Col27a1 Glut;151 TH Prkcd Grin2c Glut;152 RE-Xi Nox4 Glut;154 PF Fzd5 Glut
19 MB Glut|Glut|3|MB:1|175 SCm Pax7 Glut;178 APN C1ql2 Glut;182 MB Cdh23 Glut
20 MB GABA|GABA|3|MB:1|197 SNr Six3 Gaba;199 PAG Pou4f2 Gaba;202 MB Dmbx1 Gaba
21 MB Dopa|Dopa|0.5|MB:1|214 SNc-VTA-RAmb Foxa1 Dopa;215 VTA Otx2 Calb1 Dopa
22 MB-HB Sero|Sero|0.4|MB:0.5,P:0.5|219 DR Sero;220 MB-HB Sero
23 P Glut|Glut|2|P:1|227 PB Evx2 Glut;232 PG-TRN-LRN Fat2 Glut;243 LC Dbh Nora
24 MY Glut|Glut|2|MY:1|256 MY Lhx1 Glut;262 NTS Phox2b Glut;270 IO Foxp2 Glut
25 Pineal Glut|Glut|0.05|TH:1|274 Pineal Crx Glut
26 P GABA|GABA|1.5|P:1|279 PRNr Lmo3 Gaba;283 PB Pdyn Gaba
27 MY GABA|GABA-Glyc|2|MY:1|290 MY Lhx1 Gly-Gaba;296 MY Tmem163 Gly-Gaba
28 CB GABA|GABA|1.5|CB:1|312 CB PLI Gly-Gaba;313 CB Purkinje Gaba;315 CBX MLI Megf11 Gaba;316 CBX MLI Cdh22 Gaba
29 CB Glut|Glut|10|CB:1|314 CB Granule Glut
30 Astro-Epen|NA|9|*|317 Astro-CB NN;318 Astro-NT NN;319 Astro-TE NN;321 Astroependymal NN;323 Ependymal NN
31 OPC-Oligo|NA|10|*|326 OPC NN;327 Oligo NN
32 OEC|NA|0.2|OLF:1|329 OEC NN
33 Vascular|NA|4|*|330 VLMC NN;331 Peri NN;332 SMC NN;333 Endo NN
34 Immune|NA|3|*|334 Microglia NN;335 BAM NN;337 DC NN;338 Lymphoid NN
"""

REGIONS = {  # feature matrix region -> region_of_interest_acronym values, share of the region's cells
    "Isocortex-1": ["MO-FRP", "SS-GU-VISC", "ACA"], "Isocortex-2": ["VIS", "AUD", "RSP"], "HPF": ["HIP", "RHP"],
    "OLF": ["OLF"], "CTXsp": ["CTXsp"], "STR": ["STRd", "STRv"], "PAL": ["PAL"], "TH": ["TH"], "HY": ["HY"],
    "MB": ["MB"], "P": ["P"], "MY": ["MY"], "CB": ["CB"],
}
DONORS = [
    ("Snap25-IRES2-Cre;Ai14-550850", "Snap25-IRES2-Cre/wt;Ai14(RCL-tdT)/wt", "M"),
    ("Snap25-IRES2-Cre;Ai14-551178", "Snap25-IRES2-Cre/wt;Ai14(RCL-tdT)/wt", "F"),
    ("C57BL6J-638850", "wt/wt", "M"),
    ("Slc32a1-IRES-Cre;Ai14-556021", "Slc32a1-IRES-Cre/wt;Ai14(RCL-tdT)/wt", "F"),
]

_KEYWORD_TAGS = [
    ("IT", "ctx_glut"), ("ET", "ctx_glut"), ("NP", "ctx_glut"), ("CT", "ctx_glut"), ("L6b", "ctx_glut"),
    ("D1", "d1"), ("D2", "d2"), ("STR", "msn"), ("Vip", "vip"), ("Lamp5", "lamp5"), ("Sncg", "cge"),
    ("Pvalb", "pvalb"), ("Sst", "sst"), ("Chodl", "chodl"), ("Lhx8", "lhx8"), ("Lhx6", "lhx6"), ("Sox6", "sox6"),
    ("Chat", "chat"), ("Dopa", "dopa"), ("Astro", "astro"), ("Ependymal", "epen"), ("OPC", "opc"),
    ("Oligo", "oligo"), ("Endo", "endo"), ("Peri", "peri"), ("SMC", "smc"), ("VLMC", "vlmc"),
    ("Microglia", "micro"), ("BAM", "bam"), ("DC", "mono"), ("Lymphoid", "tcell"), ("Purkinje", "pvalb"),
    ("ZI", "zi"), ("Frmd7", "frmd7"), ("Pax7", "ebf2"), ("Otx2", "ebf2"), ("Calb1", "calb1dopa"),
]


@dataclass
class Node:
    """A supertype (the unit of expression programs) with its parents and tags."""

    name: str
    subclass: str
    cls: str
    neighborhood: str  # broad division used for shared programs (the class's neurotransmitter)
    tags: frozenset[str]


def _tags(cls: str, nt: str, subclass: str) -> frozenset[str]:
    tags = {"all"}
    if nt != "NA":
        tags |= {"neuron", "gaba" if "GABA" in nt or "Gaba" in subclass else "glut"}
    if nt == "Dopa":
        tags.add("dopa")
    if cls.startswith(("01 ", "02 ")):
        tags.add("ctx_glut")
    if cls.startswith(("17 ", "18 ")):
        tags.add("th_glut")
    words = subclass.replace("/", " ").replace("-", " ").split()
    for key, tag in _KEYWORD_TAGS:
        if key in words:
            tags.add(tag)
    if "msn" in tags and not tags & {"d1", "d2"}:
        tags.discard("msn")
    if tags & {"oligo", "opc"}:
        tags.add("olig_lineage")
    return frozenset(tags)


def build_wmb_taxonomy(target_clusters: int) -> dict:
    """The mouse taxonomy (seed independent): terms per level and the cluster table."""
    rng = stream(0, "wmb", "taxonomy")
    classes, subclasses, supertypes, clusters = [], [], [], []
    st_num = 0
    for line in _CLASSES.strip().splitlines():
        cls, nt, abundance, regions, subs = line.split("|")
        region_w = {} if regions == "*" else {r.split(":")[0]: float(r.split(":")[1]) for r in regions.split(",")}
        classes.append({"name": cls, "nt": nt, "abundance": float(abundance), "regions": region_w})
        for sub in subs.split(";"):
            subclasses.append({"name": sub, "class": cls})
    per_sub = max(1.0, target_clusters / len(subclasses))
    for sub in subclasses:
        core = sub["name"].split(" ", 1)[1]
        n_st = 1 + int(rng.integers(0, 3 if per_sub > 3 else 2))
        for k in range(n_st):
            st_num += 1
            supertypes.append({"name": f"{st_num:04d} {core}_{k + 1}", "subclass": sub["name"], "class": sub["class"]})
    n_target = target_clusters
    weights = rng.dirichlet(np.ones(len(supertypes)) * 2.0)
    per_st = np.maximum(1, np.round(weights * n_target)).astype(int)
    cl_num = 0
    for st, k in zip(supertypes, per_st):
        core = st["name"].split(" ", 1)[1].rsplit("_", 1)[0]
        for j in range(int(k)):
            cl_num += 1
            clusters.append({"name": f"{cl_num:04d} {core}_{j + 1}", "supertype": st["name"],
                             "subclass": st["subclass"], "class": st["class"]})
    aliases = rng.permutation(np.arange(1, len(clusters) + 1) * 3 + rng.integers(0, 3, len(clusters)))
    nt_of_class = {c["name"]: c["nt"] for c in classes}
    for c, alias in zip(clusters, aliases):
        c["alias"] = int(alias)
        nt = nt_of_class[c["class"]]
        # a few clusters differ from their class's transmitter, as in the atlas
        if nt == "Glut" and rng.random() < 0.06:
            nt = "Glut-GABA"
        elif nt == "GABA" and "Chat" in c["name"]:
            nt = "Chol"
        elif "Nora" in c["name"]:
            nt = "Nora"
        elif c["class"].startswith("14 ") and rng.random() < 0.1:
            nt = "Hist"
        c["nt"] = nt
    colors = palette([c["name"] for c in classes], 0.15) | palette([s["name"] for s in subclasses], 0.45) \
        | palette([s["name"] for s in supertypes], 0.75) | palette([c["name"] for c in clusters], 0.05, 0.8, 0.9) \
        | NEUROTRANSMITTERS
    return {"classes": classes, "subclasses": subclasses, "supertypes": supertypes, "clusters": clusters,
            "colors": colors}


def _term_tables(tax: dict, cells_per_alias: dict[int, int]) -> dict[str, pd.DataFrame]:
    colors = tax["colors"]
    term_sets = pd.DataFrame({
        "label": list(SET_LABELS), "name": list(LEVELS),
        "description": ["clusters grouped by dominant neurotransmitter type", "Top level of cell type definition",
                        "Second level of cell type definition", "Third level of cell type definition",
                        "Finest level of cell type definition"],
        "order": list(range(5)),
    })
    labels: dict[tuple[int, str], str] = {}
    nts = list(NEUROTRANSMITTERS)
    for i, nt in enumerate(nts):
        labels[(0, nt)] = f"{TERM_PREFIX[0]}{nt}"
    for i, c in enumerate(tax["classes"]):
        labels[(1, c["name"])] = f"{TERM_PREFIX[1]}{c['name'][:2]}"
    for i, s in enumerate(tax["subclasses"]):
        labels[(2, s["name"])] = f"{TERM_PREFIX[2]}{s['name'][:3]}"
    for i, s in enumerate(tax["supertypes"]):
        labels[(3, s["name"])] = f"{TERM_PREFIX[3]}{s['name'][:4]}"
    for i, c in enumerate(tax["clusters"]):
        labels[(4, c["name"])] = f"{TERM_PREFIX[4]}{c['name'][:4]}"

    counts_at: dict[tuple[int, str], int] = {}
    for c in tax["clusters"]:
        n = int(cells_per_alias.get(c["alias"], 0))
        for level, name in enumerate((c["nt"], c["class"], c["subclass"], c["supertype"], c["name"])):
            counts_at[(level, name)] = counts_at.get((level, name), 0) + n

    rows = []
    for i, nt in enumerate(nts):
        rows.append((labels[(0, nt)], nt, SET_LABELS[0], "", "", 0, i, LEVELS[0], colors[nt]))
    for i, c in enumerate(tax["classes"]):
        rows.append((labels[(1, c["name"])], c["name"], SET_LABELS[1], "", "", 1, i, LEVELS[1], colors[c["name"]]))
    for i, s in enumerate(tax["subclasses"]):
        rows.append((labels[(2, s["name"])], s["name"], SET_LABELS[2], labels[(1, s["class"])], SET_LABELS[1], 2, i,
                     LEVELS[2], colors[s["name"]]))
    for i, s in enumerate(tax["supertypes"]):
        rows.append((labels[(3, s["name"])], s["name"], SET_LABELS[3], labels[(2, s["subclass"])], SET_LABELS[2], 3,
                     i, LEVELS[3], colors[s["name"]]))
    for i, c in enumerate(tax["clusters"]):
        rows.append((labels[(4, c["name"])], c["name"], SET_LABELS[4], labels[(3, c["supertype"])], SET_LABELS[3], 4,
                     i, LEVELS[4], colors[c["name"]]))
    terms = pd.DataFrame(rows, columns=["label", "name", "cluster_annotation_term_set_label", "parent_term_label",
                                        "parent_term_set_label", "term_set_order", "term_order",
                                        "cluster_annotation_term_set_name", "color_hex_triplet"])
    with_counts = terms.copy()
    level_of = {s: i for i, s in enumerate(SET_LABELS)}
    with_counts["number_of_cells"] = [counts_at.get((level_of[s], n), 0) for s, n in
                                      zip(terms["cluster_annotation_term_set_label"], terms["name"])]

    cluster = pd.DataFrame({
        "label": [labels[(4, c["name"])] for c in tax["clusters"]],
        "cluster_alias": [c["alias"] for c in tax["clusters"]],
        "number_of_cells": [int(cells_per_alias.get(c["alias"], 0)) for c in tax["clusters"]],
    })
    member = []
    pivot, pivot_col = [], []
    for c in tax["clusters"]:
        path = (c["nt"], c["class"], c["subclass"], c["supertype"], c["name"])
        n = int(cells_per_alias.get(c["alias"], 0))
        for level, name in enumerate(path):
            member.append((labels[(level, name)], SET_LABELS[level], c["alias"], name, LEVELS[level], n,
                           colors[name]))
        pivot.append((c["alias"], *path))
        pivot_col.append((c["alias"], *[colors[p] for p in path]))
    membership = pd.DataFrame(member, columns=[
        "cluster_annotation_term_label", "cluster_annotation_term_set_label", "cluster_alias",
        "cluster_annotation_term_name", "cluster_annotation_term_set_name", "number_of_cells", "color_hex_triplet"])
    pivoted = pd.DataFrame(pivot, columns=["cluster_alias", *LEVELS])
    color_view = pd.DataFrame(pivot_col, columns=["cluster_alias", *[f"{lv}_color" for lv in LEVELS]])
    return {
        "cluster_annotation_term_set": term_sets, "cluster_annotation_term": terms, "cluster": cluster,
        "cluster_to_cluster_annotation_membership": membership,
        "views/cluster_to_cluster_annotation_membership_pivoted": pivoted,
        "views/cluster_to_cluster_annotation_membership_color": color_view,
        "views/cluster_annotation_term_with_counts": with_counts,
    }


def mouse_genes(n: int) -> list[Gene]:
    """``n`` mouse genes: the catalogue's symbols in mouse case, then ``Gm`` predicted genes."""
    genes = [Gene(mouse_symbol(g.symbol), g.description, g.rules) for g in REAL_GENES
             if not g.symbol.startswith("HLA-")][:n]
    k = 0
    while len(genes) < n:
        num = 10_000 + 37 * k
        genes.append(Gene(f"Gm{num}", f"predicted gene {num}"))
        k += 1
    return genes


def write_wmb(cache: Path, scale: DemoScale, seed: int, bar=None) -> dict:
    """Write ``WMB-taxonomy``, ``WMB-10X`` and the regional ``WMB-10Xv3`` matrices; returns a summary."""
    tax = build_wmb_taxonomy(scale.wmb_clusters)
    rng = stream(seed, "wmb")
    classes = {c["name"]: c for c in tax["classes"]}
    clusters = tax["clusters"]
    n_clusters = len(clusters)

    # cells per cluster: class abundance split over its clusters
    per_class = {}
    for c in clusters:
        per_class.setdefault(c["class"], []).append(c)
    w = np.array([classes[c["class"]]["abundance"] / len(per_class[c["class"]]) for c in clusters])
    w *= rng.lognormal(0.0, 0.6, n_clusters)
    cluster_of_cell = np.sort(rng.choice(n_clusters, size=scale.wmb_cells, p=w / w.sum()))
    rng.shuffle(cluster_of_cell)
    n = len(cluster_of_cell)

    # dissection region of each cell from its class
    regions = list(REGIONS)
    region_of_cell = np.empty(n, dtype=object)
    for cls_name, cl in per_class.items():
        rw = classes[cls_name]["regions"]
        names = [r for r in regions if (r.split("-")[0] in rw) or not rw]
        p = np.array([rw.get(r.split("-")[0], 1.0) / (2 if r.startswith("Isocortex") else 1) for r in names])
        idx_cl = np.array([clusters.index(c) for c in cl])
        idx = np.flatnonzero(np.isin(cluster_of_cell, idx_cl))
        region_of_cell[idx] = np.array(names, dtype=object)[rng.choice(len(names), size=len(idx), p=p / p.sum())]
    order = np.lexsort((cluster_of_cell, np.array([regions.index(r) for r in region_of_cell])))
    cluster_of_cell, region_of_cell = cluster_of_cell[order], region_of_cell[order]
    if bar is not None:
        bar.update(1)

    # libraries: a few per region, each from one donor
    lib_rows = []
    library_of_cell = np.empty(n, dtype=object)
    sample_of_cell = np.empty(n, dtype=object)
    donor_of_cell = np.empty(n, dtype=np.int64)
    roi_of_cell = np.empty(n, dtype=object)
    for region in regions:
        idx = np.flatnonzero(region_of_cell == region)
        if not len(idx):
            continue
        k = 4
        lib_idx = rng.integers(0, k, len(idx))
        for j in range(k):
            well = f"{'ABCDEFGH'[int(rng.integers(0, 8))]}{int(rng.integers(1, 13)):02d}"
            date = f"2{int(rng.integers(0, 2))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
            label = f"L8TX_{date}_01_{well}"
            sample = f"{int(rng.integers(100, 999))}_{well}"
            donor = int(rng.integers(0, len(DONORS)))
            sel = idx[lib_idx == j]
            library_of_cell[sel] = label
            sample_of_cell[sel] = sample
            donor_of_cell[sel] = donor
            roi_of_cell[sel] = REGIONS[region][j % len(REGIONS[region])]
            lib_rows.append(label)

    barcodes = np.ascontiguousarray(np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(n, 16))]
                                    ).view("S16").ravel().astype(str).astype(object)
    labels = np.array([f"{b}-{s}" for b, s in zip(barcodes, sample_of_cell)], dtype=object)

    # UMAP
    broad = {"Glut": "Glut", "GABA": "GABA", "GABA-Glyc": "GABA", "Dopa": "Glut", "Sero": "Glut", "NA": "NN"}
    paths = [(broad[classes[c["class"]]["nt"]], c["class"], c["subclass"], c["supertype"], c["name"]) for c in clusters]
    urng = stream(seed, "wmb", "umap")
    centres = layout_centres(paths, (3.4, 1.3, 0.5, 0.17), urng, top_radius=8.5)
    xy = scatter_islands(centres, cluster_of_cell, urng, base_sd=0.05)

    meta_dir = cache / "metadata" / CELLS / CELLS_VERSION
    donor_labels = np.array([d[0] for d in DONORS], dtype=object)
    cell_metadata = pd.DataFrame({
        "cell_label": labels, "cell_barcode": barcodes, "barcoded_cell_sample_label": sample_of_cell,
        "library_label": library_of_cell,
        "feature_matrix_label": np.array([f"{MATRICES}-{r}" for r in region_of_cell], dtype=object),
        "entity": "cell", "brain_section_label": np.nan, "library_method": "10Xv3",
        "region_of_interest_acronym": roi_of_cell, "donor_label": donor_labels[donor_of_cell],
        "donor_genotype": np.array([d[1] for d in DONORS], dtype=object)[donor_of_cell],
        "donor_sex": np.array([d[2] for d in DONORS], dtype=object)[donor_of_cell],
        "dataset_label": MATRICES, "x": np.round(xy[:, 0], 6), "y": np.round(xy[:, 1], 6),
        "cluster_alias": np.array([c["alias"] for c in clusters])[cluster_of_cell],
        "abc_sample_id": uuids(rng, n),
    })
    write_csv(cell_metadata, meta_dir / "cell_metadata.csv")
    rois = [(r, roi) for r, rs in REGIONS.items() for roi in rs]
    roi_colors = palette([roi for _, roi in rois], 0.33)
    write_csv(pd.DataFrame({
        "acronym": [roi for _, roi in rois], "name": [roi for _, roi in rois],
        "order": range(len(rois)), "color_hex_triplet": [roi_colors[roi] for _, roi in rois],
    }), meta_dir / "region_of_interest_metadata.csv")

    genes = mouse_genes(scale.wmb_genes)
    gene_df = pd.DataFrame({
        "gene_identifier": [ensembl_id("ENSMUSG", g.symbol) for g in genes],
        "gene_symbol": [g.symbol for g in genes],
        "name": [g.description for g in genes],
        "mapped_ncbi_identifier": [f"NCBIGene:{ncbi_id('mouse', g.symbol)}" if not g.symbol.startswith("Gm")
                                   or stable_int(g.symbol, 2) % 3 else "" for g in genes],
        "comment": "",
    })
    write_csv(gene_df, meta_dir / "gene.csv")
    if bar is not None:
        bar.update(1)

    # expression: supertype programs, cluster variation, one h5ad per region
    supertypes = {s["name"]: s for s in tax["supertypes"]}
    nodes = []
    st_index = {}
    for name, s in supertypes.items():
        nt = classes[s["class"]]["nt"]
        st_index[name] = len(nodes)
        nodes.append(Node(name, s["subclass"], s["class"], nt, _tags(s["class"], nt, s["subclass"])))
    prof_rng = stream(seed, "wmb", "profiles")
    gprof = group_profiles(genes, nodes, prof_rng)
    cprof = cluster_profiles(gprof, np.array([st_index[c["supertype"]] for c in clusters]), prof_rng,
                             specific_genes=np.array([i for i, g in enumerate(genes) if not g.rules]))
    neuron = np.array([classes[c["class"]]["nt"] != "NA" for c in clusters])[cluster_of_cell]
    size = np.where(neuron, 3.0, 1.4) * rng.lognormal(0.0, 0.35, n)
    counts = sample_counts(cprof, cluster_of_cell, size, rng)
    log2 = log2_cpm(counts)
    written = []
    for region in regions:
        idx = np.flatnonzero(region_of_cell == region)
        if not len(idx):
            continue
        path = cache / "expression_matrices" / MATRICES / MATRICES_VERSION / f"{MATRICES}-{region}-log2.h5ad"
        write_h5ad(path, log2[idx], labels[idx], gene_df["gene_identifier"].to_numpy(),
                   gene_df["gene_symbol"].to_numpy())
        written.append(region)
    if bar is not None:
        bar.update(1)

    aliases = np.array([c["alias"] for c in clusters])
    cells_per_alias = dict(zip(*np.unique(aliases[cluster_of_cell], return_counts=True)))
    tax_dir = cache / "metadata" / TAXONOMY / TAXONOMY_VERSION
    for name, table in _term_tables(tax, {int(k): int(v) for k, v in cells_per_alias.items()}).items():
        write_csv(table, tax_dir / f"{name}.csv")
    if bar is not None:
        bar.update(1)
    return {"dataset": CELLS, "cells": n, "clusters": n_clusters, "genes": len(genes), "regions": written,
            "classes": len(tax["classes"]), "subclasses": len(tax["subclasses"]),
            "supertypes": len(tax["supertypes"])}
