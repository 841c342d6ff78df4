"""``Atlas``: the one door to a prepared store (contract: docs/atlas_api.md).

``Atlas.open(store)`` reads only the catalog and checks the size of every store file against it (``stat``, no
read); a dataset's small tables are read and its big arrays memory-mapped on first use, so start-up is instant and
gunicorn workers share the OS page cache. Every method returns plain numpy / pandas values; reads are thread-safe.

The unit folders of the catalog read at open are held (a shared ``flock`` each) while the atlas lives, so a
re-prepare never removes or changes a file it uses: the new version is written beside it and switched in by the
catalog, which a server reads when it is restarted.

A damaged dataset (a file missing, truncated or unreadable) is contained: every call naming it raises
:class:`data_layer.store.DatasetDamaged` (the dataset and its files named) and :meth:`Atlas.damaged` lists it,
while the other datasets keep serving. An opened dataset's file sizes are checked again at most every
:data:`RECHECK_S` seconds before it is used, so a file truncated under a running server is found before its memory
map is read past the end (which would kill the process with SIGBUS), except in the moment between two checks.
"""
from __future__ import annotations

import difflib
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

import data_layer.store as st
from .expression import ClusterStats, GeneMatrix
from .geometry import cells_in_polygon
from .taxonomy import Taxonomy, TaxonomyTables

log = logging.getLogger(__name__)

#: Rows of cell tables kept in the LRU cache of ``cells()`` (sum over cached tables).
CELL_CACHE_ROWS = 8_000_000
KDTREE_CACHE = 16
#: Seconds between two size checks of an opened dataset's files (a few ``stat`` calls).
RECHECK_S = 2.0


@dataclass(frozen=True)
class DatasetInfo:
    """What the app needs to know about a dataset without reading its cells."""

    name: str
    kind: str  # "spatial" or "umap"
    species: str | None
    platform: str
    taxonomy: str | None
    levels: list[str]
    n_cells: int
    n_genes: int
    umap_dataset: str | None
    bounds: tuple[float, float, float, float]
    n_sections: int = 0
    n_slab_planes: int = 0
    release: str = ""
    errors: tuple[str, ...] = ()
    #: Other UMAPs of some of the cells (the consensus taxonomy's neighborhoods): ``{"name", "n_cells",
    #: "bounds"}`` each, in store order; the ``embedding`` argument of the cell methods names one.
    embeddings: tuple[dict, ...] = ()


_SECTION_COLUMNS = ["brain_section_label", "slab_plane_label", "n_cells", "x_min", "x_max", "y_min", "y_max"]
_PLANE_COLUMNS = ["slab_plane_label", "n_sections", "n_cells", "has_polygons", "x_min", "x_max", "y_min", "y_max"]


