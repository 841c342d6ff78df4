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
        Approximate number of clusters of the mouse taxonomy.
    quirk_cells : int
        Cells per spatial dataset that are in the h5ad but not the cell table, and the reverse.
    """

    cells_per_section: int = 25_000
    sections_per_plane: tuple[int, int] = (3, 2)
    tenx_cells: int = 90_000
    tenx_genes: int = 3_000
    wmb_cells: int = 60_000
    wmb_genes: int = 500
    wmb_clusters: int = 320
    quirk_cells: int = 20


SCALES = {"demo": DemoScale()}


def get_scale(scale: str | DemoScale) -> DemoScale:
    """The :class:`DemoScale` named ``scale`` (``"demo"``); ``"atlas"`` is not written yet."""
    if isinstance(scale, DemoScale):
        return scale
    if scale == "atlas":
        raise NotImplementedError(
            "scale='atlas' (real-size caches: 1 M cells per BG species, 4 M-cell WMB UMAP) is not implemented "
            "yet; use scale='demo'")
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown demo scale {scale!r}; choose one of {', '.join(SCALES)} or 'atlas'") from None
