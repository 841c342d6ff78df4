"""The demo basal ganglia taxonomy (``HMBA-BG-taxonomy-CCN20250428``): five levels, species clusters.

Neighborhood > Class > Subclass > Group > Cluster, with the real neighborhood, class, subclass and group
names of the consensus basal ganglia taxonomy. Groups are shared by the three primates; clusters are
species-specific (aliases ``Human-12``, ``Macaque-40``, ``Marmoset-7``) and a cluster's name equals its
alias. Cells of regions adjacent to the basal ganglia map to extra "Adjacent" clusters whose aliases are
NOT in the taxonomy tables, as in the release.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .util import palette

TAXONOMY = "HMBA-BG-taxonomy-CCN20250428"
SPECIES = ("Human", "Macaque", "Marmoset")
LEVELS = ("Neighborhood", "Class", "Subclass", "Group", "Cluster")
TERM_SET_LABELS = tuple(f"CCN20250428_LEVEL_{i}" for i in range(5))
TERM_PREFIX = ("CS20250428_NEIGH_", "CS20250428_CLASS_", "CS20250428_SUBCL_", "CS20250428_GROUP_",
               "CS20250428_CLUST_")
ADJACENT_COLOR = "#808080"

NEIGHBORHOODS = ["Subpallium GABA", "Subpallium GABA-Glut", "Glut Sero Dopa", "Nonneuron"]

CLASSES = [  # (class, neighborhood)
    ("CN LGE GABA", "Subpallium GABA"), ("CN MGE GABA", "Subpallium GABA"), ("CN CGE GABA", "Subpallium GABA"),
    ("Cx GABA", "Subpallium GABA"), ("CN GABA-Glut", "Subpallium GABA-Glut"), ("F M GABA", "Subpallium GABA-Glut"),
    ("F M Glut", "Glut Sero Dopa"), ("M Dopa", "Glut Sero Dopa"), ("Astro-Epen", "Nonneuron"),
    ("OPC-Oligo", "Nonneuron"), ("Immune", "Nonneuron"), ("Vascular", "Nonneuron"),
]

SUBCLASSES = [  # (subclass, class)
    ("STR D1 MSN", "CN LGE GABA"), ("STR D2 MSN", "CN LGE GABA"), ("STR Hybrid MSN", "CN LGE GABA"),
    ("OT Granular GABA", "CN LGE GABA"), ("CN MEIS2 GABA", "CN LGE GABA"), ("CN ST18 GABA", "CN LGE GABA"),
    ("CN LHX8 GABA", "CN MGE GABA"), ("CN Cholinergic GABA", "CN MGE GABA"), ("STR SST-CHODL GABA", "CN MGE GABA"),
    ("STR RSPO2 GABA", "CN MGE GABA"), ("STR SST GABA", "CN MGE GABA"), ("CN LAMP5-LHX6 GABA", "CN MGE GABA"),
    ("CN VIP GABA", "CN CGE GABA"), ("CN LAMP5-CXCL14 GABA", "CN CGE GABA"), ("ACx MEIS2 GABA", "Cx GABA"),
    ("CN GABA-Glut", "CN GABA-Glut"), ("CN ONECUT1 GABA", "CN GABA-Glut"), ("F GABA", "F M GABA"),
    ("F M GATA3 GABA", "F M GABA"), ("SN PAX7 GABA", "F M GABA"), ("F Glut", "F M Glut"), ("F M Glut", "F M Glut"),
    ("M Dopa", "M Dopa"), ("Astrocyte", "Astro-Epen"), ("Ependymal", "Astro-Epen"), ("OPC", "OPC-Oligo"),
    ("COP", "OPC-Oligo"), ("Oligodendrocyte", "OPC-Oligo"), ("Microglia", "Immune"), ("Macrophage", "Immune"),
    ("Lymphocyte", "Immune"), ("Endo", "Vascular"), ("Pericyte", "Vascular"), ("SMC", "Vascular"),
    ("VLMC", "Vascular"),
]

_N, _G, _GL = "neuron,gaba", "neuron,glut", "olig_lineage"
# group | subclass | tags | clusters per species | species without the group (comma separated)
_GROUPS = f"""
STRd D1 Matrix MSN|STR D1 MSN|{_N},msn,d1,matrix|5|
STRd D1 Striosome MSN|STR D1 MSN|{_N},msn,d1,strio|3|
STRv D1 MSN|STR D1 MSN|{_N},msn,d1,strv|4|
STRv D1 NUDAP MSN|STR D1 MSN|{_N},msn,d1,strv,nudap|2|
STRd D2 Matrix MSN|STR D2 MSN|{_N},msn,d2,matrix|5|
STRd D2 Striosome MSN|STR D2 MSN|{_N},msn,d2,strio|3|
STRv D2 MSN|STR D2 MSN|{_N},msn,d2,strv|4|
STRd D2 StrioMat Hybrid MSN|STR D2 MSN|{_N},msn,d2,strio,matrix|2|
STR D1D2 Hybrid MSN|STR Hybrid MSN|{_N},msn,d1d2|3|
OT D1 ICj|OT Granular GABA|{_N},icj|2|
GPe MEIS2-SOX6 GABA|CN MEIS2 GABA|{_N},meis2,sox6|2|
AMY-SLEA-BNST GABA|CN MEIS2 GABA|{_N},meis2,amy|3|
AMY-SLEA-BNST D1 GABA|CN MEIS2 GABA|{_N},meis2,amy,amy_d1|2|
GPe SOX6-CTXND1 GABA|CN ST18 GABA|{_N},sox6,ctxnd1,gpe_proto,st18|3|
GPe-NDB-SI LHX6-LHX8-GBX1 GABA|CN LHX8 GABA|{_N},lhx6,lhx8,gbx1|2|
STR-BF TAC3-PLPP4-LHX8 GABA|CN LHX8 GABA|{_N},tac3,lhx8|1|
STR TAC3-PLPP4 GABA|CN LHX8 GABA|{_N},tac3,lhx6|2|
STR FS PTHLH-PVALB GABA|CN LHX8 GABA|{_N},pvalb,pthlh,lhx6|2|
STR Cholinergic GABA|CN Cholinergic GABA|{_N},chat,lhx8|1|
STRd Cholinergic GABA|CN Cholinergic GABA|{_N},chat,lhx8|1|
GPin-BF Cholinergic GABA|CN Cholinergic GABA|{_N},chat,lhx8,gbx1|1|
STR SST-CHODL GABA|STR SST-CHODL GABA|{_N},sst,chodl,lhx6|2|
STR SST-RSPO2 GABA|STR RSPO2 GABA|{_N},sst,rspo2|1|
STR LYPD6-RSPO2 GABA|STR RSPO2 GABA|{_N},rspo2,lypd6|1|
STR SST-ADARB2 GABA|STR SST GABA|{_N},sst,adarb2|1|
LAMP5-LHX6 GABA|CN LAMP5-LHX6 GABA|{_N},lamp5,lhx6|1|
VIP GABA|CN VIP GABA|{_N},vip,cge,adarb2|2|
LAMP5-CXCL14 GABA|CN LAMP5-CXCL14 GABA|{_N},lamp5,cxcl14,cge,adarb2|1|
ACx MEIS2 GABA|ACx MEIS2 GABA|{_N},meis2,cx_gaba|1|
GPi Shell|CN GABA-Glut|{_N},gpi_shell|2|
GPi Core|CN GABA-Glut|{_N},gpi_core|2|
SN SEMA5A GABA|CN ONECUT1 GABA|{_N},sema5a,onecut1|1|
OB FRMD7 GABA|F GABA|{_N},frmd7|1|Marmoset
OB Dopa-GABA|F GABA|{_N},ob_dopa|1|Marmoset
ZI-HTH GABA|F GABA|{_N},zi|2|
SN GATA3-PVALB GABA|F M GATA3 GABA|{_N},gata3,sn_pvalb|2|
SN-VTR-HTH GATA3-TCF7L2 GABA|F M GATA3 GABA|{_N},gata3,tcf7l2|1|
SN GATA3-PAX8 GABA|F M GATA3 GABA|{_N},gata3,pax8|1|
SN EBF2 GABA|SN PAX7 GABA|{_N},ebf2|1|
BF SKOR1 Glut|F Glut|{_G},skor1|1|
VTR-HTH Glut|F M Glut|{_G},vtr_glut|1|
STH PVALB-PITX2 Glut|F M Glut|{_G},sth|2|
SN-VTR GAD2 Dopa|M Dopa|neuron,dopa,gad2dopa|1|
SN SOX6 Dopa|M Dopa|neuron,dopa,sox6dopa|2|
SN-VTR CALB1 Dopa|M Dopa|neuron,dopa,calb1dopa|1|
Astrocyte|Astrocyte|astro|4|
ImAstro|Astrocyte|astro,imastro|1|
Ependymal|Ependymal|epen|1|
OPC|OPC|opc,{_GL}|3|
COP|COP|cop,{_GL}|1|
ImOligo|Oligodendrocyte|imoligo,{_GL}|1|
Oligo PLEKHG1|Oligodendrocyte|oligo,plekhg1,{_GL}|4|
Oligo OPALIN|Oligodendrocyte|oligo,opalin,{_GL}|3|
Microglia|Microglia|micro,immune|3|
BAM|Macrophage|bam,immune|1|
Monocyte|Macrophage|mono,immune|1|
B cells|Lymphocyte|bcell,immune|1|Marmoset
T cells|Lymphocyte|tcell,immune|1|
Endo|Endo|endo|2|
Pericyte|Pericyte|peri|1|
SMC|SMC|smc|1|
VLMC|VLMC|vlmc|2|
"""

#: Cell types of tissue adjacent to the basal ganglia: mapped to clusters absent from the taxonomy.
ADJACENT_GROUPS = {
    "Adjacent Cx Glut": ("neuron,glut,ctx_glut", 2),
    "Adjacent TH Glut": ("neuron,glut,th_glut", 1),
    "Adjacent LS GABA": ("neuron,gaba,ls_gaba", 1),
}

_MANUAL_COLORS = {
    "Subpallium GABA": "#a8afa5", "Subpallium GABA-Glut": "#7E5CA8", "Glut Sero Dopa": "#2B93DF",
    "Nonneuron": "#19613b",
    "CN LGE GABA": "#594a26", "OPC-Oligo": "#c9a13b", "Astro-Epen": "#3CB371", "Vascular": "#B22222",
    "Immune": "#9467bd",
    "STR D1 MSN": "#E34A33", "STR D2 MSN": "#3182bd", "STR Hybrid MSN": "#A65EB6", "Oligodendrocyte": "#A6761D",
    "OPC": "#79bdf4", "Astrocyte": "#66C2A5", "Microglia": "#8C6BB1", "Endo": "#E41A1C",
    "STRd D1 Matrix MSN": "#f46d43", "STRd D1 Striosome MSN": "#a50026", "STRv D1 MSN": "#fdae61",
    "STRv D1 NUDAP MSN": "#D7301F", "STRd D2 Matrix MSN": "#4575b4", "STRd D2 Striosome MSN": "#08306b",
    "STRv D2 MSN": "#74add1", "STRd D2 StrioMat Hybrid MSN": "#2171B5",
}


@dataclass
class Group:
    """A cell-type group: its name, parents, expression tags and species clusters."""

    name: str
    subclass: str
    cls: str
    neighborhood: str
    tags: frozenset[str]
    clusters_per_species: int
    absent_in: frozenset[str] = frozenset()
    adjacent: bool = False


@dataclass
class Cluster:
    label: str
    alias: str
    species: str
    group: str
    color: str


@dataclass
class BGTaxonomy:
    """Groups, clusters and term tables of the demo basal ganglia taxonomy."""

    groups: dict[str, Group]
    clusters: list[Cluster]
    adjacent_clusters: list[Cluster]
    colors: dict[str, str]
    term_labels: dict[tuple[int, str], str] = field(default_factory=dict)

    def clusters_of(self, group: str, species: str) -> list[Cluster]:
        pool = self.adjacent_clusters if self.groups[group].adjacent else self.clusters
        return [c for c in pool if c.group == group and c.species == species]

    @property
    def taxonomy_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if not g.adjacent]


def build_bg_taxonomy() -> BGTaxonomy:
    """The demo BG taxonomy (independent of the seed: the same names, labels and colours every time)."""
    class_of = dict(SUBCLASSES)
    neigh_of = dict(CLASSES)
    groups: dict[str, Group] = {}
    for line in _GROUPS.strip().splitlines():
        name, subclass, tags, k, absent = line.split("|")
        cls = class_of[subclass]
        groups[name] = Group(name, subclass, cls, neigh_of[cls], frozenset(tags.split(",") + ["all"]), int(k),
                             frozenset(a for a in absent.split(",") if a))
    for name, (tags, k) in ADJACENT_GROUPS.items():
        groups[name] = Group(name, "Adjacent", "Adjacent", "Adjacent", frozenset(tags.split(",") + ["all"]), k,
                             adjacent=True)

    colors = palette(NEIGHBORHOODS, 0.1) | palette([c for c, _ in CLASSES], 0.3) \
        | palette([s for s, _ in SUBCLASSES], 0.5) | palette([g for g in groups if not groups[g].adjacent], 0.7)
    colors.update(_MANUAL_COLORS)

    clusters: list[Cluster] = []
    adjacent: list[Cluster] = []
    per_species_count = {s: 0 for s in SPECIES}
    ordered = [g for g in groups.values() if not g.adjacent] + [g for g in groups.values() if g.adjacent]
    n_real = 0
    for group in ordered:
        for species in SPECIES:
            if species in group.absent_in:
                continue
            for _ in range(group.clusters_per_species):
                per_species_count[species] += 1
                alias = f"{species}-{per_species_count[species]}"
                if group.adjacent:
                    # beyond the taxonomy's clusters: absent from cluster.csv, like the release's Adjacent taxa
                    label = f"CS20250428_CLUST_{9000 + len(adjacent):04d}"
                    adjacent.append(Cluster(label, alias, species, group.name, ADJACENT_COLOR))
                else:
                    label = f"{TERM_PREFIX[4]}{n_real:04d}"
                    n_real += 1
                    clusters.append(Cluster(label, alias, species, group.name, ""))
    cluster_colors = palette([c.label for c in clusters], 0.05, saturation=0.8, value=0.9)
    for c in clusters:
        c.color = cluster_colors[c.label]
    return BGTaxonomy(groups, clusters, adjacent, colors)


def taxonomy_tables(tax: BGTaxonomy, cells_per_alias: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The taxonomy CSV tables (term sets, terms, clusters, memberships, abbreviations).

    Parameters
    ----------
    tax : BGTaxonomy
    cells_per_alias : dict of str to int
        Number of 10X cells per cluster alias (``cluster.csv`` ``number_of_cells``).
    """
    term_sets = pd.DataFrame({
        "label": list(TERM_SET_LABELS),
        "name": list(LEVELS),
        "description": [
            "Broad neighborhoods of related classes",
            "Cell classes by developmental origin and neurotransmitter",
            "Subclasses within classes",
            "Groups: cross-species consensus cell types",
            "Species-specific clusters",
        ],
        "order": list(range(5)),
        "parent_term_set_label": [""] + list(TERM_SET_LABELS[:-1]),
    })

    real_groups = tax.taxonomy_groups
    neighborhoods = [n for n in NEIGHBORHOODS]
    classes = [c for c, _ in CLASSES]
    subclasses = [s for s, _ in SUBCLASSES]
    group_names = [g.name for g in real_groups]
    # per level: a name can be used at two levels ("CN GABA-Glut" is a class and a subclass)
    parent = [{}, dict(CLASSES), dict(SUBCLASSES), {g.name: g.subclass for g in real_groups}]

    rows = []
    labels: dict[tuple[int, str], str] = {}
    for level, names in enumerate([neighborhoods, classes, subclasses, group_names]):
        for i, name in enumerate(names):
            labels[(level, name)] = f"{TERM_PREFIX[level]}{i:04d}"
    for level, names in enumerate([neighborhoods, classes, subclasses, group_names]):
        for i, name in enumerate(names):
            p = parent[level].get(name) if level else None
            rows.append({
                "label": labels[(level, name)], "name": name,
                "cluster_annotation_term_set_label": TERM_SET_LABELS[level],
                "cluster_annotation_term_set_name": LEVELS[level],
                "color_hex_triplet": tax.colors[name], "term_order": i, "term_set_order": level,
                "parent_term_label": labels[(level - 1, p)] if p else "",
                "parent_term_name": p or "",
                "parent_term_set_label": TERM_SET_LABELS[level - 1] if p else "",
            })
    for i, c in enumerate(tax.clusters):
        labels[(4, c.alias)] = c.label
        rows.append({
            "label": c.label, "name": c.alias, "cluster_annotation_term_set_label": TERM_SET_LABELS[4],
            "cluster_annotation_term_set_name": LEVELS[4], "color_hex_triplet": c.color, "term_order": i,
            "term_set_order": 4, "parent_term_label": labels[(3, c.group)], "parent_term_name": c.group,
            "parent_term_set_label": TERM_SET_LABELS[3],
        })
    tax.term_labels = labels
    terms = pd.DataFrame(rows)

    cluster = pd.DataFrame({
        "label": [c.label for c in tax.clusters],
        "cluster_alias": [c.alias for c in tax.clusters],
        "number_of_cells": [int(cells_per_alias.get(c.alias, 0)) for c in tax.clusters],
    })

    member_rows = []
    for c in tax.clusters:
        g = tax.groups[c.group]
        path = [(0, g.neighborhood), (1, g.cls), (2, g.subclass), (3, g.name)]
        for level, name in path:
            member_rows.append((labels[(level, name)], TERM_SET_LABELS[level], c.alias, LEVELS[level], name))
        member_rows.append((c.label, TERM_SET_LABELS[4], c.alias, LEVELS[4], c.alias))
    membership = pd.DataFrame(member_rows, columns=[
        "cluster_annotation_term_label", "cluster_annotation_term_set_label", "cluster_alias",
        "cluster_annotation_term_set_name", "cluster_annotation_term_name"])

    abbreviations, abbreviation_map = _abbreviations(terms)
    return {
        "cluster_annotation_term_set": term_sets,
        "cluster_annotation_term": terms,
        "cluster": cluster,
        "cluster_to_cluster_annotation_membership": membership,
        "abbreviation_term": abbreviations,
        "cluster_annotation_to_abbreviation_map": abbreviation_map,
    }


