"""What every callback module of one app shares: the atlas, the settings, the catalog and the picture helpers.

Built once in ``create_app`` and handed to each module's ``register``; nothing here is global, so several apps
(tests) can live in one process. All data goes through the :class:`data_layer.Atlas`.

:class:`LiveContext` is the context a running server hands out: it follows the store. At most every
``store_check_s`` seconds a request looks at the catalog file (one ``stat``); when a prepare has committed a new one,
the store is opened again and new requests use the new version, while the requests already running finish on the
version they started with (each request is pinned to one version, so it never mixes two). A version no request
uses any more is released (its folders unlocked, so they can be removed).
"""
from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
        embedding: str | None = None,
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
        embedding : str, optional
            A single-cell dataset's neighborhood UMAP (None: its whole UMAP).
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
            threshold_a=extra.get("threshold_a"), threshold_b=extra.get("threshold_b"), embedding=embedding,
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


class LiveContext:
    """A :class:`ViewerContext` that switches to a newly prepared version of the store while serving.

    Attribute reads go to the version pinned for the current request (:meth:`pin`), else to the current one, so
    the callback modules and routes use it as a :class:`ViewerContext`.

    Parameters
    ----------
    current : ViewerContext
        the version opened at start.
    opener : callable
        ``opener(store) -> atlas`` (``data_layer.Atlas.open``).
    check_every_s : float
        seconds between two looks at the catalog file; 0: never (the version opened at start is served until the
        server restarts).
    stamp : callable
        ``stamp(store)`` -> something that changes with a new catalog (``data_layer.store.catalog_stamp``).
    on_release : callable, optional
        ``on_release(version)`` once a replaced version is used by no request (unlock its folders, remove them).
    clock : callable
        monotonic seconds.
    """

    def __init__(self, current: ViewerContext, opener: Callable[[Any], Any], check_every_s: float,
                 stamp: Callable[[Any], Any], on_release: Callable[[ViewerContext], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._current = current
        self._opener = opener
        self._check_every_s = check_every_s
        self._stamp_of = stamp
        self._stamp = stamp(current.settings.store)
        self._on_release = on_release
        self._clock = clock
        self._checked_at = clock()
        self._switch_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._pins: dict[int, int] = {}
        self._retired: dict[int, ViewerContext] = {}
        self._pinned: contextvars.ContextVar[ViewerContext | None] = contextvars.ContextVar(
            f"atlas_viewer_version_{id(self)}", default=None)

    @property
    def current(self) -> ViewerContext:
        """The newest version (what a new request gets)."""
        return self._current

    def in_use(self) -> ViewerContext:
        """The version of the current request, else the newest."""
        return self._pinned.get() or self._current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.in_use(), name)

    # ------------------------------------------------------------------------------------------ switching
    def refresh(self, force: bool = False) -> bool:
        """Look at the catalog file if ``check_every_s`` has passed (or ``force``) and switch to a new version when
        it changed. Never waits for another thread's switch; an error while opening keeps the current version
        (logged, tried again at the next look). Returns True when it switched."""
        if self._check_every_s <= 0 and not force:
            return False
        if not force and self._clock() - self._checked_at < self._check_every_s:
            return False
        if not self._switch_lock.acquire(blocking=False):
            return False
        try:
            self._checked_at = self._clock()
            store = self._current.settings.store
            stamp = self._stamp_of(store)
            if stamp is None or stamp == self._stamp:
                return False
            try:
                version = ViewerContext.build(self._opener(store), self._current.settings)
            except Exception:  # keep serving the version that works
                log.exception("the store %s changed but cannot be opened; still serving the previous version", store)
                return False
            old, self._current, self._stamp = self._current, version, stamp
            log.info("store %s: serving the newly prepared version %s (was %s)", store, version.version, old.version)
        finally:
            self._switch_lock.release()
        self._retire(old)
        return True

    def _retire(self, old: ViewerContext) -> None:
        with self._count_lock:
            if self._pins.get(id(old)):
                self._retired[id(old)] = old  # released by the last request using it
                return
        self._release(old)

    def _release(self, old: ViewerContext) -> None:
        if self._on_release is not None:
            try:
                self._on_release(old)
            except Exception:  # releasing is housekeeping; it must not fail a request
                log.exception("releasing the previous version of the store failed")

    # ------------------------------------------------------------------------------------------ requests
    def pin(self) -> contextvars.Token:
        """Pin the newest version for the current request (thread or context); give the token to :meth:`unpin`."""
        with self._count_lock:
            version = self._current
            self._pins[id(version)] = self._pins.get(id(version), 0) + 1
        return self._pinned.set(version)

    def unpin(self, token: contextvars.Token) -> None:
        """End the current request's pin; a replaced version is released when its last request ends."""
        version = self._pinned.get()
        self._pinned.reset(token)
        if version is None:
            return
        with self._count_lock:
            left = self._pins.get(id(version), 1) - 1
            if left > 0:
                self._pins[id(version)] = left
                return
            self._pins.pop(id(version), None)
            retired = self._retired.pop(id(version), None)
        if retired is not None:
            self._release(retired)


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

