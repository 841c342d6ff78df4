"""The whole mouse brain demo: ``WMB-taxonomy`` (older schema), ``WMB-10X`` cells and ``WMB-10Xv3`` matrices.

Levels ``neurotransmitter, class, subclass, supertype, cluster`` with the 34 real class names and
numbered subclass, supertype and cluster names (``01 IT-ET Glut``, ``0326 ...``); integer cluster
aliases; neurotransmitter terms include one literally named ``NA`` (non-neuronal clusters). The older
membership table carries ``number_of_cells`` and ``color_hex_triplet``, and the pivoted views live under
``views/``. Cells lie on a whole-brain UMAP and their expression is split into regional h5ad files named
by the cells' ``feature_matrix_label``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .counts import cluster_profiles, group_profiles, log2_cpm, sample_counts
from .genes import REAL_GENES, Gene, ensembl_id, mouse_symbol, ncbi_id
from .h5ad_writer import StreamingH5adWriter, write_h5ad
from .scale import DemoScale
from .umap import layout_centres, scatter_islands
from .util import append_csv, palette, stable_int, stream, uuids, write_csv

log = logging.getLogger(__name__)

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


def _fill_subclasses(subclasses: list[dict], n_subclasses: int) -> list[dict]:
    """The catalogue's subclasses plus numbered ones in the gaps of ``001..n_subclasses``, in number order.

    A new subclass joins the class of the catalogue subclass numbered just below it (the atlas numbers subclasses
    class by class), keeps that subclass's first word (a region or lineage) and its transmitter suffix, and adds a
    marker gene, as atlas names do (``003 CLA Nr4a2 Glut``).
    """
    listed = {int(s["name"][:3]): s for s in subclasses}
    if len(listed) > n_subclasses or max(listed) > n_subclasses:
        raise ValueError(f"wmb_subclasses={n_subclasses} is below the catalogue's {len(listed)} subclasses "
                         f"(numbered up to {max(listed)})")
    markers = [mouse_symbol(g.symbol) for g in REAL_GENES if g.rules and g.symbol.isalnum()]
    out, template = [], subclasses[0]
    for number in range(1, n_subclasses + 1):
        if number in listed:
            template = listed[number]
            out.append(template)
            continue
        words = template["name"].split()[1:]
        gene = markers[stable_int(f"wmb-subclass-{number}", 6) % len(markers)]
        name = f"{number:03d} {words[0]} {gene} {words[-1]}" if len(words) > 1 else f"{number:03d} {gene} {words[0]}"
        out.append({"name": name, "class": template["class"]})
    return out


def _split_exact(parents: list[dict], n_children: int, rng: np.random.Generator) -> np.ndarray:
    """Children per parent (int array, each >= 1) summing to exactly ``n_children``, Dirichlet-skewed."""
    if n_children < len(parents):
        raise ValueError(f"{n_children} terms cannot give each of {len(parents)} parents a child")
    weights = rng.dirichlet(np.ones(len(parents)) * 2.0)
    return 1 + rng.multinomial(n_children - len(parents), weights)


def build_wmb_taxonomy(target_clusters: int, n_subclasses: int | None = None,
                       n_supertypes: int | None = None) -> dict:
    """The mouse taxonomy (seed independent): terms per level and the cluster table.

    With ``n_subclasses`` and ``n_supertypes`` the taxonomy has exactly that many subclasses and supertypes and
    ``target_clusters`` clusters (the atlas: 338, 1,201 and 5,322); without, the catalogue's subclasses get
    1-3 supertypes each and about ``target_clusters`` clusters.
    """
    rng = stream(0, "wmb", "taxonomy")
    classes, subclasses, supertypes, clusters = [], [], [], []
    st_num = 0
    for line in _CLASSES.strip().splitlines():
        cls, nt, abundance, regions, subs = line.split("|")
        region_w = {} if regions == "*" else {r.split(":")[0]: float(r.split(":")[1]) for r in regions.split(",")}
        classes.append({"name": cls, "nt": nt, "abundance": float(abundance), "regions": region_w})
        for sub in subs.split(";"):
            subclasses.append({"name": sub, "class": cls})
    exact = n_subclasses is not None or n_supertypes is not None
    if exact:
        if n_subclasses is None or n_supertypes is None:
            raise ValueError("give both wmb_subclasses and wmb_supertypes, or neither")
        subclasses = _fill_subclasses(subclasses, n_subclasses)
        per_sub_exact = _split_exact(subclasses, n_supertypes, rng)
    per_sub = max(1.0, target_clusters / len(subclasses))
    for i, sub in enumerate(subclasses):
        core = sub["name"].split(" ", 1)[1]
        n_st = int(per_sub_exact[i]) if exact else 1 + int(rng.integers(0, 3 if per_sub > 3 else 2))
        for k in range(n_st):
            st_num += 1
            supertypes.append({"name": f"{st_num:04d} {core}_{k + 1}", "subclass": sub["name"], "class": sub["class"]})
    n_target = target_clusters
    if exact:
        per_st = _split_exact(supertypes, n_target, rng)
    else:
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


@dataclass
class _Cells:
    """Per-cell arrays of ``WMB-10X`` in file order (cells sorted by region, then cluster); no per-cell strings."""

    cluster: np.ndarray   # int64 row of ``tax["clusters"]``
    region: np.ndarray    # object: feature-matrix region (shared string objects)
    library: np.ndarray   # object
    sample: np.ndarray    # object
    donor: np.ndarray     # int64 index of ``DONORS``
    roi: np.ndarray       # object


def write_wmb(cache: Path, scale: DemoScale, seed: int, bar=None) -> dict:
    """Write ``WMB-taxonomy``, ``WMB-10X`` and the regional ``WMB-10Xv3`` matrices; returns a summary.

    With ``scale.chunk_cells`` the cell table and the matrices are written chunk by chunk of cells (memory bounded
    by the chunk, not by ``scale.wmb_cells``); otherwise in one piece (the demo's bytes).
    """
    tax = build_wmb_taxonomy(scale.wmb_clusters, scale.wmb_subclasses, scale.wmb_supertypes)
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
    position = {id(c): i for i, c in enumerate(clusters)}
    region_of_cell = np.empty(n, dtype=object)
    for cls_name, cl in per_class.items():
        rw = classes[cls_name]["regions"]
        names = [r for r in regions if (r.split("-")[0] in rw) or not rw]
        p = np.array([rw.get(r.split("-")[0], 1.0) / (2 if r.startswith("Isocortex") else 1) for r in names])
        idx_cl = np.array([position[id(c)] for c in cl])
        idx = np.flatnonzero(np.isin(cluster_of_cell, idx_cl))
        region_of_cell[idx] = np.array(names, dtype=object)[rng.choice(len(names), size=len(idx), p=p / p.sum())]
    region_index = {r: i for i, r in enumerate(regions)}
    order = np.lexsort((cluster_of_cell, np.array([region_index[r] for r in region_of_cell])))
    cluster_of_cell, region_of_cell = cluster_of_cell[order], region_of_cell[order]
    if bar is not None:
        bar.update(1)

    # libraries: a few per region, each from one donor
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
    cells = _Cells(cluster_of_cell, region_of_cell, library_of_cell, sample_of_cell, donor_of_cell, roi_of_cell)

    genes = mouse_genes(scale.wmb_genes)
    if scale.chunk_cells is None:
        written = _write_cells_in_memory(cache, tax, cells, genes, rng, seed)
    else:
        written = _write_cells_streamed(cache, tax, cells, genes, seed, scale.chunk_cells, bar)
    if bar is not None:
        bar.update(2)

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


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(n, 16))]
                                ).view("S16").ravel().astype(str).astype(object)


def _unique_barcodes(start: int, stop: int, seed: int) -> np.ndarray:
    """16-letter barcodes of cells ``start..stop-1``, distinct over the whole dataset (object array of str).

    Random barcodes of millions of cells collide (the birthday problem, about 40 pairs at 4 M cells within a
    sample); here the cell number goes through a bijection of 32-bit integers (an odd multiplier and a seed
    offset), two bits per letter, so they look random and never repeat.
    """
    offset = np.uint64(stable_int(f"wmb-barcodes-{seed}", 9) % (1 << 32))
    v = (np.arange(start, stop, dtype=np.uint64) * np.uint64(2654435761) + offset) % np.uint64(1 << 32)
    letters = (v[:, None] >> (np.arange(16, dtype=np.uint64) * np.uint64(2))) & np.uint64(3)
    return np.ascontiguousarray(np.frombuffer(b"ACGT", dtype=np.uint8)[letters.astype(np.intp)]
                                ).view("S16").ravel().astype(str).astype(object)


def _umap(tax: dict, cells: _Cells, seed: int) -> np.ndarray:
    """UMAP (x, y) float64 of every cell, shape (n, 2): islands per cluster, grouped by the taxonomy."""
    broad = {"Glut": "Glut", "GABA": "GABA", "GABA-Glyc": "GABA", "Dopa": "Glut", "Sero": "Glut", "NA": "NN"}
    classes = {c["name"]: c for c in tax["classes"]}
    paths = [(broad[classes[c["class"]]["nt"]], c["class"], c["subclass"], c["supertype"], c["name"])
             for c in tax["clusters"]]
    urng = stream(seed, "wmb", "umap")
    centres = layout_centres(paths, (3.4, 1.3, 0.5, 0.17), urng, top_radius=8.5)
    return scatter_islands(centres, cells.cluster, urng, base_sd=0.05)


def _cell_metadata(tax: dict, cells: _Cells, rows, labels, barcodes, sample_ids, xy: np.ndarray) -> pd.DataFrame:
    """Rows ``rows`` (a slice or index array) of ``cell_metadata.csv``."""
    donor_labels = np.array([d[0] for d in DONORS], dtype=object)
    aliases = np.array([c["alias"] for c in tax["clusters"]])
    donor = cells.donor[rows]
    return pd.DataFrame({
        "cell_label": labels, "cell_barcode": barcodes, "barcoded_cell_sample_label": cells.sample[rows],
        "library_label": cells.library[rows],
        "feature_matrix_label": np.array([f"{MATRICES}-{r}" for r in cells.region[rows]], dtype=object),
        "entity": "cell", "brain_section_label": np.nan, "library_method": "10Xv3",
        "region_of_interest_acronym": cells.roi[rows], "donor_label": donor_labels[donor],
        "donor_genotype": np.array([d[1] for d in DONORS], dtype=object)[donor],
        "donor_sex": np.array([d[2] for d in DONORS], dtype=object)[donor],
        "dataset_label": MATRICES, "x": np.round(xy[rows, 0], 6), "y": np.round(xy[rows, 1], 6),
        "cluster_alias": aliases[cells.cluster[rows]],
        "abc_sample_id": sample_ids,
    })


def _write_small_tables(meta_dir: Path, genes: list[Gene]) -> pd.DataFrame:
    """``region_of_interest_metadata.csv`` and ``gene.csv``; returns the gene table."""
    rois = [(r, roi) for r, rs in REGIONS.items() for roi in rs]
    roi_colors = palette([roi for _, roi in rois], 0.33)
    write_csv(pd.DataFrame({
        "acronym": [roi for _, roi in rois], "name": [roi for _, roi in rois],
        "order": range(len(rois)), "color_hex_triplet": [roi_colors[roi] for _, roi in rois],
    }), meta_dir / "region_of_interest_metadata.csv")
    gene_df = pd.DataFrame({
        "gene_identifier": [ensembl_id("ENSMUSG", g.symbol) for g in genes],
        "gene_symbol": [g.symbol for g in genes],
        "name": [g.description for g in genes],
        "mapped_ncbi_identifier": [f"NCBIGene:{ncbi_id('mouse', g.symbol)}" if not g.symbol.startswith("Gm")
                                   or stable_int(g.symbol, 2) % 3 else "" for g in genes],
        "comment": "",
    })
    write_csv(gene_df, meta_dir / "gene.csv")
    return gene_df


def _cluster_means(tax: dict, genes: list[Gene], seed: int) -> np.ndarray:
    """Mean counts per cluster, shape (n_clusters, n_genes): supertype programs, varied per cluster."""
    classes = {c["name"]: c for c in tax["classes"]}
    nodes = []
    st_index = {}
    for s in tax["supertypes"]:
        nt = classes[s["class"]]["nt"]
        st_index[s["name"]] = len(nodes)
        nodes.append(Node(s["name"], s["subclass"], s["class"], nt, _tags(s["class"], nt, s["subclass"])))
    prof_rng = stream(seed, "wmb", "profiles")
    gprof = group_profiles(genes, nodes, prof_rng)
    return cluster_profiles(gprof, np.array([st_index[c["supertype"]] for c in tax["clusters"]]), prof_rng,
                            specific_genes=np.array([i for i, g in enumerate(genes) if not g.rules]))


def _is_neuron(tax: dict) -> np.ndarray:
    classes = {c["name"]: c for c in tax["classes"]}
    return np.array([classes[c["class"]]["nt"] != "NA" for c in tax["clusters"]])


def _write_cells_in_memory(cache: Path, tax: dict, cells: _Cells, genes: list[Gene], rng: np.random.Generator,
                           seed: int) -> list[str]:
    """Cell table and regional matrices built whole (the demo); returns the regions written."""
    n = len(cells.cluster)
    barcodes = _barcodes(rng, n)
    labels = np.array([f"{b}-{s}" for b, s in zip(barcodes, cells.sample)], dtype=object)
    xy = _umap(tax, cells, seed)
    meta_dir = cache / "metadata" / CELLS / CELLS_VERSION
    sample_ids = uuids(rng, n)
    write_csv(_cell_metadata(tax, cells, slice(None), labels, barcodes, sample_ids, xy),
              meta_dir / "cell_metadata.csv")
    gene_df = _write_small_tables(meta_dir, genes)

    # expression: supertype programs, cluster variation, one h5ad per region
    cprof = _cluster_means(tax, genes, seed)
    neuron = _is_neuron(tax)[cells.cluster]
    size = np.where(neuron, 3.0, 1.4) * rng.lognormal(0.0, 0.35, n)
    counts = sample_counts(cprof, cells.cluster, size, rng)
    log2 = log2_cpm(counts)
    written = []
    for region in REGIONS:
        idx = np.flatnonzero(cells.region == region)
        if not len(idx):
            continue
        path = cache / "expression_matrices" / MATRICES / MATRICES_VERSION / f"{MATRICES}-{region}-log2.h5ad"
        write_h5ad(path, log2[idx], labels[idx], gene_df["gene_identifier"].to_numpy(),
                   gene_df["gene_symbol"].to_numpy())
        written.append(region)
    return written


def _write_cells_streamed(cache: Path, tax: dict, cells: _Cells, genes: list[Gene], seed: int, chunk_cells: int,
                          bar=None) -> list[str]:
    """Cell table and regional matrices written ``chunk_cells`` cells at a time; returns the regions written.

    Each chunk draws from its own random stream (labels, sample ids, size factors, counts), so the bytes depend on
    the seed and the chunk size only. Cells of a region are contiguous, so each regional h5ad grows chunk by chunk
    beside the cell table.
    """
    xy = _umap(tax, cells, seed)
    meta_dir = cache / "metadata" / CELLS / CELLS_VERSION
    gene_df = _write_small_tables(meta_dir, genes)
    cprof = _cluster_means(tax, genes, seed)
    neuron = _is_neuron(tax)
    ids, symbols = gene_df["gene_identifier"].to_numpy(), gene_df["gene_symbol"].to_numpy()
    table = meta_dir / "cell_metadata.csv"
    written, first = [], True
    region_index = {r: i for i, r in enumerate(REGIONS)}
    codes = np.array([region_index[r] for r in cells.region])
    bounds = np.searchsorted(codes, np.arange(len(REGIONS) + 1))  # cells are sorted by region
    chunk_bar = tqdm(total=len(codes), desc="  WMB-10X cells", unit="cell", unit_scale=True, leave=False,
                     disable=bar is None or getattr(bar, "disable", True))
    with chunk_bar:
        for r, region in enumerate(REGIONS):
            start, stop = int(bounds[r]), int(bounds[r + 1])
            if start == stop:
                continue
            path = cache / "expression_matrices" / MATRICES / MATRICES_VERSION / f"{MATRICES}-{region}-log2.h5ad"
            with StreamingH5adWriter(path, ids, symbols) as h5:
                for a in range(start, stop, chunk_cells):
                    b = min(stop, a + chunk_cells)
                    crng = stream(seed, "wmb", "cells", str(a))
                    barcodes = _unique_barcodes(a, b, seed)
                    labels = np.array([f"{bc}-{s}" for bc, s in zip(barcodes, cells.sample[a:b])], dtype=object)
                    sample_ids = uuids(crng, b - a)
                    append_csv(_cell_metadata(tax, cells, slice(a, b), labels, barcodes, sample_ids, xy), table,
                               header=first)
                    first = False
                    size = np.where(neuron[cells.cluster[a:b]], 3.0, 1.4) * crng.lognormal(0.0, 0.35, b - a)
                    h5.append(log2_cpm(sample_counts(cprof, cells.cluster[a:b], size, crng)), labels)
                    chunk_bar.update(b - a)
            written.append(region)
            log.debug("%s: %d cells, %d non-zeros", path.name, h5.n_cells, h5.nnz)
    return written
