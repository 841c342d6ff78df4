"""Cell-type composition of each tissue compartment and of each 10X dissection (group -> weight).

Fractions follow what a neuroanatomist expects of a primate basal ganglia section: the striatum is about
half neurons, nine in ten of them D1 or D2 medium spiny neurons in near-equal numbers, with scattered
SST/NPY, PVALB, cholinergic and TAC3/TH interneurons; striosomes are patches of striosomal MSNs; white
matter is mostly oligodendrocytes; the pallidum is sparse, glia-rich, with large pallidal neurons (about a quarter of its cells);
astrocytes, microglia, OPCs and vascular cells are everywhere.
"""
from __future__ import annotations

GLIA_GREY = {
    "Astrocyte": 0.100, "ImAstro": 0.004, "Oligo PLEKHG1": 0.075, "Oligo OPALIN": 0.045, "ImOligo": 0.008,
    "COP": 0.004, "OPC": 0.050, "Microglia": 0.060, "BAM": 0.003, "Monocyte": 0.001, "T cells": 0.0007,
    "B cells": 0.0003, "Endo": 0.022, "Pericyte": 0.011, "SMC": 0.003, "VLMC": 0.002,
}
GLIA_WHITE = {
    "Oligo PLEKHG1": 0.420, "Oligo OPALIN": 0.230, "ImOligo": 0.030, "COP": 0.010, "OPC": 0.065,
    "Astrocyte": 0.085, "ImAstro": 0.004, "Microglia": 0.085, "BAM": 0.003, "Monocyte": 0.002,
    "T cells": 0.001, "Endo": 0.035, "Pericyte": 0.017, "SMC": 0.004, "VLMC": 0.004,
}
GLIA_PALLIDUM = {
    "Oligo PLEKHG1": 0.200, "Oligo OPALIN": 0.100, "ImOligo": 0.015, "COP": 0.006, "OPC": 0.060,
    "Astrocyte": 0.220, "ImAstro": 0.004, "Microglia": 0.110, "BAM": 0.003, "Monocyte": 0.001, "T cells": 0.001,
    "Endo": 0.040, "Pericyte": 0.020, "SMC": 0.004, "VLMC": 0.003,
}

STRIATAL_INTERNEURONS = {
    "STR SST-CHODL GABA": 0.006, "STR SST-RSPO2 GABA": 0.002, "STR LYPD6-RSPO2 GABA": 0.0015,
    "STR SST-ADARB2 GABA": 0.0015, "STR FS PTHLH-PVALB GABA": 0.007, "STR TAC3-PLPP4 GABA": 0.004,
    "STRd Cholinergic GABA": 0.003, "STR Cholinergic GABA": 0.002, "LAMP5-LHX6 GABA": 0.001,
    "VIP GABA": 0.0008, "LAMP5-CXCL14 GABA": 0.001,
}


def _mix(neurons: dict[str, float], glia: dict[str, float], neuron_fraction: float) -> dict[str, float]:
    """Neurons scaled to ``neuron_fraction`` of the cells, glia to the rest."""
    n_sum, g_sum = sum(neurons.values()), sum(glia.values())
    out = {k: v * neuron_fraction / n_sum for k, v in neurons.items()}
    for k, v in glia.items():
        out[k] = out.get(k, 0.0) + v * (1 - neuron_fraction) / g_sum
    return out


