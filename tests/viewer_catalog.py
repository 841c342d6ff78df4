"""A small hand-made catalog and look-ups for the viewer's pure-function tests (no store needed)."""
from __future__ import annotations

from core.catalog import Catalog, DatasetEntry, SectionEntry, SlabPlaneEntry

BG_LEVELS = ("Neighborhood", "Class", "Subclass", "Group", "Cluster")
GENES = {"HUMAN": {"DRD1", "DRD2", "PPP1R1B", "GAD1"}, "MARMOSET": {"DRD1", "GAD1"}, "TENX": {"DRD1", "DRD2", "FOXP2"}}
TERMS = {
    "Neighborhood": {"Subpallium GABA", "Nonneuron"},
    "Class": {"CN LGE GABA", "Astro-Epen"},
    "Subclass": {"STR D1 MSN", "STR D2 MSN", "Astrocyte"},
    "Group": {"STR D1 MSN", "Astrocyte"},
    "Cluster": {"Human-1", "Human-2", "Marmoset-1"},
}


def _spatial(name: str, species: str, planes: dict[str, list[str]], n_genes: int = 300) -> DatasetEntry:
    sections = {}
    plane_entries = []
    for p, (plane, labels) in enumerate(planes.items()):
        for i, label in enumerate(labels):
            sections[label] = SectionEntry(label, plane, 1000 + i, (10.0 * p, 10.0 * p + 8.0, 0.0, 6.0))
        plane_entries.append(SlabPlaneEntry(plane, tuple(labels), 1000 * len(labels),
                                            (10.0 * p, 10.0 * p + 8.0, 0.0, 6.0), has_polygons=p == 0))
    return DatasetEntry(name=name, kind="spatial", species=species, platform="MERSCOPE",
                        taxonomy="HMBA-BG-taxonomy-CCN20250428", levels=BG_LEVELS, n_cells=5000, n_genes=n_genes,
                        umap_dataset="TENX", bounds=(0.0, 18.0, 0.0, 6.0), slab_planes=tuple(plane_entries),
                        sections=sections)


def make_catalog() -> Catalog:
    human = _spatial("HUMAN", "Human", {"H.Plane.01": ["H.S1", "H.S2"], "H.Plane.02": ["H.S3"]})
    marmoset = _spatial("MARMOSET", "Marmoset", {"M.Plane.01": ["M.S1"]})
    tenx = DatasetEntry(name="TENX", kind="umap", species=None, platform="10x",
                        taxonomy="HMBA-BG-taxonomy-CCN20250428", levels=BG_LEVELS, n_cells=9000, n_genes=16000,
                        umap_dataset=None, bounds=(-10.0, 10.0, -8.0, 8.0))
    mouse = DatasetEntry(name="WMB", kind="umap", species="Mouse", platform="10x", taxonomy="WMB-taxonomy",
                         levels=("neurotransmitter", "class", "subclass", "supertype", "cluster"), n_cells=4000,
                         n_genes=0, umap_dataset=None, bounds=(-5.0, 5.0, -5.0, 5.0))
    return Catalog({d.name: d for d in (human, marmoset, tenx, mouse)})


def gene_lookup(dataset: str, gene: str) -> str:
    """Case-insensitive symbol look-up; KeyError names the gene like the Atlas does."""
    for symbol in GENES.get(dataset, ()):
        if symbol.lower() == gene.lower():
            return symbol
    raise KeyError(f"unknown gene {gene!r} in {dataset}")


def term_lookup(dataset: str, name: str, levels: tuple[str, ...]) -> str | None:
    if dataset == "WMB":
        return None
    for level in levels:
        if name in TERMS.get(level, ()):
            return level
    return None
