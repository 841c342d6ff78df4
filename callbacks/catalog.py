"""Look-ups the callbacks share, all through the :class:`data_layer.Atlas` (the only door to the data).

:func:`catalog_from_atlas` takes the plain-value snapshot the layout and the URL parser need;
:class:`AtlasLookups` wraps the few atlas calls used as checks (gene symbol, term existence) so the pure
parsers of ``components`` get plain functions.
"""
from __future__ import annotations

import functools
import logging
import math
from typing import Any

import numpy as np

from components.catalog import Catalog, DatasetEntry, SectionEntry, SlabPlaneEntry

log = logging.getLogger(__name__)


def _bounds(row: Any) -> tuple[float, float, float, float]:
    values = tuple(float(row[key]) for key in ("x_min", "x_max", "y_min", "y_max"))
    if not all(math.isfinite(v) for v in values):
        return (0.0, 1.0, 0.0, 1.0)
    return values  # type: ignore[return-value]


def catalog_from_atlas(atlas: Any) -> Catalog:
    """Snapshot of datasets, slab planes and sections (small tables only; no cell is read).

    Returns
    -------
    Catalog
    """
    datasets: dict[str, DatasetEntry] = {}
    for name in atlas.datasets():
        info = atlas.info(name)
        planes: list[SlabPlaneEntry] = []
        sections: dict[str, SectionEntry] = {}
        if info.kind == "spatial":
            section_table = atlas.sections(name)
            by_plane: dict[str, list[str]] = {}
            for row in section_table.itertuples(index=False):
                row = row._asdict()
                label = str(row["brain_section_label"])
                plane = str(row["slab_plane_label"])
                sections[label] = SectionEntry(label, plane, int(row["n_cells"]), _bounds(row))
                by_plane.setdefault(plane, []).append(label)
            for row in atlas.slab_planes(name).itertuples(index=False):
                row = row._asdict()
                label = str(row["slab_plane_label"])
                planes.append(SlabPlaneEntry(label, tuple(by_plane.get(label, ())), int(row["n_cells"]),
                                             _bounds(row), bool(row["has_polygons"])))
        bounds = tuple(float(v) for v in info.bounds)
        if len(bounds) != 4 or not all(math.isfinite(v) for v in bounds):
            bounds = (0.0, 1.0, 0.0, 1.0)
        datasets[name] = DatasetEntry(
            name=name,
            kind=info.kind,
            species=info.species,
            platform=info.platform,
            taxonomy=info.taxonomy,
            levels=tuple(info.levels),
            n_cells=int(info.n_cells),
            n_genes=int(info.n_genes),
            umap_dataset=info.umap_dataset,
            bounds=bounds,  # type: ignore[arg-type]
            slab_planes=tuple(planes),
            sections=sections,
        )
    return Catalog(datasets)


class AtlasLookups:
    """The atlas checks the parsers need, as plain functions with small memoised results.

    Parameters
    ----------
    atlas : data_layer.Atlas
        The open atlas.
    """

    def __init__(self, atlas: Any):
        self.atlas = atlas

    def gene_symbol(self, dataset: str, gene: str) -> str:
        """Canonical symbol of ``gene`` (symbol, any case, or identifier) in ``dataset``.

        Raises
        ------
        KeyError
            Unknown gene; the message names close matches.
        """
        return self._gene_symbol(dataset, str(gene).strip())

    @functools.lru_cache(maxsize=4096)
    def _gene_symbol(self, dataset: str, gene: str) -> str:
        _, symbol = self.atlas.resolve_gene(dataset, gene)
        return str(symbol)

    @functools.lru_cache(maxsize=256)
    def term_names(self, dataset: str, level: str) -> frozenset[str]:
        """Names of the terms of ``level`` in the dataset's taxonomy."""
        taxonomy = self.atlas.taxonomy(dataset)
        if level not in taxonomy.levels:
            return frozenset()
        return frozenset(str(n) for n in taxonomy.terms(level)["name"])

    def term_exists(self, dataset: str, level: str, name: str) -> bool:
        """True when ``level`` of the dataset's taxonomy has a term called ``name``."""
        try:
            return name in self.term_names(dataset, level)
        except KeyError:
            return False

    def term_level(self, dataset: str, name: str, levels: tuple[str, ...]) -> str | None:
        """The first of ``levels`` with a term called ``name``, or None."""
        for level in levels:
            if self.term_exists(dataset, level, name):
                return level
        return None

    def first_gene(self, dataset: str) -> str | None:
        """A gene to show when colouring by gene without one chosen: the first of the dataset's table."""
        genes = self.atlas.genes(dataset)
        if genes is None or len(genes) == 0:
            return None
        return str(genes["gene_symbol"].iloc[0])


def level_codes(cells: Any, level: str) -> np.ndarray:
    """Integer codes of a categorical column of ``atlas.cells`` (-1 = missing), as int32 ``(n,)``."""
    return np.asarray(cells[level].cat.codes, dtype=np.int32)