class _Dataset:
    """One dataset's store folder, opened lazily (memory maps and small tables)."""

    def __init__(self, atlas: "Atlas", name: str, entry: dict):
        self.name = name
        self.entry = entry
        self.folder = atlas.root / st.UNITS / entry["unit"]
        self.checked_at = time.monotonic()
        if not self.folder.is_dir():
            raise st.DatasetDamaged(name, [f"folder {self.folder} is missing"])
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.kind = entry["kind"]
        self.n_cells = int(self.meta["n_cells"])
        self.labels = st.open_strings(self.folder / "cell_label.arrow")
        self.x = self._map("x.npy")
        self.y = self._map("y.npy")
        self.taxonomy: Taxonomy | None = None
        if entry.get("taxonomy_unit"):
            tables = atlas._taxonomy_tables(entry["taxonomy_unit"])
            counts = {lvl: np.asarray(c) for lvl, c in self.meta.get("term_counts", {}).items()}
            self.taxonomy = Taxonomy(tables, counts)
        self.levels = [lv["name"] for lv in self.meta["levels"]]
        self.codes: dict[str, np.ndarray] = {}
        self.dtypes: dict[str, pd.CategoricalDtype] = {}
        self.colors: dict[str, list[str]] = {}
        for lv in self.meta["levels"]:
            self.codes[lv["name"]] = self._map(lv["file"])
            self.dtypes[lv["name"]] = pd.CategoricalDtype(self.taxonomy.categories(lv["name"]), ordered=False)
            self.colors[lv["name"]] = self.taxonomy.colors(lv["name"])
        for col, spec in self.meta["categorical"].items():
            self.codes[col] = self._map(spec["file"])
            self.dtypes[col] = pd.CategoricalDtype(spec["categories"], ordered=False)
            self.colors[col] = list(spec["colors"])
        self.bools = {col: self._map(f) for col, f in self.meta.get("bool", {}).items()}
        self.numeric = {col: self._map(spec["file"]) for col, spec in self.meta.get("numeric", {}).items()}
        self.numeric_ranges = {col: spec.get("range") for col, spec in self.meta.get("numeric", {}).items()}
        self.extra_columns = [c for c in self.meta["categorical"]
                              if c not in ("brain_section_label", "slab_plane_label", "region")]
        if self.kind == "spatial":
            self.sections = pd.read_parquet(self.folder / "sections.parquet")
            self.planes = pd.read_parquet(self.folder / "slab_planes.parquet")
        else:
            self.sections = pd.DataFrame({c: pd.Series(dtype=object if "label" in c else np.int64 if c == "n_cells"
                                                       else np.float64) for c in _SECTION_COLUMNS + ["row_start", "row_stop"]})
            self.planes = pd.DataFrame({c: pd.Series(dtype=object) for c in _PLANE_COLUMNS + ["row_start", "row_stop"]})
        self.section_rows = {lab: (int(a), int(b)) for lab, a, b in
                             zip(self.sections["brain_section_label"], self.sections["row_start"], self.sections["row_stop"])}
        self.plane_rows = {lab: (int(a), int(b)) for lab, a, b in
                           zip(self.planes["slab_plane_label"], self.planes["row_start"], self.planes["row_stop"])}
        self.polygon_files = self.meta.get("polygons", {})
        self.embeddings = {e["name"]: e for e in self.meta.get("embeddings", [])}
        self._embedding_xy: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._genes: GeneMatrix | None = None
        self._genes_lock = threading.Lock()

    def _map(self, fname: str) -> np.ndarray:
        path = self.folder / fname
        arr = np.load(path, mmap_mode="r") if self.n_cells else np.load(path)
        return arr

    @property
    def genes(self) -> GeneMatrix | None:
        if self._genes is None and (self.folder / "expression" / "expression.json").is_file():
            with self._genes_lock:
                if self._genes is None:
                    self._genes = GeneMatrix(self.folder / "expression", self.n_cells)
        return self._genes

    def embedding_entry(self, embedding: str) -> dict:
        entry = self.embeddings.get(embedding)
        if entry is None:
            raise KeyError(f"{self.name} has no UMAP {embedding!r}; it has: "
                           f"{', '.join(self.embeddings) or 'only its whole UMAP'}")
        return entry

    def xy(self, start: int, stop: int, embedding: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of rows ``start:stop`` in the whole UMAP (or section), or in ``embedding`` (rows inside it)."""
        if embedding is None:
            return self.x[start:stop], self.y[start:stop]
        entry = self.embedding_entry(embedding)
        if embedding not in self._embedding_xy:
            self._embedding_xy[embedding] = (self._map(entry["x"]), self._map(entry["y"]))
        ex, ey = self._embedding_xy[embedding]
        base = int(entry["row_start"])
        return ex[start - base:stop - base], ey[start - base:stop - base]

    def rows(self, section: str | None, slab_plane: str | None, embedding: str | None = None) -> tuple[int, int]:
        if embedding is not None:
            if section is not None or slab_plane is not None:
                raise ValueError(f"{self.name}: a UMAP of a neighborhood has no section or slab plane")
            entry = self.embedding_entry(embedding)
            return int(entry["row_start"]), int(entry["row_stop"])
        if section is not None:
            if section not in self.section_rows:
                close = difflib.get_close_matches(str(section), list(self.section_rows), n=5)
                raise KeyError(f"{self.name} has no section {section!r}"
                               + (f"; close matches: {', '.join(close)}" if close else ""))
            rows = self.section_rows[section]
            if slab_plane is not None:
                plane = self.sections.loc[self.sections["brain_section_label"] == section, "slab_plane_label"].iat[0]
                if plane != slab_plane:
                    raise ValueError(f"{self.name}: section {section} lies in slab plane {plane}, not {slab_plane}")
            return rows
        if slab_plane is not None:
            if slab_plane not in self.plane_rows:
                close = difflib.get_close_matches(str(slab_plane), list(self.plane_rows), n=5)
                raise KeyError(f"{self.name} has no slab plane {slab_plane!r}"
                               + (f"; close matches: {', '.join(close)}" if close else ""))
            return self.plane_rows[slab_plane]
        return 0, self.n_cells

    def column_name(self, column: str) -> str:
        if column in self.codes:
            return column
        for c in self.codes:
            if c.lower() == str(column).lower():
                return c
        raise KeyError(f"{self.name} has no categorical column {column!r}; it has: {', '.join(self.codes)}")

    def frame(self, start: int, stop: int, embedding: str | None = None) -> pd.DataFrame:
        x, y = self.xy(start, stop, embedding)
        cols: dict[str, object] = {
            "cell_label": pd.arrays.ArrowStringArray(self.labels.slice(start, stop - start)),
            "x": np.array(x),
            "y": np.array(y),
        }
        order = []
        if self.kind == "spatial":
            order += ["brain_section_label", "slab_plane_label", "region"]
        order += self.levels + self.extra_columns
        for col in order:
            if col in self.codes:
                cols[col] = pd.Categorical.from_codes(np.array(self.codes[col][start:stop]), dtype=self.dtypes[col],
                                                      validate=False)
        for col, arr in self.bools.items():
            cols[col] = np.array(arr[start:stop])
        for col, arr in self.numeric.items():
            cols[col] = np.array(arr[start:stop])
        return pd.DataFrame(cols, copy=False)

    def numeric_name(self, column: str) -> str:
        if column in self.numeric:
            return column
        for c in self.numeric:
            if c.lower() == str(column).lower():
                return c
        raise KeyError(f"{self.name} has no numeric column {column!r}; it has: {', '.join(self.numeric) or 'none'}")


class Atlas:
    """A prepared store, opened read-only. Build with :meth:`open`."""

    def __init__(self, root: Path, catalog: dict):
        self.root = root
        self.catalog = catalog
        self._datasets: dict[str, _Dataset] = {}
        self._damaged: dict[str, list[str]] = {}
        self._tax_tables: dict[str, TaxonomyTables] = {}
        self._lock = threading.RLock()
        self._cells: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._cells_rows = 0
        self._trees: OrderedDict[tuple, object] = OrderedDict()
        self._polygons: dict[tuple, dict] = {}

    # ------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, store_dir: str | Path) -> "Atlas":
        """Open a store written by ``atlas-viewer prepare`` (reads only ``catalog.json``).

        Raises
        ------
        data_layer.store.StoreError
            if the folder is not a store (the message says how to make one).
        """
        root = Path(store_dir)
        atlas = cls(root, st.read_catalog(root))
        # the folders of this catalog stay on disk while this atlas (or a forked worker) lives, whatever a
        # re-prepare writes meanwhile
        atlas.hold()
        atlas.check_files()
        return atlas

    def hold(self) -> None:
        """Take this process's shared lock on each folder of this atlas's catalog (:func:`store.hold_units`), so no
        prepare removes them while it serves; released by :meth:`release` or when the atlas is collected. A
        forked worker calls it to hold the folders itself once the parent has let go."""
        previous = getattr(self, "_unhold", None)
        self._unhold = weakref.finalize(self, st.release_units, st.hold_units(self.root,
                                                                             st.referenced_units(self.catalog)))
        if previous is not None:
            previous()

    def release(self) -> None:
        """Let go of this atlas's folders: drop its caches and memory maps (:meth:`close`) and its locks, so a
        prepare (or :func:`store.remove_unused`) may remove the folders a newer catalog no longer uses. Call it
        once no request reads this atlas any more."""
        self.close()
        unhold = getattr(self, "_unhold", None)
        if unhold is not None:
            unhold()

    def check_files(self) -> dict[str, str]:
        """Check the size of every file of every dataset against the catalog (``stat`` only; checksums are
        ``atlas-viewer verify``'s job); a damaged dataset is then refused (:meth:`damaged`) and a repaired one
        served again. Returns :meth:`damaged`."""
        found = {}
        for name in self.catalog["datasets"]:
            problems = st.check_dataset(self.root, self.catalog, name)
            if problems:
                found[name] = problems
        with self._lock:
            for name, problems in self._damaged.items():
                # found unreadable while serving, in a store without recorded sizes: no check can clear it
                units = st.entry_units(self.catalog, self.catalog["datasets"][name])
                unverified = any(files is None for _, files in units)
                if name not in found and unverified:
                    found[name] = problems
            for name in found:
                if name not in self._damaged:
                    log.error("%s", st.DatasetDamaged(name, found[name]))
                self._datasets.pop(name, None)
            self._damaged = found
        return self.damaged()

    def damaged(self) -> dict[str, str]:
        """Damaged datasets found so far: name -> what is wrong (files named). Empty for a sound store."""
        with self._lock:
            return {name: str(st.DatasetDamaged(name, problems)) for name, problems in self._damaged.items()}

    def _mark_damaged(self, name: str, problems: list[str]) -> st.DatasetDamaged:
        exc = st.DatasetDamaged(name, problems)
        with self._lock:
            if name not in self._damaged:
                log.error("%s", exc)
            self._damaged[name] = list(problems)
            self._datasets.pop(name, None)
            for key in [k for k in self._cells if k[0] == name]:
                _, a, b, _ = key
                self._cells_rows -= b - a
                del self._cells[key]
            for key in [k for k in self._trees if k[0] == name]:
                del self._trees[key]
        return exc

    def __repr__(self) -> str:
        return f"Atlas({str(self.root)!r}, datasets={self.datasets()})"

    def _ds(self, dataset: str) -> _Dataset:
        ds = self._datasets.get(dataset)
        if ds is not None:
            if time.monotonic() - ds.checked_at < RECHECK_S:
                return ds
            # Sizes again before the maps are read: a truncated mapped file would end the process (SIGBUS).
            problems = st.check_dataset(self.root, self.catalog, dataset)
            if problems:
                raise self._mark_damaged(dataset, problems)
            ds.checked_at = time.monotonic()
            return ds
        with self._lock:
            if dataset in self._damaged:
                raise st.DatasetDamaged(dataset, self._damaged[dataset])
            if dataset not in self._datasets:
                entry = self.catalog["datasets"].get(dataset)
                if entry is None:
                    close = difflib.get_close_matches(str(dataset), list(self.catalog["datasets"]), n=3, cutoff=0.4)
                    raise KeyError(f"no dataset {dataset!r} in store {self.root}; it has: "
                                   f"{', '.join(self.catalog['datasets']) or 'none'}"
                                   + (f" (close: {', '.join(close)})" if close else ""))
                try:
                    self._datasets[dataset] = _Dataset(self, dataset, entry)
                except st.DatasetDamaged as exc:
                    raise self._mark_damaged(dataset, exc.problems) from None
                except (OSError, ValueError, EOFError) as exc:  # unreadable file of a store without recorded sizes
                    raise self._mark_damaged(dataset, [f"{type(exc).__name__}: {exc}"]) from None
            return self._datasets[dataset]

    def _taxonomy_tables(self, unit: str) -> TaxonomyTables:
        with self._lock:
            if unit not in self._tax_tables:
                self._tax_tables[unit] = TaxonomyTables.load(self.root / st.UNITS / unit)
            return self._tax_tables[unit]

    # ------------------------------------------------------------------------------------------- catalog
    def datasets(self) -> list[str]:
        """Dataset names: spatial (human, macaque, marmoset) first, then single-cell (UMAP) ones."""
        return list(self.catalog["datasets"])

    def taxonomies(self) -> list[str]:
        """Names of the taxonomies in the store."""
        return list(self.catalog.get("taxonomies", {}))

    def info(self, dataset: str) -> DatasetInfo:
        entry = self.catalog["datasets"].get(dataset)
        if entry is None:
            self._ds(dataset)  # raises the KeyError with the list
        return DatasetInfo(
            name=dataset, kind=entry["kind"], species=entry.get("species"), platform=entry.get("platform") or "10x",
            taxonomy=entry.get("taxonomy"), levels=list(entry.get("levels", [])), n_cells=int(entry["n_cells"]),
            n_genes=int(entry.get("n_genes", 0)), umap_dataset=entry.get("umap_dataset"),
            bounds=tuple(entry.get("bounds", (0.0, 0.0, 0.0, 0.0))), n_sections=int(entry.get("n_sections", 0)),
            n_slab_planes=int(entry.get("n_slab_planes", 0)), release=entry.get("release", ""),
            errors=tuple(entry.get("errors", ())), embeddings=tuple(entry.get("embeddings") or ()),
        )

    def sections(self, dataset: str) -> pd.DataFrame:
        """One row per section in atlas order: ``brain_section_label, slab_plane_label, n_cells, x_min, x_max,
        y_min, y_max`` (+ ``row_start, row_stop`` and specimen columns). Empty for UMAP datasets."""
        return self._ds(dataset).sections.copy()

    def slab_planes(self, dataset: str) -> pd.DataFrame:
        """One row per slab plane: ``slab_plane_label, n_sections, n_cells, has_polygons, x_min .. y_max``."""
        return self._ds(dataset).planes.copy()

    # ------------------------------------------------------------------------------------------- cells
    def row_range(self, dataset: str, section: str | None = None, slab_plane: str | None = None,
                  embedding: str | None = None) -> tuple[int, int]:
        """Store rows ``(start, stop)`` of a section, a slab plane, a neighborhood's UMAP or the whole dataset."""
        return self._ds(dataset).rows(section, slab_plane, embedding)

    def embeddings(self, dataset: str) -> list[str]:
        """Names of the dataset's other UMAPs (a neighborhood each; its cells only), in store order."""
        return list(self._ds(dataset).embeddings)

    def cells(self, dataset: str, section: str | None = None, slab_plane: str | None = None,
              embedding: str | None = None) -> pd.DataFrame:
        """Cells of a dataset, a section or a slab plane (see docs/atlas_api.md for the columns); with
        ``embedding`` (a name of :meth:`embeddings`) the cells of that neighborhood's UMAP, ``x, y`` in it.

        The frame is cached (LRU) and returned as a shallow copy: adding columns is fine, editing values in
        place is not.
        """
        ds = self._ds(dataset)
        start, stop = ds.rows(section, slab_plane, embedding)
        key = (dataset, start, stop, embedding)
        with self._lock:
            df = self._cells.get(key)
            if df is not None:
                self._cells.move_to_end(key)
                return df.copy(deep=False)
        df = ds.frame(start, stop, embedding)
        with self._lock:
            if key not in self._cells:
                self._cells[key] = df
                self._cells_rows += stop - start
                while self._cells_rows > CELL_CACHE_ROWS and len(self._cells) > 1:
                    (_, a, b, _), _ = self._cells.popitem(last=False)
                    self._cells_rows -= b - a
        return df.copy(deep=False)

    def xy(self, dataset: str, section: str | None = None, slab_plane: str | None = None,
           embedding: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` float32 arrays (read-only memory-map views) aligned with ``cells(...)``."""
        ds = self._ds(dataset)
        a, b = ds.rows(section, slab_plane, embedding)
        return ds.xy(a, b, embedding)

    def categorical_columns(self, dataset: str) -> list[str]:
        """Columns that :meth:`codes` accepts: the taxonomy levels, then region, species, ... ."""
        ds = self._ds(dataset)
        return ds.levels + [c for c in ds.codes if c not in ds.levels]

    def numeric_columns(self, dataset: str) -> list[str]:
        """Numeric measurement columns of the release's cell tables that :meth:`values` accepts (``umi_count``,
        ``doublet_score``, ``total_counts``, ``cell_area``...), in the source's column order."""
        return list(self._ds(dataset).numeric)

    def values(self, dataset: str, column: str, section: str | None = None, slab_plane: str | None = None,
               embedding: str | None = None) -> np.ndarray:
        """A numeric cell column (read-only memory-map view, aligned with ``cells(...)``) with the source's values
        and dtype: int64, or float64 (NaN where the release gives the cell no value). ``KeyError`` naming the
        columns for an unknown one (any case matches)."""
        ds = self._ds(dataset)
        col = ds.numeric_name(column)
        a, b = ds.rows(section, slab_plane, embedding)
        return ds.numeric[col][a:b]

    def column_range(self, dataset: str, column: str) -> tuple[float, float] | None:
        """Default colour range of a numeric column over the whole dataset: its 1st to 99th percentile over the
        cells with a value (minimum to maximum when those are equal), stored by prepare; None when no cell has a
        value."""
        ds = self._ds(dataset)
        found = ds.numeric_ranges.get(ds.numeric_name(column))
        return None if found is None else (float(found[0]), float(found[1]))

    def codes(self, dataset: str, column: str, section: str | None = None, slab_plane: str | None = None,
              embedding: str | None = None) -> np.ndarray:
        """Integer category codes (int8/16/32, read-only memory-map view) of a level or categorical column,
        aligned with ``cells(...)``; they index :meth:`categories` and :meth:`colors`."""
        ds = self._ds(dataset)
        col = ds.column_name(column)
        a, b = ds.rows(section, slab_plane, embedding)
        return ds.codes[col][a:b]

    def categories(self, dataset: str, column: str) -> list[str]:
        """Categories of a level (term names + ``Adjacent``, ``unassigned``) or another categorical column."""
        ds = self._ds(dataset)
        return list(ds.dtypes[ds.column_name(column)].categories)

    def colors(self, dataset: str, column: str) -> list[str]:
        """``#rrggbb`` per category of :meth:`categories`."""
        ds = self._ds(dataset)
        return list(ds.colors[ds.column_name(column)])

    def region_colors(self, dataset: str) -> dict[str, str]:
        """Region name -> ``#rrggbb`` in the order of the ``region`` categories (spatial datasets; else {})."""
        ds = self._ds(dataset)
        if "region" not in ds.codes:
            return {}
        return dict(zip(ds.dtypes["region"].categories, ds.colors["region"]))

    def polygons(self, dataset: str, slab_plane: str) -> dict:
        """Region outlines of a slab plane: a GeoJSON FeatureCollection in slab mm (``properties.label`` and
        ``properties.color`` on every feature); an empty collection when the plane has none."""
        ds = self._ds(dataset)
        if ds.kind == "spatial" and slab_plane not in ds.plane_rows:
            ds.rows(None, slab_plane)  # KeyError with close matches
        fname = ds.polygon_files.get(slab_plane)
        if fname is None:
            return {"type": "FeatureCollection", "features": []}
        key = (dataset, slab_plane)
        with self._lock:
            if key not in self._polygons:
                self._polygons[key] = json.loads((ds.folder / fname).read_text())
            return json.loads(json.dumps(self._polygons[key]))

    def nearest_cell(self, dataset: str, x: float, y: float, section: str | None = None,
                     slab_plane: str | None = None, max_distance: float | None = None,
                     embedding: str | None = None) -> int | None:
        """Row position in ``cells(...)`` of the cell nearest to (x, y), or None if there is no cell (or none
        within ``max_distance``). The KD-tree is built on first use per (dataset, section/plane)."""
        from scipy.spatial import cKDTree

        ds = self._ds(dataset)
        a, b = ds.rows(section, slab_plane, embedding)
        if b <= a:
            return None
        key = (dataset, a, b, embedding)
        with self._lock:
            tree = self._trees.get(key)
            if tree is not None:
                self._trees.move_to_end(key)
        if tree is None:
            xs, ys = ds.xy(a, b, embedding)
            pts = np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)])
            tree = cKDTree(pts)
            with self._lock:
                self._trees[key] = tree
                while len(self._trees) > KDTREE_CACHE:
                    self._trees.popitem(last=False)
        dist, idx = tree.query([float(x), float(y)], k=1,
                               distance_upper_bound=np.inf if max_distance is None else float(max_distance))
        if not np.isfinite(dist):
            return None
        return int(idx)

    def cells_in_polygon(self, dataset: str, xs: Sequence[float], ys: Sequence[float],
                         section: str | None = None, slab_plane: str | None = None,
                         embedding: str | None = None) -> np.ndarray:
        """Row positions (int64, ascending) in ``cells(...)`` of the cells inside the polygon (xs, ys)."""
        if len(xs) < 3:
            return np.zeros(0, dtype=np.int64)
        x, y = self.xy(dataset, section, slab_plane, embedding)
        return np.flatnonzero(cells_in_polygon(x, y, (np.asarray(xs, float), np.asarray(ys, float)))).astype(np.int64)

    # ------------------------------------------------------------------------------------------- genes
    def _genes(self, dataset: str) -> GeneMatrix:
        gm = self._ds(dataset).genes
        if gm is None:
            raise KeyError(f"dataset {dataset} has no expression data in this store (its h5ad was not downloaded "
                           f"or could not be read when it was prepared)")
        return gm

    def expression_matrix(self, dataset: str) -> GeneMatrix:
        """The dataset's gene-major expression for analyses that scan many genes (e.g. marker genes of a
        selection): memory-mapped, read-only CSC arrays ``indptr`` (int64 ``[n_genes + 1]``), ``indices``
        (int32 store rows, sorted within a gene), ``data`` (float16 or float32 log2 values),
        ``has_expression`` (bool ``[n_cells]``), plus ``gene_identifiers`` / ``gene_symbols`` and
        ``resolve(gene)``. Rows are store rows: add ``row_range(dataset, section)[0]`` to section positions.
        ``KeyError`` if the dataset has no expression."""
        return self._genes(dataset)

    def genes(self, dataset: str) -> pd.DataFrame:
        """``gene_identifier, gene_symbol`` of the dataset's expression (empty if it has none)."""
        gm = self._ds(dataset).genes
        if gm is None:
            return pd.DataFrame({"gene_identifier": pd.Series(dtype=object), "gene_symbol": pd.Series(dtype=object)})
        return gm.genes()

    def resolve_gene(self, dataset: str, gene: str) -> tuple[str, str]:
        """``(gene_identifier, gene_symbol)`` of a symbol (any case) or identifier; ``KeyError`` naming close
        matches."""
        gm = self._genes(dataset)
        g = gm.resolve(gene, dataset)
        return str(gm.gene_identifiers[g]), str(gm.gene_symbols[g])

    def gene(self, dataset: str, gene: str, section: str | None = None, slab_plane: str | None = None,
             embedding: str | None = None) -> np.ndarray:
        """float32 expression of one gene aligned with ``cells(dataset, section, slab_plane, embedding)``: 0 where
        not detected, NaN where the cell has no expression row."""
        ds = self._ds(dataset)
        gm = self._genes(dataset)
        g = gm.resolve(gene, dataset)
        a, b = ds.rows(section, slab_plane, embedding)
        return gm.values(g, a, b)

    def gene_max(self, dataset: str, gene: str) -> float:
        """Largest value of a gene over the whole dataset (a fixed colour-scale maximum)."""
        gm = self._genes(dataset)
        return gm.max_value(gm.resolve(gene, dataset))

    def gene_range(self, dataset: str, gene: str) -> tuple[float, float]:
        """Default colour range ``(vmin, vmax)`` of a gene over the whole dataset: ``0 .. 99th percentile`` of the
        cells expressing it (values > 0), as ``rendering.raster.default_gene_range(atlas.gene(dataset, gene))``
        defines it. Read from the store (written by prepare), or computed from the gene's stored entries in stores
        prepared before it was stored. ``KeyError`` for an unknown gene or a dataset without expression."""
        gm = self._genes(dataset)
        return gm.default_range(gm.resolve(gene, dataset))

    def search_genes(self, text: str, dataset: str, limit: int = 20) -> list[dict]:
        """Genes for autocompletion: symbol prefix matches first (case-insensitive), then symbol substrings, then
        identifier matches. List of ``{"gene_identifier", "gene_symbol"}``."""
        gm = self._ds(dataset).genes
        q = str(text).strip().lower()
        if gm is None or not q:
            return []
        syms = pd.Series(gm.gene_symbols).str.lower()
        ids = pd.Series(gm.gene_identifiers).str.lower()
        prefix = np.flatnonzero(syms.str.startswith(q, na=False))
        prefix = prefix[np.lexsort((syms.iloc[prefix].to_numpy(), syms.iloc[prefix].str.len().to_numpy()))]
        sub = np.flatnonzero(syms.str.contains(q, regex=False, na=False))
        ident = np.flatnonzero(ids.str.contains(q, regex=False, na=False))
        out, seen = [], set()
        for i in [*prefix, *sub, *ident]:
            if i in seen:
                continue
            seen.add(i)
            out.append({"gene_identifier": str(gm.gene_identifiers[i]), "gene_symbol": str(gm.gene_symbols[i])})
            if len(out) >= limit:
                break
        return out

    def cluster_stats(self, dataset: str) -> ClusterStats:
        """Mean log2 expression and fraction of expressing cells per cluster and gene (memory-mapped)."""
        ds = self._ds(dataset)
        clusters = ds.taxonomy.categories(ds.levels[-1])[:-2] if ds.taxonomy and ds.levels else []
        gm = ds.genes
        if gm is None:
            empty = np.zeros((len(clusters), 0), dtype=np.float32)
            return ClusterStats(clusters, [], [], empty, empty.copy(), np.zeros(len(clusters), dtype=np.int64))
        return gm.cluster_stats(clusters)

    # ------------------------------------------------------------------------------------------- taxonomy
    def taxonomy(self, dataset: str) -> Taxonomy:
        """The taxonomy of a dataset (n_cells counts that dataset's cells), or a taxonomy by its own name."""
        if dataset in self.catalog["datasets"]:
            ds = self._ds(dataset)
            if ds.taxonomy is None:
                raise KeyError(f"dataset {dataset} has no taxonomy")
            return ds.taxonomy
        entry = self.catalog.get("taxonomies", {}).get(dataset)
        if entry is None:
            self._ds(dataset)  # KeyError listing datasets
        return Taxonomy(self._taxonomy_tables(entry["unit"]))

    def search_terms(self, text: str, dataset: str, limit: int = 20) -> list[dict]:
        """Taxonomy terms for autocompletion: name prefix matches (coarse levels first), then substrings, then
        label matches. List of ``{"level", "label", "name", "color"}``."""
        q = str(text).strip().lower()
        if not q:
            return []
        tax = self.taxonomy(dataset)
        rows = []
        for i, level in enumerate(tax.levels):
            df = tax.terms(level)
            for lab, name, color in zip(df["label"], df["name"], df["color"]):
                lname = name.lower()
                if lname.startswith(q):
                    rank = 0
                elif q in lname:
                    rank = 1
                elif q in lab.lower():
                    rank = 2
                else:
                    continue
                rows.append((rank, i, len(name), name, {"level": level, "label": lab, "name": name, "color": color}))
        rows.sort(key=lambda r: r[:4])
        return [r[-1] for r in rows[:limit]]

    def close(self) -> None:
        """Drop caches and memory maps (the object can still be used; it reopens lazily)."""
        with self._lock:
            self._datasets.clear()
            self._cells.clear()
            self._cells_rows = 0
            self._trees.clear()
            self._polygons.clear()