_ANATOMY_TOKENS = {
    "STR": ("striatum", "DHBA:10333"), "STRd": ("dorsal striatum", "DHBA:10334"),
    "STRv": ("ventral striatum", "DHBA:10338"), "GPe": ("external segment of globus pallidus", "DHBA:10343"),
    "GPi": ("internal segment of globus pallidus", "DHBA:10344"), "SN": ("substantia nigra", "DHBA:12251"),
    "STH": ("subthalamic nucleus", "DHBA:10466"), "OT": ("olfactory tubercle", "DHBA:10339"),
    "ICj": ("islands of Calleja", "DHBA:10340"), "BF": ("basal forebrain", "DHBA:10349"),
    "ZI": ("zona incerta", "DHBA:10470"), "HTH": ("hypothalamus", "DHBA:10467"),
    "VTR": ("ventral tegmental region", "DHBA:12261"), "AMY": ("amygdala", "DHBA:10361"),
    "BNST": ("bed nucleus of the stria terminalis", "DHBA:10352"), "OB": ("olfactory bulb", "DHBA:10284"),
    "NDB": ("nucleus of the diagonal band", "DHBA:10350"), "SI": ("substantia innominata", "DHBA:10351"),
    "SLEA": ("sublenticular extended amygdala", "DHBA:10353"), "ACx": ("allocortex", "DHBA:10158"),
    "CN": ("cerebral nuclei", "DHBA:10332"), "Cx": ("cortex", "DHBA:10155"),
}
_CELL_TOKENS = {
    "MSN": ("medium spiny neuron", "CL:1001474"), "GABA": ("GABAergic neuron", "CL:0011005"),
    "Glut": ("glutamatergic neuron", "CL:0000679"), "Dopa": ("dopaminergic neuron", "CL:0000700"),
    "Cholinergic": ("cholinergic neuron", "CL:0000108"), "OPC": ("oligodendrocyte precursor cell", "CL:0002453"),
    "COP": ("committed oligodendrocyte precursor", "CL:0000128"), "VLMC": ("vascular leptomeningeal cell", "CL:4023051"),
    "SMC": ("smooth muscle cell", "CL:0000192"), "BAM": ("border associated macrophage", "CL:0000878"),
    "Endo": ("endothelial cell", "CL:0000115"),
}


