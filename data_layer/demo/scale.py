"""Sizes of the synthetic cache: one place to change how big the demo (or a real-size atlas) is."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoScale:
    """How many cells and genes each demo dataset gets.

    Attributes
    ----------
    cells_per_section : int
        Mean cells of one spatial section (tiles of a plane share the plane's cells).
    sections_per_plane : tuple of int
        Sections of the anterior and the posterior slab plane of each species.
    tenx_cells : int
        Nuclei of ``HMBA-10xMultiome-BG-Aligned`` (all three species).
    tenx_genes : int
        Genes of the aligned 10X data (includes every spatial panel gene).
    wmb_cells : int
        Cells of ``WMB-10X``.
    wmb_genes : int
        Genes of the mouse regional expression files.
    wmb_clusters : int
        Approximate number of clusters of the mouse taxonomy (exact when ``wmb_subclasses`` is set).
    quirk_cells : int
        Cells per spatial dataset that are in the h5ad but not the cell table, and the reverse.
    spatial_overrides : tuple of (species, cells_per_section, sections_per_plane)
        Species whose spatial dataset gets other sizes than ``cells_per_section`` / ``sections_per_plane``.
    wmb_subclasses, wmb_supertypes : int or None
        Exact subclass and supertype counts of the mouse taxonomy (then ``wmb_clusters`` is exact too);
        ``None``: the catalogue's own subclasses, 1-3 supertypes each.
    chunk_cells : int or None
        Stream the big tables and matrices in chunks of this many cells (bounded memory, real-size atlases);
        ``None``: build each dataset in memory (the demo; its bytes do not change).
    consensus_aibs_cells, consensus_macosko_cells : int
        Cells of the consensus mouse taxonomy's UMAP taken from ``WMB-10X`` and new Macosko cells: in the demo
        at most a third and a sixth of the WMB-10X cells; in a real-size cache (``chunk_cells`` set) the release's
        3.92 M + 3.73 M = 7.65 M (the AIBS cells at most every WMB-10X cell), over its ten Macosko files, with all
        nine neighborhood UMAPs (:func:`with_consensus_cells` sets another total).
    """

    cells_per_section: int = 25_000
    sections_per_plane: tuple[int, int] = (3, 2)
    tenx_cells: int = 90_000
    tenx_genes: int = 3_000
    wmb_cells: int = 60_000
    wmb_genes: int = 500
    wmb_clusters: int = 320
    quirk_cells: int = 20
    spatial_overrides: tuple[tuple[str, int, tuple[int, int]], ...] = ()
    wmb_subclasses: int | None = None
    wmb_supertypes: int | None = None
    chunk_cells: int | None = None
    consensus_aibs_cells: int = 20_000
    consensus_macosko_cells: int = 10_000

    def spatial_size(self, species: str) -> tuple[int, tuple[int, int]]:
        """``(cells_per_section, sections_per_plane)`` of ``species``' spatial dataset."""
        for name, cells, sections in self.spatial_overrides:
            if name == species:
                return cells, tuple(sections)
        return self.cells_per_section, tuple(self.sections_per_plane)


#: The real size of the parts the viewer must be fast on: a WMB-style 4 M-cell UMAP with the full mouse taxonomy
#: (34 classes, 338 subclasses, 1,201 supertypes, 5,322 clusters) over 13 regional h5ad files of a 300-gene
#: panel, and the human basal ganglia MERSCOPE dataset at about 1 M cells (five sections of about 200 k cells,
#: its 314-gene panel). Macaque, marmoset and the aligned 10X nuclei keep their demo sizes.
ATLAS = DemoScale(
    spatial_overrides=(("Human", 200_000, (3, 2)),),
    wmb_cells=4_000_000,
    wmb_genes=300,
    wmb_clusters=5_322,
    wmb_subclasses=338,
    wmb_supertypes=1_201,
    chunk_cells=250_000,
    consensus_aibs_cells=3_920_000,
    consensus_macosko_cells=3_730_000,
)
#: The consensus taxonomy's cells in the release: AIBS (``Consensus-WMB-AIBS-10X``) and Macosko.
CONSENSUS_RELEASE_CELLS = (3_920_000, 3_730_000)


def with_consensus_cells(scale: "DemoScale", total: int) -> "DemoScale":
    """``scale`` with ``total`` consensus cells, split between AIBS and Macosko cells as in the release."""
    import dataclasses

    aibs = round(total * CONSENSUS_RELEASE_CELLS[0] / sum(CONSENSUS_RELEASE_CELLS))
    return dataclasses.replace(scale, consensus_aibs_cells=aibs, consensus_macosko_cells=total - aibs)

SCALES = {"demo": DemoScale(), "atlas": ATLAS}


def get_scale(scale: str | DemoScale) -> DemoScale:
    """The :class:`DemoScale` named ``scale`` (``"demo"`` or ``"atlas"``), or ``scale`` itself."""
    if isinstance(scale, DemoScale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown demo scale {scale!r}; choose one of {', '.join(SCALES)}") from None
