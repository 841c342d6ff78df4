"""A plain-value snapshot of what the store holds (datasets, slab planes, sections), and the few atlas checks the
view reader needs.

:func:`catalog_from_atlas` takes the snapshot once per app from the :class:`data_layer.Atlas` (small tables only);
the view reader, the layout and the figure builders get plain values from it and never touch the data layer.
:class:`AtlasLookups` wraps the atlas calls used as checks (gene symbol, term existence) as plain functions.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_layer.store import DatasetDamaged

#: Pseudo colour-by values besides the taxonomy levels.
COLOR_BY_REGION = "region"
COLOR_BY_GENE = "gene"
#: Two genes in one picture (a two-channel blend; ``gene`` and the picture's ``gene2``).
COLOR_BY_TWO_GENES = "two_genes"
#: Section dropdown value meaning "every section of the slab plane".
WHOLE_SLAB_PLANE = "__whole_slab_plane__"
#: UMAP dropdown value meaning "the dataset's whole UMAP" (not a neighborhood's).
WHOLE_UMAP = "__whole_umap__"

#: The categorical cell column naming each cell's species in a dataset of several species.
SPECIES_COLUMN = "species"
#: Categorical cell columns that name the place (chosen with the section and slab plane controls, or drawn as
#: ``region``), not colourings of their own.
PLACE_COLUMNS = ("brain_section_label", "slab_plane_label", "region")

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
class EmbeddingEntry:
    """Another UMAP of some of a dataset's cells (one neighborhood's cells of the consensus taxonomy)."""

    name: str
    n_cells: int
    bounds: Bounds


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
    #: Categorical cell columns of the release besides the taxonomy levels and the place (species, dissected
    #: region of interest, library method...): colourings too, with the release's colours.
    columns: tuple[str, ...] = ()
    #: Neighborhood UMAPs besides the whole one (UMAP datasets of the consensus taxonomy), in store order.
    embeddings: tuple[EmbeddingEntry, ...] = ()

    #: Numeric measurement columns of the release's cell tables (``umi_count``, ``total_counts``, ``cell_area``...)
    #: and the default range each is coloured over (``None``: no cell has a value): numeric colourings, drawn like
    #: a gene.
    numeric_columns: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def embedding(self, name: str | None) -> EmbeddingEntry | None:
        """The neighborhood UMAP called ``name``, or None."""
        return next((e for e in self.embeddings if e.name == name), None) if name else None

    def is_numeric(self, color_by: str | None) -> bool:
        """True when ``color_by`` is one of the dataset's numeric cell columns."""
        return color_by in self.numeric_columns

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
        """Valid colour-by values: the levels, the other categorical cell columns, the numeric cell columns, then
        ``region`` (spatial), then ``gene`` and ``two_genes`` (with expression)."""
        choices = list(self.levels) + list(self.columns) + list(self.numeric_columns)
        if self.spatial:
            choices.append(COLOR_BY_REGION)
        if self.has_genes:
            choices += [COLOR_BY_GENE, COLOR_BY_TWO_GENES]
        return choices

    def default_color_by(self) -> str:
        """The level a dataset opens coloured by: ``Class`` (``class`` in the mouse taxonomies), whose few types
        follow the anatomy (striatal neurons, pallidal neurons, white-matter glia...), else the second level."""
        if not self.levels:
            return COLOR_BY_REGION if self.spatial else COLOR_BY_GENE
        lowered = [level.lower() for level in self.levels]
        if "class" in lowered:
            return self.levels[lowered.index("class")]
        return self.levels[min(1, len(self.levels) - 1)]

    def shared_levels(self) -> tuple[str, ...]:
        """Levels meaningful across species: down to ``Group`` when present, else all but the finest."""
        lowered = [level.lower() for level in self.levels]
        if "group" in lowered:
            return self.levels[: lowered.index("group") + 1]
        return self.levels[:-1] if len(self.levels) > 1 else self.levels

    @property
    def several_species(self) -> bool:
        """True for a dataset of several species with a ``species`` column (the aligned 10X cells)."""
        return not self.species and SPECIES_COLUMN in self.columns

    def label(self) -> str:
        """Human name for the dataset dropdown: ``Human · MERSCOPE · HMBA-MERSCOPE-H22.30.001-BG``."""
        species = self.species or ("Cross-species" if self.taxonomy.startswith("HMBA") else "Mixed")
        return f"{species} · {self.platform} · {self.name}"


@dataclass(frozen=True)
class Catalog:
    """Every sound dataset of the store, spatial ones first (the order of ``Atlas.datasets()``), and the damaged
    ones apart (``damaged``: name -> what is wrong; they are not shown, and a request naming one is refused)."""

    datasets: dict[str, DatasetEntry]
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.datasets)

    def get(self, name: str | None) -> DatasetEntry | None:
        return self.datasets.get(name) if name else None

    def species_datasets(self, taxonomy: str | None) -> list[str]:
        """The datasets holding a taxonomy's cells species by species, in catalog order: the first dataset of
        sections of each species, then the datasets of several species (:attr:`DatasetEntry.several_species`);
        empty when they hold fewer than two species."""
        chosen: list[str] = []
        species_seen: set[str] = set()
        for name, entry in self.datasets.items():
            if entry.taxonomy != taxonomy or not taxonomy:
                continue
            if entry.spatial and entry.species and entry.sections and entry.species not in species_seen:
                species_seen.add(entry.species)
                chosen.append(name)
        several = [name for name, entry in self.datasets.items()
                   if entry.taxonomy == taxonomy and taxonomy and entry.several_species]
        if len(species_seen) < 2 and not several:  # one species: nothing to compare across
            return []
        return chosen + several

    def default_dataset(self) -> str | None:
        """The first dataset, or None for an empty store."""
        return next(iter(self.datasets), None)


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
    damaged: dict[str, str] = dict(atlas.damaged()) if hasattr(atlas, "damaged") else {}
    for name in atlas.datasets():
        if name in damaged:
            continue
        info = atlas.info(name)
        planes: list[SlabPlaneEntry] = []
        sections: dict[str, SectionEntry] = {}
        if info.kind == "spatial":
            try:
                section_table = atlas.sections(name)
            except DatasetDamaged as exc:
                damaged[name] = str(exc)
                continue
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
            columns=tuple(column for column in atlas.categorical_columns(name)
                          if column not in info.levels and column not in PLACE_COLUMNS),
            embeddings=tuple(EmbeddingEntry(str(e["name"]), int(e["n_cells"]), _bounds(dict(zip(
                ("x_min", "x_max", "y_min", "y_max"), e["bounds"])))) for e in getattr(info, "embeddings", ())),
            numeric_columns={column: atlas.column_range(name, column) for column in atlas.numeric_columns(name)},
        )
    for name, entry in datasets.items():
        if entry.umap_dataset in damaged:  # a map without the UMAP panel rather than a panel that cannot draw
            datasets[name] = dataclasses.replace(entry, umap_dataset=None)
    return Catalog(datasets, damaged)


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