def _abbreviations(terms: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from .genes import GENE_BY_SYMBOL, ncbi_id

    rows = {}
    map_rows = []
    for _, term in terms[terms["cluster_annotation_term_set_label"] != TERM_SET_LABELS[4]].iterrows():
        for raw in term["name"].replace("-", " ").split():
            token = raw
            if token in _ANATOMY_TOKENS:
                meaning, ident = _ANATOMY_TOKENS[token]
                kind = "anatomical"
            elif token in _CELL_TOKENS:
                meaning, ident = _CELL_TOKENS[token]
                kind = "cell_type"
            elif token in GENE_BY_SYMBOL:
                meaning, ident = GENE_BY_SYMBOL[token].description, f"NCBIGene:{ncbi_id('aligned', token)}"
                kind = "gene"
            else:
                continue
            rows.setdefault(token, (token, meaning, kind, ident, ""))
            map_rows.append((term["label"], term["name"], term["cluster_annotation_term_set_name"], token))
    abbreviations = pd.DataFrame(sorted(rows.values()), columns=[
        "abbreviation_term", "abbreviation_meaning", "abbreviation_type", "primary_identifier",
        "secondary_identifier"])
    abbreviation_map = pd.DataFrame(map_rows, columns=[
        "cluster_annotation_term_label", "cluster_annotation_term_name", "cluster_annotation_term_set_name",
        "abbreviation_term"]).drop_duplicates()
    return abbreviations, abbreviation_map