COMPOSITIONS: dict[str, dict[str, float]] = {
    "none": {},
    "striatum": _mix({
        "STRd D1 Matrix MSN": 0.215, "STRd D1 Striosome MSN": 0.012, "STRd D2 Matrix MSN": 0.215,
        "STRd D2 Striosome MSN": 0.010, "STRd D2 StrioMat Hybrid MSN": 0.010, "STR D1D2 Hybrid MSN": 0.012,
        **STRIATAL_INTERNEURONS}, GLIA_GREY, 0.58),
    "striosome": _mix({
        "STRd D1 Striosome MSN": 0.23, "STRd D2 Striosome MSN": 0.19, "STRd D1 Matrix MSN": 0.03,
        "STRd D2 Matrix MSN": 0.03, "STRd D2 StrioMat Hybrid MSN": 0.02, "STR D1D2 Hybrid MSN": 0.008,
        **STRIATAL_INTERNEURONS}, GLIA_GREY, 0.60),
    "accumbens": _mix({
        "STRv D1 MSN": 0.20, "STRv D2 MSN": 0.19, "STRv D1 NUDAP MSN": 0.02, "STR D1D2 Hybrid MSN": 0.03,
        "STRd D1 Matrix MSN": 0.03, "STRd D2 Matrix MSN": 0.03, **STRIATAL_INTERNEURONS,
        "STR-BF TAC3-PLPP4-LHX8 GABA": 0.003}, GLIA_GREY, 0.55),
    "olfactory_tubercle": _mix({
        "STRv D1 MSN": 0.15, "STRv D2 MSN": 0.13, "OT D1 ICj": 0.06, "STR D1D2 Hybrid MSN": 0.02,
        "STR FS PTHLH-PVALB GABA": 0.004, "STR Cholinergic GABA": 0.003}, GLIA_GREY, 0.5),
    "islands_of_calleja": _mix({"OT D1 ICj": 0.85, "STRv D1 MSN": 0.08, "STRv D2 MSN": 0.05}, GLIA_GREY, 0.8),
    "white_matter": _mix({"STRd D2 Matrix MSN": 0.5, "STRd D1 Matrix MSN": 0.5}, GLIA_WHITE, 0.006),
    "gpe": _mix({
        "GPe SOX6-CTXND1 GABA": 0.070, "GPe MEIS2-SOX6 GABA": 0.016, "GPe-NDB-SI LHX6-LHX8-GBX1 GABA": 0.022,
        "GPin-BF Cholinergic GABA": 0.005, "STRd D2 Matrix MSN": 0.004}, GLIA_PALLIDUM, 0.28),
    "gpi": _mix({"GPi Core": 0.055, "GPi Shell": 0.035, "GPin-BF Cholinergic GABA": 0.003,
                 "GPe SOX6-CTXND1 GABA": 0.004}, GLIA_PALLIDUM, 0.26),
    "ventral_pallidum": _mix({
        "GPe-NDB-SI LHX6-LHX8-GBX1 GABA": 0.05, "AMY-SLEA-BNST GABA": 0.04, "AMY-SLEA-BNST D1 GABA": 0.02,
        "GPin-BF Cholinergic GABA": 0.015, "STR-BF TAC3-PLPP4-LHX8 GABA": 0.015, "STRv D1 MSN": 0.03,
        "STRv D2 MSN": 0.03, "BF SKOR1 Glut": 0.01}, GLIA_GREY, 0.22),
    "sth": _mix({"STH PVALB-PITX2 Glut": 0.28, "ZI-HTH GABA": 0.02, "VTR-HTH Glut": 0.01}, GLIA_GREY, 0.30),
    "sn": _mix({
        "SN SOX6 Dopa": 0.10, "SN-VTR CALB1 Dopa": 0.03, "SN-VTR GAD2 Dopa": 0.02, "SN GATA3-PVALB GABA": 0.08,
        "SN GATA3-PAX8 GABA": 0.03, "SN EBF2 GABA": 0.03, "SN SEMA5A GABA": 0.03,
        "SN-VTR-HTH GATA3-TCF7L2 GABA": 0.01}, GLIA_GREY, 0.30),
    "zi_hypothalamus": _mix({
        "ZI-HTH GABA": 0.15, "VTR-HTH Glut": 0.08, "SN-VTR-HTH GATA3-TCF7L2 GABA": 0.05,
        "Adjacent TH Glut": 0.10}, GLIA_GREY, 0.35),
    "thalamus": _mix({"Adjacent TH Glut": 0.45, "ZI-HTH GABA": 0.02}, GLIA_GREY, 0.42),
    "cortex": _mix({
        "Adjacent Cx Glut": 0.38, "LAMP5-CXCL14 GABA": 0.02, "VIP GABA": 0.02, "LAMP5-LHX6 GABA": 0.01,
        "ACx MEIS2 GABA": 0.01}, GLIA_GREY, 0.45),
    "claustrum": _mix({"Adjacent Cx Glut": 0.45, "VIP GABA": 0.01, "LAMP5-CXCL14 GABA": 0.01}, GLIA_GREY, 0.45),
    "septum": _mix({"Adjacent LS GABA": 0.30, "AMY-SLEA-BNST GABA": 0.05}, GLIA_GREY, 0.35),
    "basal_forebrain": _mix({
        "GPin-BF Cholinergic GABA": 0.03, "GPe-NDB-SI LHX6-LHX8-GBX1 GABA": 0.04, "BF SKOR1 Glut": 0.03,
        "AMY-SLEA-BNST GABA": 0.04, "STR-BF TAC3-PLPP4-LHX8 GABA": 0.02, "Adjacent LS GABA": 0.05,
        "OB FRMD7 GABA": 0.003, "OB Dopa-GABA": 0.002}, GLIA_GREY, 0.25),
    "ependyma": _mix({"Ependymal": 1.0}, {"Astrocyte": 0.5, "Microglia": 0.2, "OPC": 0.1, "Oligo PLEKHG1": 0.2},
                     0.6),
    "other_grey": _mix({"Adjacent LS GABA": 0.3, "Adjacent Cx Glut": 0.3, "AMY-SLEA-BNST GABA": 0.1},
                       GLIA_GREY, 0.2),
}

#: 10X dissections (``region_of_interest_label``) -> tissue compositions they sample, with weights.
DISSECTIONS: dict[str, dict[str, float]] = {
    "Ca": {"striatum": 0.85, "striosome": 0.08, "white_matter": 0.07},
    "Pu": {"striatum": 0.85, "striosome": 0.08, "white_matter": 0.07},
    "NAC": {"accumbens": 0.8, "olfactory_tubercle": 0.1, "islands_of_calleja": 0.03, "ventral_pallidum": 0.07},
    "GPe": {"gpe": 0.7, "striatum": 0.15, "white_matter": 0.1, "basal_forebrain": 0.05},
    "GPi": {"gpi": 0.65, "gpe": 0.1, "white_matter": 0.15, "thalamus": 0.1},
    "SN": {"sn": 0.8, "zi_hypothalamus": 0.1, "white_matter": 0.1},
    "STH": {"sth": 0.7, "zi_hypothalamus": 0.2, "white_matter": 0.1},
    "VTA": {"sn": 0.6, "zi_hypothalamus": 0.4},
}
DISSECTION_NAMES = {
    "Ca": "caudate nucleus", "Pu": "putamen", "NAC": "nucleus accumbens",
    "GPe": "external segment of globus pallidus", "GPi": "internal segment of globus pallidus",
    "SN": "substantia nigra", "STH": "subthalamic nucleus", "VTA": "ventral tegmental area",
}


def dissection_composition(roi: str, neuron_enrichment: float = 5.0, neuron_groups: set[str] | None = None
                           ) -> dict[str, float]:
    """Group weights of a 10X dissection; neurons up-weighted (the nuclei were NeuN-enriched)."""
    out: dict[str, float] = {}
    for comp, w in DISSECTIONS[roi].items():
        for group, f in COMPOSITIONS[comp].items():
            boost = neuron_enrichment if neuron_groups is not None and group in neuron_groups else 1.0
            out[group] = out.get(group, 0.0) + w * f * boost
    return out
