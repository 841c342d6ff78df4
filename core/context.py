"""What every callback module of one app shares: the atlas, the settings, the catalog and the picture helpers.

Built once in ``create_app`` and handed to each module's ``register``; nothing here is global, so several apps
(tests) can live in one process. All data goes through the :class:`data_layer.Atlas`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES, AtlasLookups, Catalog, catalog_from_atlas
from core.picture import view_picture
from core.selection import SelectionMasks
from core.state import ViewState, frame_bounds
from core.viewport import Window, padded, picture_geometry

log = logging.getLogger(__name__)

#: Picture size used until the browser reports the plot area's size.
DEFAULT_SIZE_PX = (900, 700)


@dataclass
class ViewerContext:
    """The shared pieces of one app.

    Attributes
    ----------
    atlas : data_layer.Atlas
    settings : settings.Settings
    catalog : Catalog
    lookups : AtlasLookups
    masks : SelectionMasks
        The cells inside the last few selections (one cache for callbacks, pictures and exports).
    version : str
        Store token added to picture URLs so a re-prepared store never shows cached stale pictures.
    outline_cache : dict
        The last few views' region outlines cut to their tissue (:func:`core.outlines.view_outlines`).
    """

    atlas: Any
    settings: Any
    catalog: Catalog
    lookups: AtlasLookups
    version: str = ""
    masks: SelectionMasks | None = None
    _gene_ranges: dict = field(default_factory=dict, repr=False)
    outline_cache: dict = field(default_factory=dict, repr=False)
    #: Memo of ``core.species.across_species`` (a term's summary across species), at most a few entries.
    across_memo: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.masks is None:
            self.masks = SelectionMasks(self.atlas)

    @classmethod
    def build(cls, atlas: Any, settings: Any) -> "ViewerContext":
        """Snapshot the catalog of ``atlas`` (small tables only)."""
        return cls(atlas=atlas, settings=settings, catalog=catalog_from_atlas(atlas),
                   lookups=AtlasLookups(atlas), version=store_token(settings.store))

    # ------------------------------------------------------------------------------------------ genes
    def gene_range(self, dataset: str, gene: str) -> tuple[float, float]:
        """Default shown range of a gene over the whole dataset (99th percentile of expressing cells).

        The range is per dataset, not per section, so sections of one dataset compare on one scale. It is
        ``atlas.gene_range`` (stored by prepare: no pass over every cell for a new gene).
        """
        key = (dataset, gene)
        if key not in self._gene_ranges:
            self._gene_ranges[key] = tuple(float(v) for v in self.atlas.gene_range(dataset, gene))
        return self._gene_ranges[key]

    # ------------------------------------------------------------------------------------------ pictures
    def frame(self, state: ViewState) -> Window | None:
        """Padded extent of what the main picture draws (section, plane or dataset)."""
        bounds = frame_bounds(self.catalog, state)
        return padded(bounds) if bounds is not None else None

    def frame_of_dataset(self, dataset: str) -> Window | None:
        """Padded extent of every cell of a dataset (the UMAP's frame)."""
        entry = self.catalog.get(dataset)
        return padded(entry.bounds) if entry is not None else None

    def picture_url(
        self,
        *,
        dataset: str,
        section: str | None,
        slab_plane: str | None,
        color_by: str,
        gene: str | None,
        term: tuple[str, str] | None,
        window: Window,
        frame: Window,
        size: dict | None,
        vmin: float | None,
        vmax: float | None,
        extra: dict | None = None,
    ) -> tuple[str, Window] | None:
        """The picture URL and the data window it covers, or None when the view misses the cells.

        Parameters
        ----------
        term : (level, name) or None
            Highlighted term.
        size : dict or None
            ``{"width_px", "height_px"}`` of the plot area; None = :data:`DEFAULT_SIZE_PX`.
        extra : dict, optional
            More :class:`PictureRequest` fields: the selection highlight (``selection``, ``clusters``) and the
            second gene of a two-gene picture (``gene2``, ``blend_mode``, ``threshold_a``, ``threshold_b``).
        """
        width_px, height_px = DEFAULT_SIZE_PX
        if size:
            width_px = int(size.get("width_px") or width_px)
            height_px = int(size.get("height_px") or height_px)
        geometry = picture_geometry(window, frame, width_px, height_px, self.settings.max_image_px,
                                    fill=color_by == COLOR_BY_TWO_GENES)
        if geometry is None:
            return None
        placed, w, h = geometry
        extra = extra or {}
        state = ViewState(
            dataset=dataset, slab_plane=slab_plane, section=section, color_by=color_by, gene=gene,
            term=term[1] if term else None, term_level=term[0] if term else None, vmin=vmin, vmax=vmax,
            gene2=extra.get("gene2"), blend_mode=extra.get("blend_mode") or "blend",
            threshold_a=extra.get("threshold_a"), threshold_b=extra.get("threshold_b"),
        )
        numeric = self.catalog.get(dataset) is not None and self.catalog.get(dataset).is_numeric(color_by)
        request = dataclasses.replace(view_picture(state, placed, w, h, numeric=numeric),
                                      selection=extra.get("selection"), clusters=extra.get("clusters"))
        url = request.url()
        if self.version:
            url += f"&v={self.version}"
        return url, placed

    # ------------------------------------------------------------------------------------------ umap
    def umap_dataset(self, dataset: str | None) -> str | None:
        """The single-cell dataset whose UMAP sits beside ``dataset`` (itself for UMAP datasets)."""
        entry = self.catalog.get(dataset)
        if entry is None:
            return None
        if not entry.spatial:
            return entry.name
        if entry.umap_dataset and self.catalog.get(entry.umap_dataset) is not None:
            return entry.umap_dataset
        return None

    def umap_color_by(self, umap_dataset: str, color_by: str, gene: str | None) -> tuple[str, str | None, str | None]:
        """Colouring of the UMAP following the map's: ``(color_by, gene, notice)``.

        ``region`` has no meaning for single cells: the UMAP then shows the map's default level.
        A gene missing from the single-cell data falls back to that level too, with a notice.
        """
        entry = self.catalog.get(umap_dataset)
        fallback = entry.default_color_by() if entry is not None else color_by
        if entry is None:
            return color_by, gene, None
        if color_by == COLOR_BY_GENE:
            if not entry.has_genes or not gene:
                return fallback, None, f"{umap_dataset} has no expression data: UMAP coloured by {fallback}."
            try:
                return COLOR_BY_GENE, self.lookups.gene_symbol(umap_dataset, gene), None
            except KeyError:
                return fallback, None, f"Gene {gene} is not measured in {umap_dataset}: UMAP coloured by {fallback}."
        if color_by == COLOR_BY_REGION or color_by not in (*entry.levels, *entry.columns, *entry.numeric_columns):
            return fallback, None, None
        return color_by, None, None


def store_token(store: Any) -> str:
    """A short token for the store's identity and version (absolute path + modification time of the folder).

    Returns
    -------
    str
        10 hexadecimal characters; stable across workers of one deployment.
    """
    path = Path(store).resolve()
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = 0
    return hashlib.sha1(f"{path}|{stamp}".encode()).hexdigest()[:10]


def term_counts(cells: Any, level: str) -> dict[str, int]:
    """Cells per term name of ``level`` in a cell table (terms without cells omitted)."""
    column = cells[level]
    counts = np.bincount(np.asarray(column.cat.codes, dtype=np.int64) + 1,
                         minlength=len(column.cat.categories) + 1)[1:]
    return {str(name): int(n) for name, n in zip(column.cat.categories, counts) if n}

