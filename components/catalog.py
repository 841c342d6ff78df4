"""A plain-value snapshot of what the store holds (datasets, slab planes, sections), for the layout and URL checks.

Built once per app from the :class:`data_layer.Atlas` (see ``callbacks.catalog.catalog_from_atlas``) and passed to
the pure builders and parsers of ``components``, which therefore never touch the data layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Pseudo colour-by values besides the taxonomy levels.
COLOR_BY_REGION = "region"
COLOR_BY_GENE = "gene"
#: Two genes in one picture (a two-channel blend; ``gene`` and the picture's ``gene2``).
COLOR_BY_TWO_GENES = "two_genes"
#: Section dropdown value meaning "every section of the slab plane".
WHOLE_SLAB_PLANE = "__whole_slab_plane__"

Bounds = tuple[float, float, float, float]  # (x_min, x_max, y_min, y_max)


@dataclass(frozen=True)
class SectionEntry:
    """One brain section: its label, slab plane, cell count and bounds in slab mm."""

    label: str
    slab_plane: str
    n_cells: int
    bounds: Bounds


@dataclass(frozen=True)
class SlabPlaneEntry:
    """One slab plane: its sections (atlas order), cell count, bounds and whether it has region polygons."""

    label: str
    sections: tuple[str, ...]
    n_cells: int
    bounds: Bounds
    has_polygons: bool


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the store (the fields of ``Atlas.info`` plus its planes and sections)."""

    name: str
    kind: str  # "spatial" or "umap"
    species: str | None
    platform: str
    taxonomy: str
    levels: tuple[str, ...]
    n_cells: int
    n_genes: int
    umap_dataset: str | None
    bounds: Bounds
    slab_planes: tuple[SlabPlaneEntry, ...] = ()
    sections: dict[str, SectionEntry] = field(default_factory=dict)

    @property
    def spatial(self) -> bool:
        """True for a dataset of sections (drawn in slab mm, y down)."""
        return self.kind == "spatial"

    @property
    def has_genes(self) -> bool:
        """True when the dataset carries expression."""
        return self.n_genes > 0

    def plane(self, label: str) -> SlabPlaneEntry | None:
        """The slab plane called ``label``, or None."""
        for plane in self.slab_planes:
            if plane.label == label:
                return plane
        return None

    def color_by_choices(self) -> list[str]:
        """Valid colour-by values: the levels, then ``region`` (spatial), then ``gene`` and ``two_genes`` (with
        expression)."""
        choices = list(self.levels)
        if self.spatial:
            choices.append(COLOR_BY_REGION)
        if self.has_genes:
            choices += [COLOR_BY_GENE, COLOR_BY_TWO_GENES]
        return choices

    def default_color_by(self) -> str:
        """The third level (Subclass / subclass) when there is one, else the finest level."""
        if not self.levels:
            return COLOR_BY_REGION if self.spatial else COLOR_BY_GENE
        return self.levels[min(2, len(self.levels) - 1)]

    def shared_levels(self) -> tuple[str, ...]:
        """Levels meaningful across species: down to ``Group`` when present, else all but the finest."""
        lowered = [level.lower() for level in self.levels]
        if "group" in lowered:
            return self.levels[: lowered.index("group") + 1]
        return self.levels[:-1] if len(self.levels) > 1 else self.levels

    def label(self) -> str:
        """Human name for the dataset dropdown: ``Human · MERSCOPE · HMBA-MERSCOPE-H22.30.001-BG``."""
        species = self.species or ("Cross-species" if self.taxonomy.startswith("HMBA") else "Mixed")
        return f"{species} · {self.platform} · {self.name}"


@dataclass(frozen=True)
class Catalog:
    """Every dataset of the store, spatial ones first (the order of ``Atlas.datasets()``)."""

    datasets: dict[str, DatasetEntry]

    @property
    def names(self) -> list[str]:
        return list(self.datasets)

    def get(self, name: str | None) -> DatasetEntry | None:
        return self.datasets.get(name) if name else None

    def default_dataset(self) -> str | None:
        """The first dataset, or None for an empty store."""
        return next(iter(self.datasets), None)
