"""``atlas-viewer prepare``: read an ABC cache through its manifest and write the fast store the Atlas opens.

What is prepared (see ../shared/ABC_LAYOUT.md and DESIGN.md, "Data flow"):

* every **taxonomy** in the cache (a metadata dataset with term sets, terms and cluster membership, and the
  abbreviations its term names use when the release spells them out);
* every **spatial** dataset (``cell_metadata`` + ``slab_plane_coordinates``; the basal ganglia MERSCOPE and
  Xenium sets): cells inner-joined with their slab coordinates, sections and slab planes from
  ``specimen_metadata``, regions from ``cell_anatomical_annotations``, region polygons from the plane
  ``.geojson`` files, clusters from ``cell_to_cluster_membership``, expression from the ``-log2.h5ad``;
* the **10X UMAP** of a taxonomy (``cell_2d_embedding_coordinates``) joined to its cell dataset (the
  basal ganglia aligned 10X set, with species from ``donor.csv``), or on its own (the consensus mouse taxonomy);
* every **cell-metadata UMAP** dataset (``cell_metadata`` with ``x, y, cluster_alias``: WMB-10X), with
  expression from the h5ad files its cells name (``dataset_label`` / ``feature_matrix_label``).

The store is built beside the old one and swapped in atomically (:mod:`data_layer.store`); a dataset whose
sources (manifest sizes and MD5s) did not change keeps its folder untouched. A dataset that fails (missing
column, corrupt h5ad) is reported; the others are still prepared, and the previous version of the failed one is
kept when there is one. :class:`PrepareError` is raised at the end if anything failed.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import data_layer.store as st
from .convert import release_free_memory
from .expression import LAYOUT_VERSION as EXPRESSION_LAYOUT, ExpressionError, convert_expression
from .manifest import LocalCache, ManifestError, ManifestFile
from .tables import (
    TableError, bool_values, categories_with_colors, column_array, csv_header, first_rows, normalize_color,
    positions_in, read_arrow, read_csv, read_numeric_columns, read_value_sets, smallest_int_dtype,
)
from .taxonomy import OPTIONAL_TAGS, REQUIRED_TAGS, TaxonomyTables, normalize_aliases, read_taxonomy

log = logging.getLogger(__name__)

DEFAULT_REGION = "Basal ganglia and adjacent"
DEFAULT_REGION_COLOR = "#bebebe"
SPECIES_ORDER = ("Human", "Macaque", "Marmoset", "Mouse")
#: The cell dataset whose cells a taxonomy's 2-D embedding holds (else the embedding stands alone).
EMBEDDING_CELL_DATASETS = {"HMBA-BG-taxonomy": "HMBA-10xMultiome-BG-Aligned"}
#: Cell tables (metadata-only datasets) naming the expression files of a taxonomy's embedding cells, and the
#: datasets whose h5ad files they name: the consensus mouse taxonomy's AIBS cells are in the WMB-10Xv2/v3
#: files, its Macosko cells in the Consensus-WMB-Macosko-10X files. Value: (cell tables, expression datasets).
EMBEDDING_CELL_TABLES = {
    "Consensus-WMB-integrated-taxonomy": (("Consensus-WMB-AIBS-10X", "Consensus-WMB-Macosko-10X"),
                                          ("WMB-10X", "Consensus-WMB-Macosko-10X")),
}
#: ``origin_dataset`` of the cells of each such cell table (the release's value_sets name them so).
CELL_TABLE_ORIGIN = {"Consensus-WMB-AIBS-10X": "WMB-AIBS", "Consensus-WMB-Macosko-10X": "WMB-Macosko"}
#: Which taxonomy a dataset uses, by name prefix; other datasets are matched by their cluster aliases.
KNOWN_TAXONOMY = (
    ("HMBA-MERSCOPE-", "HMBA-BG-taxonomy"),
    ("HMBA-Xenium-", "HMBA-BG-taxonomy"),
    ("HMBA-10xMultiome-BG", "HMBA-BG-taxonomy"),
    ("WMB-10X", "WMB-taxonomy"),
)
#: Tag ending of a taxonomy's per-neighborhood UMAP tables (``MB-GABA_cell_2d_embedding_coordinates``): each
#: holds ``cell_label, x, y`` of the cells of one neighborhood, in coordinates of its own.
NEIGHBORHOOD_EMBEDDING_SUFFIX = "_cell_2d_embedding_coordinates"
#: Columns of a cell-metadata UMAP table (WMB-10X ``cell_metadata.csv``).
UMAP_COLUMNS = ("x", "y", "cluster_alias")
DONOR_PREFIX_SPECIES = (("QM", "Macaque"), ("CJ", "Marmoset"), ("H", "Human"))


class PrepareError(Exception):
    """Prepare could not run, or some datasets failed (``.report`` holds what was done)."""

    def __init__(self, message: str, report: "PrepareReport | None" = None):
        super().__init__(message)
        self.report = report


@dataclass
class PrepareReport:
    """What a prepare did: per dataset/taxonomy ``prepared``, ``unchanged``, ``kept`` or ``failed``."""

    store: Path
    release: str
    datasets: dict[str, str] = field(default_factory=dict)
    taxonomies: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"{name}: {status}" for name, status in {**self.taxonomies, **self.datasets}.items()]
        for name, errs in self.errors.items():
            out += [f"{name}: ERROR {e}" for e in errs]
        return out


# ------------------------------------------------------------------------------------------------- planning
@dataclass
class UnitPlan:
    """One dataset or taxonomy to prepare and the source files it reads."""

    kind: str  # "taxonomy", "spatial" or "umap"
    name: str
    builder: str  # "taxonomy", "spatial", "embedding", "cell_metadata"
    files: dict[str, ManifestFile] = field(default_factory=dict)  # role -> file
    polygons: dict[str, ManifestFile] = field(default_factory=dict)  # slab plane -> geojson
    expression: list[ManifestFile] = field(default_factory=list)  # candidate log2 h5ad files
    taxonomy: str | None = None
    problems: list[str] = field(default_factory=list)  # truncated sources found while planning
    cell_tables: list[str] = field(default_factory=list)  # datasets whose cell_metadata joins the embedding

    def sources(self) -> list[ManifestFile]:
        return list(self.files.values()) + list(self.polygons.values()) + list(self.expression)


class _Cache:
    """The local cache with per-file state and MD5s (from the manifest; computed only when it has none)."""

    def __init__(self, cache: LocalCache):
        self.cache = cache
        self.manifest = cache.manifest
        self._md5: dict[str, str] = {}

    def path(self, f: ManifestFile) -> Path:
        return f.local_path(self.cache.root)

    def state(self, f: ManifestFile) -> str:
        """``ok``, ``missing`` or ``truncated`` (size differs from the manifest's)."""
        p = self.path(f)
        if not p.is_file():
            return "missing"
        if f.size and p.stat().st_size != f.size:
            return "truncated"
        return "ok"

    def problem(self, f: ManifestFile) -> str:
        p = self.path(f)
        return (f"{p}: {p.stat().st_size} bytes but the manifest says {f.size}: the download is incomplete or "
                f"the file changed; download it again")

    def record(self, f: ManifestFile) -> dict:
        md5 = f.file_hash
        if not md5:
            md5 = self._md5.get(f.relative_path)
            if md5 is None:
                log.info("%s: the manifest gives no MD5; hashing the local file", f.relative_path)
                md5 = self._md5[f.relative_path] = st.file_md5(self.path(f))
        return {"path": f.relative_path, "size": f.size or self.path(f).stat().st_size, "md5": md5}

    def metadata(self, dataset: str) -> dict[str, ManifestFile]:
        return {f.tag: f for f in self.manifest.files(dataset, "metadata") if f.fmt == "csv"}

    def ok(self, f: ManifestFile | None) -> bool:
        return f is not None and self.state(f) == "ok"


def plan_units(cache: _Cache) -> tuple[dict[str, UnitPlan], list[UnitPlan]]:
    """Find the taxonomies and datasets a cache holds (only files that are downloaded count)."""
    manifest = cache.manifest
    names = manifest.datasets()
    taxonomies: dict[str, UnitPlan] = {}
    datasets: list[UnitPlan] = []
    meta = {ds: cache.metadata(ds) for ds in names}

    def usable(ds: str, tag: str) -> ManifestFile | None:
        f = meta[ds].get(tag)
        return f if f is not None and cache.state(f) != "missing" else None

    for ds in names:
        if all(usable(ds, t) for t in REQUIRED_TAGS):
            plan = UnitPlan("taxonomy", ds, "taxonomy", taxonomy=ds)
            for tag in (*REQUIRED_TAGS, *OPTIONAL_TAGS):
                if usable(ds, tag):
                    plan.files[tag] = meta[ds][tag]
            taxonomies[ds] = plan

    claimed: set[str] = set()
    for ds in names:
        if usable(ds, "cell_metadata") and usable(ds, "slab_plane_coordinates"):
            plan = UnitPlan("spatial", ds, "spatial")
            for tag in ("cell_metadata", "slab_plane_coordinates", "specimen_metadata", "cell_anatomical_annotations",
                        "cell_to_cluster_membership", "value_sets", "gene", "donor", "cell_supplemental_metadata"):
                if usable(ds, tag):
                    plan.files[tag] = meta[ds][tag]
            for f in manifest.files(ds, "image_volumes"):
                if f.fmt == "geojson" and cache.state(f) != "missing":
                    plan.polygons[f.tag] = f
            plan.expression = _expression_candidates(cache, ds)
            datasets.append(plan)
            claimed.add(ds)

    for tax in taxonomies.values():
        emb = usable(tax.name, "cell_2d_embedding_coordinates")
        if not emb:
            continue
        cell_ds = next((v for k, v in EMBEDDING_CELL_DATASETS.items() if tax.name.startswith(k)), None)
        if cell_ds and cell_ds in meta and usable(cell_ds, "cell_metadata"):
            plan = UnitPlan("umap", cell_ds, "embedding", taxonomy=tax.name)
            for tag in ("cell_metadata", "donor", "library", "value_sets", "gene"):
                if usable(cell_ds, tag):
                    plan.files[tag] = meta[cell_ds][tag]
            plan.expression = _expression_candidates(cache, cell_ds)
        else:
            if cell_ds:
                log.info("%s: its UMAP cells belong to %s, which the cache does not hold; the UMAP is prepared "
                         "without cell metadata or expression", tax.name, cell_ds)
            plan = UnitPlan("umap", tax.name, "embedding", taxonomy=tax.name)
            tables, expression_datasets = next((v for k, v in EMBEDDING_CELL_TABLES.items()
                                                if tax.name.startswith(k)), ((), ()))
            for table_ds in tables:
                if table_ds in meta and usable(table_ds, "cell_metadata"):
                    plan.files[f"cell_metadata:{table_ds}"] = meta[table_ds]["cell_metadata"]
                    plan.cell_tables.append(table_ds)
                    for tag in ("value_sets", "gene"):
                        if usable(table_ds, tag):
                            plan.files[f"{tag}:{table_ds}"] = meta[table_ds][tag]
            if plan.cell_tables:
                for expr_ds in expression_datasets:
                    plan.expression += _expression_candidates(cache, expr_ds)
        plan.files["embedding"] = emb
        for tag in sorted(meta[tax.name]):  # per-neighborhood UMAPs: <neighborhood>_cell_2d_embedding_coordinates
            if tag.endswith(NEIGHBORHOOD_EMBEDDING_SUFFIX) and usable(tax.name, tag):
                plan.files[f"embedding:{tag[:-len(NEIGHBORHOOD_EMBEDDING_SUFFIX)]}"] = meta[tax.name][tag]
        if usable(tax.name, "cell_to_cluster_membership"):
            plan.files["cell_to_cluster_membership"] = meta[tax.name]["cell_to_cluster_membership"]
        datasets.append(plan)
        claimed.add(plan.name)

    for ds in names:
        f = usable(ds, "cell_metadata")
        if ds in claimed or not f:  # a truncated table is planned too: it is reported below, not left out
            continue
        try:
            header = set(csv_header(cache.path(f)))
        except TableError as exc:
            datasets.append(UnitPlan("umap", ds, "cell_metadata", files={"cell_metadata": f}, problems=[str(exc)]))
            continue
        # x, y, cluster_alias without z: a UMAP (WMB-10X). Mouse MERFISH tables also have x, y, cluster_alias, but
        # with z. A table with some of them and no z is a UMAP table missing a column: it is planned, so that its
        # builder fails naming the file and the column instead of the dataset being left out without a word.
        if header & set(UMAP_COLUMNS) and "z" not in header:
            plan = UnitPlan("umap", ds, "cell_metadata", files={"cell_metadata": f})
            for tag in ("value_sets", "gene"):
                if usable(ds, tag):
                    plan.files[tag] = meta[ds][tag]
            plan.expression = _expression_candidates(cache, ds)
            datasets.append(plan)
    for plan in [*taxonomies.values(), *datasets]:
        for f in plan.sources():
            if cache.state(f) == "truncated":
                plan.problems.append(cache.problem(f))
    return taxonomies, datasets


def _expression_candidates(cache: _Cache, dataset: str) -> list[ManifestFile]:
    """log2 h5ad files a dataset's cells may name: those of the dataset and of datasets named ``<dataset>*``
    (WMB-10X -> WMB-10Xv2, WMB-10Xv3, WMB-10XMulti), if downloaded (a truncated one is kept, to be reported)."""
    out = []
    for ds in cache.manifest.datasets():
        if ds == dataset or ds.startswith(dataset):
            for f in cache.manifest.files(ds, "expression_matrices"):
                if f.variant == "log2" and f.fmt == "h5ad" and cache.state(f) != "missing":
                    out.append(f)
    return out


def _choose_taxonomy(plan: UnitPlan, taxonomies: dict[str, UnitPlan], cache: _Cache,
                     old_entry: dict | None, own_sig: str) -> str | None:
    if plan.taxonomy:
        return plan.taxonomy if plan.taxonomy in taxonomies else None
    if old_entry and old_entry.get("own_signature") == own_sig and old_entry.get("taxonomy") in taxonomies:
        return old_entry["taxonomy"]
    for ds_prefix, tax_prefix in KNOWN_TAXONOMY:
        if plan.name.startswith(ds_prefix):
            match = sorted(t for t in taxonomies if t.startswith(tax_prefix))
            if match:
                return match[-1]
    if not taxonomies:
        return None
    # Score by cluster aliases found in each taxonomy.
    f = plan.files.get("cell_to_cluster_membership") or plan.files.get("cell_metadata")
    if f is None or cache.state(f) != "ok":
        return None
    try:
        aliases = set(normalize_aliases(pd.unique(read_csv(cache.path(f), {"cluster_alias": "str"})
                                                  .get("cluster_alias", pd.Series([], dtype=object)))))
    except TableError:
        return None
    best, best_n = None, 0
    for name, tax in taxonomies.items():
        tf = tax.files.get("cluster") or tax.files["cluster_to_cluster_annotation_membership"]
        tax_aliases = set(normalize_aliases(read_csv(cache.path(tf), {"cluster_alias": "str"})["cluster_alias"]))
        n = len(aliases & tax_aliases)
        if n > best_n:
            best, best_n = name, n
    return best


# ------------------------------------------------------------------------------------------------ cell tables
@dataclass
class CellTable:
    """A dataset's cells before they are written: one row per cell, in any order."""

    #: cell_label (Arrow ``string``), x, y, cluster_alias (object, one shared ``str`` per alias; "" = unmapped)
    #: [+ spatial and extra columns; text as ``category``]
    cells: pd.DataFrame
    categorical: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # extra col -> cats, colors
    bools: list[str] = field(default_factory=list)
    #: Numeric measurement columns of the release's cell tables (``umi_count``, ``total_counts``...), stored with
    #: their source values and dtype (int64, or float64 with NaN where a cell has none).
    numeric: list[str] = field(default_factory=list)
    sections: pd.DataFrame | None = None  # spatial: section metadata in atlas order
    species: str | None = None
    platform: str | None = None
    polygons: dict[str, dict] = field(default_factory=dict)
    gene_symbols: dict[str, str] = field(default_factory=dict)
    expression_files: list[ManifestFile] = field(default_factory=list)
    expression_problems: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    #: Other 2-D embeddings of some of the cells (a neighborhood's UMAP): name -> ``row, x, y`` (``row``: the cell's
    #: row in ``cells``).
    embeddings: dict[str, pd.DataFrame] = field(default_factory=dict)


def _dedupe(df: pd.DataFrame, path: Path, key: str) -> pd.DataFrame:
    """A small table (sections) without the later rows of a repeated ``key``, with a warning naming ``path``; cell
    tables are deduplicated by Arrow hashing instead (:func:`_first_rows`)."""
    dup = df[key].duplicated()
    if dup.any():
        log.warning("%s: %d repeated %s values; the first row of each is used", path, int(dup.sum()), key)
        df = df[~dup]
    return df


def _species_from_name(name: str) -> str | None:
    parts = name.split("-")
    for part in parts:
        for prefix, species in DONOR_PREFIX_SPECIES:
            if part.startswith(prefix) and part[len(prefix):len(prefix) + 1].isdigit():
                return species
    if "WMB" in name or "mouse" in name.lower():
        return "Mouse"
    return None


def _platform_from_name(name: str) -> str:
    for p in ("MERSCOPE", "Xenium"):
        if p.lower() in name.lower():
            return p
    return "10x"


def _gene_symbols(cache: _Cache, f: ManifestFile | None) -> dict[str, str]:
    if f is None:
        return {}
    genes = read_csv(cache.path(f), {"gene_identifier": "str", "gene_symbol": "str"},
                     required=["gene_identifier", "gene_symbol"])
    return dict(zip(genes["gene_identifier"], genes["gene_symbol"]))


def _arrow_labels(labels) -> pa.Array:
    """Cell labels (a Series or array of ``str``, Arrow-backed or not) as one Arrow ``string`` array."""
    if not isinstance(labels, (pa.Array, pa.ChunkedArray)):
        labels = pa.array(labels, type=pa.string())
    return labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels


def _cluster_aliases(cache: _Cache, f: ManifestFile | None, labels) -> np.ndarray:
    """The normalized ``cluster_alias`` of each cell of ``labels`` in ``cell_to_cluster_membership`` (the first
    row of a repeated label; ``""`` for a cell the table lacks or leaves empty): an object array whose cells share
    one string per alias. The join is by Arrow hashing and each distinct alias is normalized once, so millions of
    cells cost no Python string each."""
    labels = _arrow_labels(labels)
    if f is None:
        return np.full(len(labels), "", dtype=object)
    path = cache.path(f)
    mem = read_arrow(path, {"cell_label": "str", "cluster_alias": "category"}, required=["cell_label", "cluster_alias"])
    mem_labels, alias = column_array(mem, "cell_label"), column_array(mem, "cluster_alias")
    del mem
    _first_rows(mem_labels, path)  # a warning when a label is repeated; positions_in takes its first row
    rows = positions_in(labels, mem_labels)
    del mem_labels
    release_free_memory()
    aliases = np.append(normalize_aliases(alias.dictionary.to_numpy(zero_copy_only=False)), "").astype(object)
    codes = np.full(len(rows), len(aliases) - 1, dtype=np.int64)
    found = rows >= 0
    codes[found] = alias.indices.to_numpy(zero_copy_only=False)[rows[found]]
    return aliases[codes]


def _distinct_pairs(first: pd.Series | None, second: pd.Series) -> list[tuple[str, str]]:
    """The distinct ``(first, second)`` text pairs of two cell columns, in order of first appearance (``first``
    None: ``""`` for it; a missing value reads ``""``). The columns' category codes are combined into one int64 key
    a row, so millions of cells cost no text and no DataFrame deduplication each."""
    columns = [c.array if isinstance(c.dtype, pd.CategoricalDtype) else pd.Categorical(c)
               for c in (first, second) if c is not None]
    texts = [np.append(np.asarray(c.categories, dtype=object), "") for c in columns]  # code -1: the last, ""
    key = np.zeros(len(second), dtype=np.int64)
    for column, text in zip(columns, texts):
        codes = column.codes.astype(np.int64)
        codes[codes < 0] = len(text) - 1
        key *= len(text)
        key += codes
        del codes
    keys, at = np.unique(key, return_index=True)
    del key
    keys = keys[np.argsort(at)]
    if first is None:
        return [("", texts[0][k]) for k in keys]
    return [(texts[0][k // len(texts[1])], texts[1][k % len(texts[1])]) for k in keys]


def _expression_files(cache: _Cache, plan: UnitPlan, cells: pd.DataFrame, table: CellTable) -> None:
    """The log2 h5ad files of the dataset (its own or ``<dataset>*`` ones) that its cells name through
    ``dataset_label``/``feature_matrix_label``; all of them if the cells name none of the dataset's own (e.g.
    aligned 10X cells whose labels point at per-species matrices)."""
    files: list[ManifestFile] = []
    if "feature_matrix_label" in cells:
        # the distinct pairs first (found on the columns' codes), then the few of them named
        pairs = _distinct_pairs(cells["dataset_label"] if "dataset_label" in cells else None,
                                cells["feature_matrix_label"])
        pairs = dict.fromkeys((dsl or plan.name, fml) for dsl, fml in pairs if fml)
        files = []
        for dsl, fml in pairs:
            try:
                f = cache.manifest.file(dsl, "expression_matrices", fml, "log2")
            except KeyError:
                f = next((c for c in plan.expression if c.tag == fml), None)
                if f is None:
                    log.info("%s: cells name expression matrix %s/%s, which the manifest does not list",
                             plan.name, dsl, fml)
                    continue
            files.append(f)
        own = [f for f in files if f.dataset.startswith(plan.name)
               or (plan.cell_tables and any(f.relative_path == c.relative_path for c in plan.expression))]
        if len(own) < len(files):
            log.info("%s: cells also name expression matrices of other datasets (%s); only the dataset's own are "
                     "used", plan.name, ", ".join(sorted({f.dataset for f in files} - {f.dataset for f in own})))
        files = own
    if not files:
        files = list(plan.expression)
    for f in files:
        state = cache.state(f)
        if state == "ok":
            table.expression_files.append(f)
        elif state == "missing":
            log.info("%s: expression matrix %s is not downloaded; its cells get NaN gene values", plan.name,
                     f.relative_path)
        else:
            table.expression_problems.append(cache.problem(f))


def _cells_spatial(cache: _Cache, plan: UnitPlan) -> CellTable:
    """The cells of a spatial dataset (1-1.5 M in a release's MERSCOPE or Xenium set): ``cell_metadata`` inner-joined
    with ``slab_plane_coordinates`` by ``cell_label``, in ``cell_metadata`` order, the first row of a repeated label.
    Labels stay Arrow strings, text columns are categorical and every join is by Arrow hashing into row positions,
    so the table costs tens of bytes a cell, not a Python string each."""
    f = plan.files
    p_cells = cache.path(f["cell_metadata"])
    text = ("brain_section_label", "feature_matrix_label", "dataset_label")
    cm = read_arrow(p_cells, {"cell_label": "str", **{col: "category" for col in text}, "qc_pass": "category"},
                    required=["cell_label", "brain_section_label"])
    cm_labels = column_array(cm, "cell_label")
    first = _first_rows(cm_labels, p_cells)
    p_coords = cache.path(f["slab_plane_coordinates"])
    coords = read_arrow(p_coords, {"cell_label": "str", "slab_plane_label": "category", "x_slab_mm": "float",
                                   "y_slab_mm": "float"},
                        required=["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"])
    coord_labels = column_array(coords, "cell_label")
    n_coords = int(_first_rows(coord_labels, p_coords).sum())
    at = positions_in(cm_labels, coord_labels)  # each cell's coordinate row (the first of a repeated label), or -1
    del coord_labels
    rows = np.flatnonzero(first & (at >= 0))  # the cells with coordinates, in cell_metadata order
    at = at[rows]
    n_cm = int(first.sum())
    del first
    if n_cm > len(rows):
        log.info("%s: %d of %d cells have no slab-plane coordinates and are left out", plan.name, n_cm - len(rows),
                 n_cm)
    if n_coords > len(rows):
        log.info("%s: %d coordinate rows name cells absent from cell_metadata; ignored", plan.name,
                 n_coords - len(rows))
    x, y = (column_array(coords, c).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)[at]
            for c in ("x_slab_mm", "y_slab_mm"))
    bad_xy = ~(np.isfinite(x) & np.isfinite(y))
    if bad_xy.any():
        log.warning("%s: %d cells with empty or non-numeric slab coordinates left out", p_coords, int(bad_xy.sum()))
        rows, at, x, y = rows[~bad_xy], at[~bad_xy], x[~bad_xy], y[~bad_xy]
    del bad_xy
    coord_plane = _dictionary_categorical(column_array(coords, "slab_plane_label"), at)
    del coords, at
    labels = pc.take(cm_labels, pa.array(rows), memory_pool=pa.system_memory_pool())
    del cm_labels
    cells = pd.DataFrame({"cell_label": pd.arrays.ArrowExtensionArray(labels)})
    for col in text:
        if col in cm.column_names:
            cells[col] = _dictionary_categorical(column_array(cm, col), rows)
    if "qc_pass" in cm.column_names:
        cells["qc_pass"] = bool_values(p_cells, "qc_pass", column_array(cm, "qc_pass"))[rows]
    del cm, rows
    release_free_memory()  # the reader's blocks
    cells["x"], cells["y"] = x, y
    del x, y
    cells["brain_section_label"] = cells["brain_section_label"].cat.remove_unused_categories()

    # Sections in atlas order: slab plane order, then section ordinal.
    spec_cols = {"brain_section_label": "str", "slab_plane_label": "str", "slab_plane_order": "str",
                 "slab_plane_ordinal": "str", "brain_section_ordinal": "str", "section_set_label": "str",
                 "brain_slab_label": "str", "hemisphere": "str", "donor_label": "str",
                 "brain_section_barcode": "str"}
    if "specimen_metadata" in f:
        p_spec = cache.path(f["specimen_metadata"])
        spec = _dedupe(read_csv(p_spec, spec_cols, required=["brain_section_label"]), p_spec, "brain_section_label")
    else:
        log.warning("%s: no specimen_metadata.csv; sections ordered by label", plan.name)
        spec = pd.DataFrame({"brain_section_label": pd.Series([], dtype=object)})
    section = cells["brain_section_label"].array  # a Categorical: each section's text once
    present = pd.DataFrame({"brain_section_label": np.asarray(pd.unique(section), dtype=object)})
    sec = present.merge(spec, on="brain_section_label", how="left")
    for col in spec_cols:
        if col not in sec:
            sec[col] = ""
        sec[col] = sec[col].fillna("").astype(object)
    no_plane = sec["slab_plane_label"] == ""
    if no_plane.any():
        plane_mode = _most_common(section, coord_plane)
        sec.loc[no_plane, "slab_plane_label"] = sec.loc[no_plane, "brain_section_label"].map(plane_mode)
    for col in ("slab_plane_order", "slab_plane_ordinal", "brain_section_ordinal"):
        sec[col] = pd.to_numeric(sec[col], errors="coerce")
    plane_rank = sec.groupby("slab_plane_label")["slab_plane_order"].min()
    plane_rank = plane_rank.fillna(sec.groupby("slab_plane_label")["slab_plane_ordinal"].min())
    sec["_plane_rank"] = sec["slab_plane_label"].map(plane_rank).fillna(np.inf)
    sec = sec.sort_values(["_plane_rank", "slab_plane_label", "brain_section_ordinal", "brain_section_label"],
                          na_position="last").drop(columns="_plane_rank").reset_index(drop=True)
    section_plane = pd.Series(sec["slab_plane_label"].to_numpy(), index=sec["brain_section_label"].to_numpy())
    plane = _categorical_of(section.codes, section_plane.reindex(section.categories).to_numpy(dtype=object))
    cells["slab_plane_label"] = plane
    differ = int((~_same_values(plane, coord_plane)).sum())
    if differ:
        log.warning("%s: %d cells have coordinates in another slab plane than their section's (specimen_metadata); "
                    "they are drawn in their section's plane", plan.name, differ)
    del section, plane, coord_plane

    # Regions.
    value_sets = read_value_sets(cache.path(f["value_sets"]) if "value_sets" in f else None)
    if "cell_anatomical_annotations" in f:
        p_ann = cache.path(f["cell_anatomical_annotations"])
        ann = read_arrow(p_ann, {"cell_label": "str", "parcellation_term_symbol": "category"},
                         required=["cell_label", "parcellation_term_symbol"])
        ann_labels = column_array(ann, "cell_label")
        _first_rows(ann_labels, p_ann)
        at = positions_in(labels, ann_labels)  # a cell without an annotation row is in the default region
        del ann_labels
        cells["region"] = _dictionary_categorical(column_array(ann, "parcellation_term_symbol"), at, DEFAULT_REGION)
        del ann, at
        release_free_memory()
    else:
        cells["region"] = pd.Categorical.from_codes(np.zeros(len(cells), dtype=np.int8), [DEFAULT_REGION])
    vs = value_sets.get("parcellation_term_symbol")
    first = []
    if vs is None or DEFAULT_REGION not in set(vs["label"]):
        first = [(DEFAULT_REGION, DEFAULT_REGION_COLOR)]
    cats, colors = categories_with_colors(pd.unique(cells["region"]), vs, first=first)

    cells["cluster_alias"] = _cluster_aliases(cache, f.get("cell_to_cluster_membership"), labels)
    del labels
    table = CellTable(cells=cells, categorical={"region": (cats, colors)}, sections=sec,
                      platform=_platform_from_name(plan.name), bools=["qc_pass"] if "qc_pass" in cells else [])
    if "cell_supplemental_metadata" in f:
        table.numeric = _join_numeric(cells, cache.path(f["cell_supplemental_metadata"]), set(cells.columns))
    table.species = _species_from_donor(cache, f.get("donor")) or _species_from_name(plan.name)
    region_color = dict(zip(cats, colors))
    for plane, pf in plan.polygons.items():
        if cache.state(pf) != "ok":
            continue
        try:
            table.polygons[plane] = _normalize_polygons(json.loads(cache.path(pf).read_text()), region_color,
                                                        cache.path(pf))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            log.warning("%s: not a readable GeoJSON (%s); plane %s drawn without region outlines",
                        cache.path(pf), exc, plane)
    table.gene_symbols = _gene_symbols(cache, f.get("gene"))
    _expression_files(cache, plan, cells, table)
    return table


def _species_from_donor(cache: _Cache, f: ManifestFile | None) -> str | None:
    if f is None:
        return None
    try:
        donor = read_csv(cache.path(f), {"species_genus": "str", "donor_species": "str"})
    except TableError as exc:
        log.info("%s", exc)
        return None
    for col in ("species_genus", "donor_species"):
        if col in donor and len(donor):
            values = [v for v in pd.unique(donor[col]) if v]
            if len(values) == 1:
                return _canonical_species(values[0])
    return None


def _canonical_species(value: str) -> str:
    text = value.strip()
    low = text.lower()
    for name, keys in (("Human", ("human", "homo")), ("Macaque", ("macaque", "macaca")),
                       ("Marmoset", ("marmoset", "callithrix")), ("Mouse", ("mouse", "mus"))):
        if any(low.startswith(k) for k in keys):
            return name
    return text


def _normalize_polygons(data: dict, colors: dict[str, str], path: Path) -> dict:
    """A GeoJSON FeatureCollection of polygonal features with ``properties.label`` and ``properties.color``.

    GeometryCollections of polygons become MultiPolygons; non-polygonal parts are dropped with a log line.
    """
    if data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    elif data.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        data = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": data}]}
    features = []
    for feat in data.get("features") or []:
        props = dict(feat.get("properties") or {})
        label = props.get("label") or props.get("name") or props.get("parcellation_term_symbol") or ""
        geom = _polygonal(feat.get("geometry") or {})
        if geom is None:
            log.info("%s: feature %r has no polygon geometry; skipped", path, label)
            continue
        props["label"] = label
        props["color"] = colors.get(label) or normalize_color(props.get("color")) or "#808080"
        features.append({"type": "Feature", "properties": props, "geometry": geom})
    return {"type": "FeatureCollection", "features": features}


def _polygonal(geom: dict) -> dict | None:
    kind = geom.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        return {"type": kind, "coordinates": geom.get("coordinates") or []}
    if kind == "GeometryCollection":
        polys = []
        for g in geom.get("geometries") or []:
            sub = _polygonal(g)
            if sub is None:
                continue
            polys += [sub["coordinates"]] if sub["type"] == "Polygon" else sub["coordinates"]
        return {"type": "MultiPolygon", "coordinates": polys} if polys else None
    return None


def _read_embedding(path: Path) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """``(cell labels, x, y)`` of a 2-D embedding table (``cell_label, x, y``), the first row of a repeated label;
    labels stay in Arrow buffers, coordinates float64 as in the source (NaN when empty)."""
    table = read_arrow(path, {"cell_label": "str", "x": "float", "y": "float"}, required=["cell_label", "x", "y"])
    labels = column_array(table, "cell_label")
    x, y = (column_array(table, c).to_numpy(zero_copy_only=False).astype(np.float64, copy=False) for c in ("x", "y"))
    del table
    first = _first_rows(labels, path)
    if not first.all():
        labels, x, y = pc.filter(labels, pa.array(first), memory_pool=pa.system_memory_pool()), x[first], y[first]
    release_free_memory()  # the reader's blocks
    return labels, x, y


def _cells_embedding(cache: _Cache, plan: UnitPlan) -> CellTable:
    f = plan.files
    p_emb = cache.path(f["embedding"])
    categorical: dict[str, tuple[list[str], list[str]]] = {}
    table = CellTable(cells=pd.DataFrame(), platform="10x")
    if "cell_metadata" in f:
        # The aligned basal ganglia 10X (2 M nuclei): the UMAP's cells joined to their cell_metadata rows by Arrow
        # hashing, labels Arrow strings and text columns categorical, so the cells cost no Python string each.
        emb_labels, x, y = _read_embedding(p_emb)
        p_cm = cache.path(f["cell_metadata"])
        text = ("donor_label", "library_label", "feature_matrix_label", "dataset_label")
        cm = read_arrow(p_cm, {"cell_label": "str", **{col: "category" for col in text}}, required=["cell_label"])
        cm_labels = column_array(cm, "cell_label")
        _first_rows(cm_labels, p_cm)
        at = positions_in(emb_labels, cm_labels)  # each UMAP cell's row (the first of a repeated label), or -1
        del cm_labels
        n_emb = len(emb_labels)
        found = at >= 0
        if found.all():
            labels = emb_labels
        else:
            labels, x, y, at = pc.filter(emb_labels, pa.array(found), memory_pool=pa.system_memory_pool()), \
                x[found], y[found], at[found]
        del emb_labels, found
        cells = pd.DataFrame({"cell_label": pd.arrays.ArrowExtensionArray(labels), "x": x, "y": y})
        del x, y
        for col in text:
            if col in cm.column_names:
                cells[col] = _dictionary_categorical(column_array(cm, col), at)
        del cm, at
        release_free_memory()  # the reader's blocks
        table.numeric = _join_numeric(cells, p_cm, set(cells.columns))
        if len(cells) < n_emb:
            log.info("%s: %d of %d UMAP cells are absent from %s and left out", plan.name, n_emb - len(cells),
                     n_emb, p_cm)
        value_sets = read_value_sets(cache.path(f["value_sets"]) if "value_sets" in f else None)
        species = None
        if "donor" in f and "donor_label" in cells:
            donor = read_csv(cache.path(f["donor"]), {"donor_label": "str", "species_genus": "str",
                                                      "donor_species": "str"}, required=["donor_label"])
            col = "species_genus" if "species_genus" in donor else ("donor_species" if "donor_species" in donor else None)
            if col:
                # a repeated donor: its first row
                donor_species = dict(zip(donor["donor_label"][::-1], donor[col][::-1]))
                species = _map_categorical(cells["donor_label"].array,
                                           {k: _canonical_species(v) if v else "" for k, v in donor_species.items()},
                                           "unknown")
        if species is None:
            name_species = _species_from_name(plan.name)
            if name_species:
                table.species = name_species
        else:
            cells["species"] = species
            present = list(pd.unique(species))  # in order of appearance
            vs = value_sets.get("species_genus", value_sets.get("species"))
            order = [(s, None) for s in SPECIES_ORDER if s in present] if vs is None else []
            categorical["species"] = categories_with_colors(present, vs, first=order)
            uniq = [s for s in present if s != "unknown"]
            table.species = uniq[0] if len(uniq) == 1 else None
        if "library" in f and "library_label" in cells:
            lib = read_csv(cache.path(f["library"]), {"library_label": "str", "region_of_interest_label": "str"},
                           required=["library_label"])
            if "region_of_interest_label" in lib:
                lib = lib.drop_duplicates("library_label")
                cells["region_of_interest_label"] = _map_categorical(
                    cells["library_label"].array,
                    dict(zip(lib["library_label"], lib["region_of_interest_label"])), "unknown")
                categorical["region_of_interest_label"] = categories_with_colors(
                    pd.unique(cells["region_of_interest_label"]), value_sets.get("region_of_interest_label"))
        table.gene_symbols = _gene_symbols(cache, f.get("gene"))
    else:
        # A taxonomy's own UMAP (the consensus mouse: 7.65 M cells): labels stay Arrow strings and every join is by
        # Arrow hashing into row positions, so the cell tables cost tens of bytes a cell, not a Python string each.
        labels, x, y = _read_embedding(p_emb)
        cells = pd.DataFrame({"cell_label": pd.arrays.ArrowExtensionArray(labels), "x": x, "y": y})
        del x, y
        if plan.cell_tables:
            _join_cell_tables(cache, plan, labels, cells, table, categorical)
        else:
            table.species = _species_from_name(plan.name)
    cells["cluster_alias"] = _cluster_aliases(cache, f.get("cell_to_cluster_membership"), labels)
    table.cells = cells
    table.categorical = categorical
    table.embeddings = _neighborhood_embeddings(cache, plan, labels)
    del labels
    if "cell_metadata" in f or plan.cell_tables:
        _expression_files(cache, plan, cells, table)
    return table


def _neighborhood_embeddings(cache: _Cache, plan: UnitPlan, labels: pa.Array) -> dict[str, pd.DataFrame]:
    """The plan's per-neighborhood UMAP tables (``embedding:<name>`` files) as ``row, x, y`` (``row``: the cell's
    position in ``labels``, the dataset's cells), each restricted to the dataset's cells with finite coordinates;
    a cell listed by several tables stays in the first (by name) only, so that each embedding's cells can be one
    contiguous row range of the store."""
    out: dict[str, pd.DataFrame] = {}
    taken = np.zeros(len(labels), dtype=bool)
    for role in sorted(r for r in plan.files if r.startswith("embedding:")):
        name = role.split(":", 1)[1]
        path = cache.path(plan.files[role])
        own, x, y = _read_embedding(path)
        rows = positions_in(own, labels)
        del own
        release_free_memory()
        keep = (rows >= 0) & np.isfinite(x) & np.isfinite(y)
        if not keep.all():
            log.info("%s: %d of %d cells of the %s UMAP are not cells of the dataset (or lack coordinates) and "
                     "are left out", plan.name, int((~keep).sum()), len(keep), name)
        rows, x, y = rows[keep], x[keep], y[keep]
        twice = taken[rows]
        if twice.any():
            log.warning("%s: %d cells of the %s UMAP are in an earlier neighborhood's UMAP too; they stay there",
                        plan.name, int(twice.sum()), name)
            rows, x, y = rows[~twice], x[~twice], y[~twice]
        taken[rows] = True
        if len(rows):
            out[name] = pd.DataFrame({"row": rows, "x": x, "y": y})
    return out


def _join_numeric(cells: pd.DataFrame, path: Path, taken: set[str]) -> list[str]:
    """Add the numeric measurement columns of the cell table at ``path`` (:func:`data_layer.tables.
    read_numeric_columns`) to ``cells`` by ``cell_label`` (joined by Arrow hashing, the first row of a repeated
    label), in place; returns their names. A cell absent from the table gets NaN (its column is then float64; an
    int64 column keeps its dtype when every cell has a value)."""
    try:
        found = read_numeric_columns(path, skip=taken)
    except TableError as exc:
        log.warning("%s; its numeric columns are left out", exc)
        return []
    labels = found.pop("cell_label")
    first = first_rows(labels)
    if not first.all():
        log.warning("%s: %d duplicate cell labels; the first row of each is used", path, int((~first).sum()))
    del first
    rows = positions_in(_arrow_labels(cells["cell_label"]), labels)  # the first row of a repeated label
    del labels
    absent = rows < 0
    names = []
    for name, values in found.items():
        if absent.any():
            column = np.full(len(rows), np.nan)
            column[~absent] = values[rows[~absent]]
        else:
            column = values[rows]
        cells[name] = column
        names.append(name)
    if absent.any() and names:
        log.info("%s: %d cells have no row; their %s are NaN", path, int(absent.sum()), ", ".join(names))
    return names


def _join_cell_tables(cache: _Cache, plan: UnitPlan, labels: pa.Array, cells: pd.DataFrame, table: CellTable,
                      categorical: dict[str, tuple[list[str], list[str]]]) -> None:
    """Add ``dataset_label`` / ``feature_matrix_label`` from the plan's cell tables and an ``origin_dataset``
    column to the embedding's ``cells`` (``labels``: their cell labels), in place, as categorical columns. Every
    embedding cell is kept: one in no table has ``""`` (no expression) and origin ``unknown``; a cell in several
    tables (or repeated in one) takes the first table's (first) row."""
    n = len(labels)
    part = np.full(n, -1, dtype=np.int64)  # which table holds the cell
    row = np.full(n, -1, dtype=np.int64)  # its row there
    columns: dict[str, list] = {"dataset_label": [], "feature_matrix_label": []}
    repeated = 0
    value_sets: dict = {}
    for k, ds in enumerate(plan.cell_tables):
        path = cache.path(plan.files[f"cell_metadata:{ds}"])
        cm = read_arrow(path, {"cell_label": "str", "dataset_label": "category", "feature_matrix_label": "category"},
                        required=["cell_label", "feature_matrix_label"])
        found = positions_in(labels, column_array(cm, "cell_label"))
        for col in columns:
            columns[col].append(column_array(cm, col) if col in cm.column_names else None)
        del cm
        release_free_memory()
        repeated += int(((part >= 0) & (found >= 0)).sum())
        new = (part < 0) & (found >= 0)
        part[new], row[new] = k, found[new]
        del found, new
        if f"value_sets:{ds}" in plan.files:
            value_sets = {**read_value_sets(cache.path(plan.files[f"value_sets:{ds}"])), **value_sets}
        table.gene_symbols.update(_gene_symbols(cache, plan.files.get(f"gene:{ds}")))
    if repeated:
        log.warning("%s: %d UMAP cells are in more than one of %s; the first table's row is used", plan.name,
                    repeated, ", ".join(plan.cell_tables))
    missing = int((part < 0).sum())
    if missing:
        log.info("%s: %d of %d UMAP cells are in none of %s (no expression)", plan.name, missing, n,
                 ", ".join(plan.cell_tables))
    for col, parts in columns.items():
        if any(p is not None for p in parts):
            cells[col] = _categorical_of_parts(parts, part, row, "")
    origin = [CELL_TABLE_ORIGIN.get(ds, ds) for ds in plan.cell_tables]
    categories = list(dict.fromkeys([*origin, "unknown"]))
    codes = np.append(np.asarray([categories.index(o) for o in origin], dtype=np.int64), categories.index("unknown"))
    cells["origin_dataset"] = pd.Categorical.from_codes(codes[part], categories)
    categorical["origin_dataset"] = categories_with_colors(pd.unique(cells["origin_dataset"]),
                                                           value_sets.get("origin_dataset"))
    table.species = _species_from_name(plan.name)


def _categorical_of_parts(parts: list, part: np.ndarray, row: np.ndarray, missing: str) -> pd.Categorical:
    """Per cell, the value at row ``row`` of the dictionary column ``parts[part]`` (``missing`` where ``part`` is -1
    or that table lacks the column)."""
    position: dict[str, int] = {}
    codes = np.full(len(part), -1, dtype=np.int64)
    for k, column in enumerate(parts):
        if column is None:
            continue
        here = part == k
        mapping = np.asarray([position.setdefault(v, len(position))
                              for v in column.dictionary.to_pylist()], dtype=np.int64)
        codes[here] = mapping[column.indices.to_numpy(zero_copy_only=False)[row[here]]]
    codes[codes < 0] = position.setdefault(missing, len(position))
    categories = list(position)
    return pd.Categorical.from_codes(codes, categories)


def _dictionary_categorical(column: pa.DictionaryArray, rows: np.ndarray | None = None,
                            empty: str | None = None) -> pd.Categorical:
    """A :func:`data_layer.tables.read_arrow` ``category`` column as a pandas Categorical, each distinct value one
    category (``rows``: the rows kept, all when None, -1 for a cell the table has no row for, which reads as an
    empty value; ``empty``: what an empty value reads as)."""
    values = column.dictionary.to_numpy(zero_copy_only=False).astype(object)
    indices = column.indices.to_numpy(zero_copy_only=False)
    if rows is not None:
        absent = rows < 0
        if absent.any():  # the absent rows read an extra last value, ""
            values = np.append(values, "")
            kept = np.full(len(rows), len(values) - 1, dtype=np.int64)
            kept[~absent] = indices[rows[~absent]]
            indices = kept
        else:
            indices = indices[rows]
    if empty is not None:
        values[values == ""] = empty
    return _categorical_of(indices, values)  # a dictionary may repeat a value (one entry per read block)


def _categorical_of(codes: np.ndarray, values: np.ndarray) -> pd.Categorical:
    """The Categorical whose row ``i`` reads ``values[codes[i]]`` (``values``: text, repeats allowed), each distinct
    text one category, in ``values`` order."""
    mapping, categories = pd.factorize(np.asarray(values, dtype=object))
    return pd.Categorical.from_codes(mapping[codes], categories)


def _same_values(a: pd.Categorical, b: pd.Categorical) -> np.ndarray:
    """``(n,)`` bool: where two Categoricals of the same length read the same text (their categories may differ)."""
    b_in_a = pd.Index(a.categories).get_indexer(b.categories)  # -1 where a lacks b's category
    return a.codes == np.where(b.codes >= 0, b_in_a[b.codes], -2)


def _most_common(groups: pd.Categorical, values: pd.Categorical) -> pd.Series:
    """Per category of ``groups`` that has rows, the most common of ``values`` in its rows (the first by text on a
    tie, as ``Series.mode``), indexed by the groups' text."""
    n_values = len(values.categories)
    counts = np.bincount(groups.codes.astype(np.int64) * n_values + values.codes,
                         minlength=len(groups.categories) * n_values).reshape(len(groups.categories), n_values)
    by_text = np.argsort(np.asarray(values.categories, dtype=object), kind="stable")
    best = by_text[counts[:, by_text].argmax(axis=1)]  # argmax: the first maximum, so the first by text
    held = counts.sum(axis=1) > 0
    return pd.Series(np.asarray(values.categories, dtype=object)[best[held]],
                     index=np.asarray(groups.categories, dtype=object)[held])


def _map_categorical(values: pd.Categorical, mapping: dict[str, str], missing: str) -> pd.Categorical:
    """Per row, ``mapping`` of the row's text (``missing`` where ``mapping`` lacks it or gives ``""``), mapping each
    category once."""
    mapped = [mapping.get(c, "") or missing for c in values.categories]
    return _categorical_of(values.codes, np.asarray([*mapped, missing], dtype=object))  # code -1: the last


def _first_rows(labels: pa.Array, path: Path) -> np.ndarray:
    """:func:`data_layer.tables.first_rows` of a table's ``cell_label`` column, with a warning naming ``path`` when
    a label is repeated."""
    first = first_rows(labels)
    if not first.all():
        log.warning("%s: %d repeated cell_label values; the first row of each is used", path, int((~first).sum()))
    return first


def _cells_cell_metadata(cache: _Cache, plan: UnitPlan) -> CellTable:
    """The cells of a ``cell_metadata`` table with UMAP coordinates (WMB-10X: 4 M cells). Labels stay Arrow
    strings and text columns are categorical, so the table costs tens of bytes a cell, not a Python string each."""
    f = plan.files
    p_cm = cache.path(f["cell_metadata"])
    text = ("feature_matrix_label", "dataset_label", "region_of_interest_acronym", "library_method")
    cm = read_arrow(p_cm, {"cell_label": "str", "x": "float", "y": "float", "cluster_alias": "category",
                           **{col: "category" for col in text}},
                    required=["cell_label", *UMAP_COLUMNS])
    labels = column_array(cm, "cell_label")
    x, y = (column_array(cm, c).to_numpy(zero_copy_only=False).astype(np.float64, copy=False) for c in ("x", "y"))
    first = _first_rows(labels, p_cm)
    keep = first & np.isfinite(x) & np.isfinite(y)
    if (first & ~keep).any():
        log.info("%s: %d cells without UMAP coordinates left out", p_cm, int((first & ~keep).sum()))
    rows = None if keep.all() else np.flatnonzero(keep)
    del first, keep
    if rows is not None:
        labels, x, y = pc.take(labels, pa.array(rows), memory_pool=pa.system_memory_pool()), x[rows], y[rows]
    cells = pd.DataFrame({"cell_label": pd.arrays.ArrowExtensionArray(labels), "x": x, "y": y})
    del labels, x, y
    alias = column_array(cm, "cluster_alias")  # each distinct alias normalized once, the cells sharing its string
    indices = alias.indices.to_numpy(zero_copy_only=False)
    cells["cluster_alias"] = normalize_aliases(alias.dictionary.to_numpy(zero_copy_only=False))[
        indices if rows is None else indices[rows]]
    del alias, indices
    value_sets = read_value_sets(cache.path(f["value_sets"]) if "value_sets" in f else None)
    categorical = {}
    for col in text:
        if col in cm.column_names:
            named = col in ("region_of_interest_acronym", "library_method")
            cells[col] = _dictionary_categorical(column_array(cm, col), rows, "unknown" if named else None)
            if named:
                categorical[col] = categories_with_colors(pd.unique(cells[col]), value_sets.get(col))
    del cm
    release_free_memory()  # the reader's blocks
    table = CellTable(cells=cells, categorical=categorical, platform="10x", species=_species_from_name(plan.name))
    table.gene_symbols = _gene_symbols(cache, f.get("gene"))
    _expression_files(cache, plan, cells, table)
    return table


BUILDERS: dict[str, Callable[[_Cache, UnitPlan], CellTable]] = {
    "spatial": _cells_spatial, "embedding": _cells_embedding, "cell_metadata": _cells_cell_metadata,
}


# ------------------------------------------------------------------------------------------------ writing
def numeric_range(values: np.ndarray) -> list[float] | None:
    """Default colour range of a numeric cell column: its 1st to 99th percentile over the cells with a value (a
    few extreme cells do not flatten the rest), its minimum to maximum when those are equal, ``[v, v + 1]`` for a
    column of one value ``v`` (every cell at the low end of the map); None without any value."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    if not low < high:
        low, high = float(finite.min()), float(finite.max())
    if not low < high:
        high = low + 1.0
    return [low, high]


def _positions_of(column: pd.Series, labels: Sequence[str]) -> np.ndarray:
    """``(n,)`` int64: the position in ``labels`` of each row's text of ``column`` (-1 where absent); a categorical
    column's categories are looked up once each, not its rows."""
    index = pd.Index(np.asarray(labels, dtype=object))
    if isinstance(column.dtype, pd.CategoricalDtype):
        at = np.append(index.get_indexer(column.cat.categories), -1)  # code -1 (no value): the last, absent
        return at[column.cat.codes.to_numpy()].astype(np.int64, copy=False)
    return index.get_indexer(column.to_numpy(dtype=object)).astype(np.int64, copy=False)


def write_dataset_unit(folder: Path, plan: UnitPlan, table: CellTable, taxonomy: TaxonomyTables | None, *,
                       memory_limit_bytes: int, expression_dtype: str, progress: bool, cache: _Cache,
                       work_dir: Path | None = None, workers: int | None = None,
                       temp_limit_bytes: int | None = None, scheduler: str | None = None) -> dict:
    """Write one dataset's store folder; returns its catalog entry (without unit/signature fields).

    ``work_dir``: the expression conversion's resumable work folder (see :mod:`data_layer.convert`)."""
    folder.mkdir(parents=True)
    cells = table.cells
    spatial = plan.kind == "spatial"
    meta: dict = {"name": plan.name, "kind": plan.kind, "categorical": {}, "bool": {}, "levels": []}

    # Order: one section's cells are one contiguous row range (slab plane order, then section).
    if spatial:
        sec = table.sections
        section_code = _positions_of(cells["brain_section_label"], sec["brain_section_label"])
        if (section_code < 0).any():
            raise AssertionError(f"{plan.name}: cells of sections absent from the section table")
        order = np.argsort(section_code, kind="stable")
        cells = table.cells = cells.iloc[order].reset_index(drop=True)  # the table's old order can go
        section_code = section_code[order]
    elif table.embeddings:
        # each neighborhood UMAP's cells one contiguous row range (in the embeddings' name order, the others last)
        group = np.full(len(cells), len(table.embeddings), dtype=np.int64)
        for k, emb in enumerate(table.embeddings.values()):
            group[emb["row"].to_numpy()] = k
        order = np.argsort(group, kind="stable")
        cells = table.cells = cells.iloc[order].reset_index(drop=True)  # the table's old order can go
        group = group[order]
        new_row = np.empty(len(order), dtype=np.int64)  # the row each cell moved to
        new_row[order] = np.arange(len(order))
        del order
    n = len(cells)
    labels = _arrow_labels(cells["cell_label"])
    st.write_strings(folder / "cell_label.arrow", labels, "cell_label")
    x = cells["x"].to_numpy(dtype=np.float32)
    y = cells["y"].to_numpy(dtype=np.float32)
    st.save_npy(folder / "x.npy", x)
    st.save_npy(folder / "y.npy", y)
    embeddings = []
    if table.embeddings:
        starts = np.searchsorted(group, np.arange(len(table.embeddings) + 1))
        for k, (name, emb) in enumerate(table.embeddings.items()):
            a, b = int(starts[k]), int(starts[k + 1])
            at = new_row[emb["row"].to_numpy()] - a  # each of the embedding's cells is one of rows a:b
            ex, ey = np.empty(b - a, dtype=np.float32), np.empty(b - a, dtype=np.float32)
            ex[at], ey[at] = emb["x"].to_numpy(dtype=np.float32), emb["y"].to_numpy(dtype=np.float32)
            st.save_npy(folder / f"embedding-{k}-x.npy", ex)
            st.save_npy(folder / f"embedding-{k}-y.npy", ey)
            embeddings.append({"name": name, "row_start": a, "row_stop": b, "n_cells": b - a,
                               "x": f"embedding-{k}-x.npy", "y": f"embedding-{k}-y.npy",
                               "bounds": [float(ex.min()), float(ex.max()), float(ey.min()), float(ey.max())]})
        meta["embeddings"] = embeddings
        table.embeddings, new_row = {}, None
    bounds = [float(np.nanmin(x)), float(np.nanmax(x)), float(np.nanmin(y)), float(np.nanmax(y))] if n else [0.0] * 4

    def save_categorical(col: str, codes: np.ndarray, cats: list[str], colors: list[str]) -> None:
        fname = f"cat-{len(meta['categorical'])}.npy"
        st.save_npy(folder / fname, codes.astype(smallest_int_dtype(len(cats)), copy=False))
        meta["categorical"][col] = {"file": fname, "categories": list(cats), "colors": list(colors)}

    if spatial:
        sec = table.sections.copy()
        counts = np.bincount(section_code, minlength=len(sec))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        sec["n_cells"] = counts.astype(np.int64)
        sec["row_start"] = starts
        sec["row_stop"] = starts + counts
        for name, arr, fn in (("x_min", x, np.minimum), ("x_max", x, np.maximum),
                              ("y_min", y, np.minimum), ("y_max", y, np.maximum)):
            sec[name] = fn.reduceat(arr, starts).astype(np.float64) if n else np.zeros(len(sec))
        planes = list(dict.fromkeys(sec["slab_plane_label"]))
        plane_of_section = pd.Series(np.arange(len(planes)), index=planes)[sec["slab_plane_label"]].to_numpy()
        palette_cats, palette_colors = categories_with_colors([], None, first=[(s, None) for s in sec["brain_section_label"]])
        save_categorical("brain_section_label", section_code, palette_cats, palette_colors)
        plane_cats, plane_colors = categories_with_colors([], None, first=[(p, None) for p in planes])
        save_categorical("slab_plane_label", plane_of_section[section_code] if n else np.zeros(0, np.int64),
                         plane_cats, plane_colors)
        rows = []
        for i, plane in enumerate(planes):
            s = sec[sec["slab_plane_label"] == plane]
            rows.append({"slab_plane_label": plane, "n_sections": len(s), "n_cells": int(s["n_cells"].sum()),
                         "has_polygons": plane in table.polygons,
                         "x_min": float(s["x_min"].min()), "x_max": float(s["x_max"].max()),
                         "y_min": float(s["y_min"].min()), "y_max": float(s["y_max"].max()),
                         "row_start": int(s["row_start"].min()), "row_stop": int(s["row_stop"].max())})
        planes_df = pd.DataFrame(rows, columns=["slab_plane_label", "n_sections", "n_cells", "has_polygons", "x_min",
                                                "x_max", "y_min", "y_max", "row_start", "row_stop"])
        front = ["brain_section_label", "slab_plane_label", "n_cells", "x_min", "x_max", "y_min", "y_max",
                 "row_start", "row_stop"]
        sec = sec[front + [c for c in sec.columns if c not in front]]
        sec.to_parquet(folder / "sections.parquet", index=False)
        planes_df.to_parquet(folder / "slab_planes.parquet", index=False)
        unused = sorted(set(table.polygons) - set(planes))
        if unused:
            log.info("%s: polygons of slab planes without cells ignored: %s", plan.name, ", ".join(unused))
        (folder / "polygons").mkdir()
        meta["polygons"] = {}
        for i, plane in enumerate(planes):
            if plane in table.polygons:
                fname = f"polygons/{i:04d}.json"
                (folder / fname).write_text(json.dumps(table.polygons[plane]))
                meta["polygons"][plane] = fname
        missing_poly = [p for p in planes if p not in table.polygons]
        if missing_poly:
            log.info("%s: %d slab planes have no region polygons (%s)", plan.name, len(missing_poly),
                     ", ".join(missing_poly[:5]))
        n_sections, n_planes = len(sec), len(planes)
    else:
        n_sections = n_planes = 0

    for col, (cats, colors) in table.categorical.items():
        codes = pd.Categorical(cells[col], categories=cats).codes
        if (codes < 0).any():
            raise AssertionError(f"{plan.name}: column {col} has values outside its categories")
        save_categorical(col, codes, cats, colors)
    for col in table.bools:
        fname = f"bool-{len(meta['bool'])}.npy"
        st.save_npy(folder / fname, cells[col].to_numpy(dtype=bool))
        meta["bool"][col] = fname
    meta["numeric"] = {}
    for col in table.numeric:
        values = cells[col].to_numpy()
        fname = f"num-{len(meta['numeric'])}.npy"
        st.save_npy(folder / fname, values)
        meta["numeric"][col] = {"file": fname, "dtype": str(values.dtype), "range": numeric_range(values)}

    # Taxonomy levels.
    cluster_codes = None
    n_clusters = 0
    term_counts = {}
    levels: list[str] = []
    n_unassigned = n_adjacent = 0
    if taxonomy is not None:
        levels = list(taxonomy.levels)
        aliases = cells["cluster_alias"].to_numpy(dtype=object)
        all_codes = taxonomy.cell_codes(aliases, source=plan.name)
        for i, level in enumerate(levels):
            nt = taxonomy.n_terms(i)
            fname = f"level-{i}.npy"
            st.save_npy(folder / fname, all_codes[:, i].astype(smallest_int_dtype(nt + 2)))
            meta["levels"].append({"name": level, "file": fname})
            term_counts[level] = np.bincount(all_codes[:, i], minlength=nt + 2).astype(int).tolist()
        n_clusters = taxonomy.n_terms(len(levels) - 1)
        finest = all_codes[:, -1]
        cluster_codes = np.where(finest < n_clusters, finest, -1).astype(np.int32)
        n_unassigned = int((finest == n_clusters + 1).sum())
        n_adjacent = int((finest == n_clusters).sum())
        del all_codes, aliases, finest
        if n_unassigned:
            log.info("%s: %d of %d cells have no cluster (shown as unassigned)", plan.name, n_unassigned, n)
    elif (cells["cluster_alias"] != "").any():
        log.warning("%s: no taxonomy in the cache matches this dataset's clusters; cells are not coloured by type",
                    plan.name)
    meta["term_counts"] = term_counts

    # Expression. The cell table is no longer needed: free it so the conversion gets the memory.
    errors: list[str] = list(table.expression_problems)
    expr_summary = None
    expression_files = list(table.expression_files)
    table.cells = cells = None
    gc.collect()
    release_free_memory()  # so that the conversion's budget counts what the cell tables still hold, not freed pages
    if expression_files:
        budget = memory_budget(memory_limit_bytes)
        try:
            expr_summary = convert_expression(
                [cache.path(f) for f in expression_files], labels, folder / "expression",
                cluster_codes=cluster_codes, n_clusters=n_clusters, memory_limit_bytes=budget,
                gene_symbols=table.gene_symbols, dtype=expression_dtype, progress=progress, label=plan.name,
                work_dir=work_dir, workers=workers, temp_limit_bytes=temp_limit_bytes, scheduler=scheduler)
        except ExpressionError as exc:
            errors.append(str(exc))
            shutil.rmtree(folder / "expression", ignore_errors=True)
    elif not errors:
        log.info("%s: no expression matrix downloaded; gene colouring unavailable", plan.name)
    meta["bounds"] = bounds
    meta["n_cells"] = n
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    versions = {}
    for f in plan.files.values():
        versions.setdefault(f.kind, f.version)
    for f in expression_files:
        versions.setdefault("expression_matrices", f.version)
    return {
        "kind": plan.kind, "species": table.species, "platform": table.platform, "taxonomy": plan.taxonomy,
        "levels": levels, "n_cells": n, "n_genes": expr_summary.n_genes if expr_summary else 0,
        "n_sections": n_sections, "n_slab_planes": n_planes, "bounds": bounds,
        "n_unassigned": n_unassigned, "n_adjacent": n_adjacent,
        "embeddings": [{k: e[k] for k in ("name", "n_cells", "bounds")} for e in embeddings],
        "expression": expr_summary.__dict__ if expr_summary else None,
        "expression_files": [f.relative_path for f in expression_files],
        "versions": versions, "errors": errors, "complete": not errors,
    }


# ------------------------------------------------------------------------------------------------ orchestration
_RSS_AT_START: list[int] = []
MIN_EXPRESSION_BUDGET = 16 << 20


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def memory_budget(memory_limit_bytes: int) -> int:
    """The part of ``memory_limit_bytes`` not yet used since prepare started (the limit bounds prepare's growth
    over the interpreter's baseline; cell tables of a huge dataset may already hold part of it)."""
    used = _rss() - _RSS_AT_START[-1] if _RSS_AT_START else 0
    budget = memory_limit_bytes - max(0, used)
    if budget < MIN_EXPRESSION_BUDGET:
        log.warning("memory limit %d MB: %d MB are already used by the cell tables; the expression conversion "
                    "gets %d MB (raise --memory-limit)", memory_limit_bytes >> 20, used >> 20,
                    MIN_EXPRESSION_BUDGET >> 20)
        budget = MIN_EXPRESSION_BUDGET
    return budget


def prepare_store(
    cache_dir: str | Path,
    store_dir: str | Path,
    *,
    release: str | None = None,
    datasets: Sequence[str] | None = None,
    memory_limit_bytes: int = 4 << 30,
    progress: bool = False,
    expression_dtype: str = "float32",
    workers: int | None = None,
    temp_limit_bytes: int | None = None,
    scheduler: str | None = None,
) -> PrepareReport:
    """Prepare the ABC cache ``cache_dir`` into the store ``store_dir`` (atomic, incremental).

    Parameters
    ----------
    release
        manifest version to read (default: the newest in the cache).
    datasets
        prepare only these datasets (and the taxonomies they use); the store keeps its other datasets.
    memory_limit_bytes
        bound on the expression conversion's working memory.
    progress
        show tqdm progress bars (the CLI sets it).
    expression_dtype
        ``"float32"`` (``"auto"`` means the same): stored values are the source's (see :mod:`data_layer.expression`).
    workers
        processes converting expression (default: every core this process may use).
    temp_limit_bytes
        bound on the expression conversion's temporary files (default: none; see
        :func:`data_layer.expression.convert_expression`).
    scheduler
        a dask.distributed scheduler address: the expression conversion's tasks run on its workers.

    Returns
    -------
    PrepareReport

    Raises
    ------
    PrepareError
        when the cache has no usable manifest, the store folder is not a store, another prepare is running,
        or (after the store was updated with everything that worked) when some dataset failed.
    """
    t0 = time.perf_counter()
    _RSS_AT_START.append(_rss())
    try:
        return _prepare_store(cache_dir, store_dir, release=release, datasets=datasets,
                              memory_limit_bytes=memory_limit_bytes, progress=progress,
                              expression_dtype=expression_dtype, workers=workers,
                              temp_limit_bytes=temp_limit_bytes, scheduler=scheduler, t0=t0)
    finally:
        _RSS_AT_START.pop()


def _prepare_store(cache_dir, store_dir, *, release, datasets, memory_limit_bytes, progress, expression_dtype,
                   workers, t0, temp_limit_bytes=None, scheduler=None) -> PrepareReport:
    try:
        local = LocalCache(cache_dir, release)
    except ManifestError as exc:
        raise PrepareError(str(exc)) from exc
    cache = _Cache(local)
    store_dir = Path(store_dir)
    if store_dir.exists() and not store_dir.is_dir():
        raise PrepareError(f"{store_dir} is a file, not a store folder")
    if store_dir.is_dir() and not st.is_store(store_dir) and not (store_dir / st.UNITS).is_dir():
        foreign = [p.name for p in store_dir.iterdir() if p.name not in (st.LOCK, st.WORK) and not p.name.startswith(st.TMP_PREFIX)]
        if foreign:
            raise PrepareError(f"{store_dir} exists and is not a store (it holds {', '.join(sorted(foreign)[:3])}); "
                               f"give an empty or new folder")
    report = PrepareReport(store=store_dir, release=local.version)
    redirect = nullcontext()
    if progress:
        from tqdm.contrib.logging import logging_redirect_tqdm

        redirect = logging_redirect_tqdm()
    try:
        with redirect, st.prepare_lock(store_dir):
            old = None
            if st.is_store(store_dir):
                try:
                    old = st.read_catalog(store_dir)
                except st.StoreError as exc:
                    log.warning("%s; every dataset is prepared again", exc)
            st.cleanup_stale(store_dir, old)
            _run(cache, store_dir, old, report, datasets=datasets, memory_limit_bytes=memory_limit_bytes,
                 progress=progress, expression_dtype=expression_dtype, workers=workers,
                 temp_limit_bytes=temp_limit_bytes, scheduler=scheduler)
    except st.StoreError as exc:
        raise PrepareError(str(exc)) from exc
    report.seconds = round(time.perf_counter() - t0, 3)
    if st.is_store(store_dir):
        catalog = st.read_catalog(store_dir)
        report.bytes_read = sum((catalog["datasets"][d].get("expression") or {}).get("bytes_read", 0)
                                for d, status in report.datasets.items()
                                if status.startswith("prepared") and d in catalog["datasets"])
    for line in report.lines():
        log.info("%s", line)
    if report.errors:
        lines = [f"{name}: {e}" for name, errs in report.errors.items() for e in errs]
        raise PrepareError(f"prepare finished with errors ({len(lines)}); the other datasets were prepared:\n  "
                           + "\n  ".join(lines), report)
    return report


def _run(cache: _Cache, store_dir: Path, old: dict | None, report: PrepareReport, *, datasets, memory_limit_bytes,
         progress, expression_dtype, workers, temp_limit_bytes=None, scheduler=None) -> None:
    from tqdm import tqdm

    unknown = cache.cache.unknown_files()
    for p in unknown[:20]:
        log.info("ignored: %s is not listed in the manifest of release %s", p, cache.manifest.version)
    if len(unknown) > 20:
        log.info("ignored: %d more files not listed in the manifest", len(unknown) - 20)
    taxonomies, plans = plan_units(cache)
    if datasets:
        known = {p.name for p in plans}
        wrong = [d for d in datasets if d not in known]
        if wrong:
            raise PrepareError(f"dataset {wrong[0]!r} not found in the cache {cache.cache.root} (release "
                               f"{cache.manifest.version}); it holds: {', '.join(sorted(known)) or 'no dataset'}")
        plans = [p for p in plans if p.name in datasets]
    if not plans and not taxonomies:
        raise PrepareError(f"{cache.cache.root}: release {cache.manifest.version} lists no dataset this viewer "
                           f"reads among the downloaded files (basal ganglia sections, 10X UMAPs, taxonomies)")
    old_ds = (old or {}).get("datasets", {})
    old_tax = (old or {}).get("taxonomies", {})
    tmp = store_dir / f"{st.TMP_PREFIX}{os.getpid()}"
    tmp.mkdir()
    new_units: list[str] = []
    try:
        # Which taxonomy each dataset uses (from the dataset's own sources).
        own_sig = {}
        for plan in plans:
            own_sig[plan.name] = st.signature([cache.record(f) for f in plan.sources()],
                                              {"builder": plan.builder, "expression_layout": EXPRESSION_LAYOUT})
            if plan.taxonomy is None:
                plan.taxonomy = _choose_taxonomy(plan, taxonomies, cache, old_ds.get(plan.name), own_sig[plan.name])
        needed = set(taxonomies) if not datasets else {p.taxonomy for p in plans if p.taxonomy}
        tax_entries: dict[str, dict] = {}
        tax_tables: dict[str, TaxonomyTables] = {}
        bar = tqdm(total=len(needed) + len(plans), desc="prepare", unit=" datasets", disable=not progress)
        for name in [t for t in taxonomies if t in needed]:
            plan = taxonomies[name]
            bar.set_postfix_str(name)
            sig = st.signature([cache.record(f) for f in plan.sources()], {"builder": "taxonomy"})
            prev = old_tax.get(name)
            if plan.problems:
                report.errors[name] = list(plan.problems)
            elif prev and prev.get("signature") == sig and _sound(store_dir, prev):
                tax_entries[name] = prev
                tax_tables[name] = TaxonomyTables.load(store_dir / st.UNITS / prev["unit"])
                report.taxonomies[name] = "unchanged"
            else:
                unit = st.new_unit_name("taxonomy", name, sig)
                try:
                    tables = read_taxonomy(name, {k: cache.path(f) for k, f in plan.files.items()})
                    tables.write(tmp / unit)
                    files = st.unit_files(tmp / unit)
                except TableError as exc:
                    report.errors[name] = [str(exc)]
                else:
                    new_units.append(unit)
                    tax_tables[name] = tables
                    tax_entries[name] = {
                        "unit": unit, "signature": sig, "levels": tables.levels,
                        "n_terms": [tables.n_terms(i) for i in range(len(tables.levels))],
                        "n_clusters": tables.n_terms(len(tables.levels) - 1),
                        "sources": [cache.record(f) for f in plan.sources()],
                        "release": cache.manifest.version, "files": files,
                    }
                    report.taxonomies[name] = "prepared"
            if name in report.errors:
                if prev and _sound(store_dir, prev):
                    tax_entries[name] = prev
                    tax_tables[name] = TaxonomyTables.load(store_dir / st.UNITS / prev["unit"])
                    report.taxonomies[name] = "failed (previous version kept)"
                else:
                    report.taxonomies[name] = "failed"
            bar.update(1)

        ds_entries: dict[str, dict] = {}
        for plan in plans:
            bar.set_postfix_str(plan.name)
            tax_entry = tax_entries.get(plan.taxonomy) if plan.taxonomy else None
            if plan.taxonomy and tax_entry is None:
                report.errors.setdefault(plan.name, []).append(f"its taxonomy {plan.taxonomy} could not be prepared")
            sig = st.signature([], {"own": own_sig[plan.name], "taxonomy": tax_entry["signature"] if tax_entry else None})
            prev = old_ds.get(plan.name)
            prev_ok = prev is not None and _sound(store_dir, prev)
            if plan.name in report.errors:
                pass
            elif plan.problems:
                report.errors[plan.name] = list(plan.problems)
            elif prev_ok and prev.get("signature") == sig and prev.get("complete", True):
                # same sources, same taxonomy; the taxonomy's folder is new if the old one was damaged
                ds_entries[plan.name] = {**prev, "taxonomy_unit": tax_entry["unit"] if tax_entry else None}
                report.datasets[plan.name] = "unchanged"
                bar.update(1)
                continue
            else:
                unit = st.new_unit_name("dataset", plan.name, sig)
                work_dir = st.work_folder(store_dir, plan.name, sig)
                try:
                    table = BUILDERS[plan.builder](cache, plan)
                    entry = write_dataset_unit(tmp / unit, plan, table, tax_tables.get(plan.taxonomy),
                                               memory_limit_bytes=memory_limit_bytes,
                                               expression_dtype=expression_dtype, progress=progress, cache=cache,
                                               work_dir=work_dir, workers=workers,
                                               temp_limit_bytes=temp_limit_bytes, scheduler=scheduler)
                except TableError as exc:
                    report.errors[plan.name] = [str(exc)]
                    shutil.rmtree(tmp / unit, ignore_errors=True)
                else:
                    entry.update({"unit": unit, "signature": sig, "own_signature": own_sig[plan.name],
                                  "taxonomy_unit": tax_entry["unit"] if tax_entry else None,
                                  "sources": [cache.record(f) for f in plan.sources()],
                                  "release": cache.manifest.version,
                                  "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                  "files": st.unit_files(tmp / unit)})
                    if entry["errors"]:
                        report.errors[plan.name] = list(entry["errors"])
                    if not entry["errors"] or not prev_ok:
                        new_units.append(unit)
                        ds_entries[plan.name] = entry
                        report.datasets[plan.name] = ("prepared" if not entry["errors"]
                                                      else "prepared without expression")
                        bar.update(1)
                        continue
                    shutil.rmtree(tmp / unit, ignore_errors=True)
            if prev_ok:
                ds_entries[plan.name] = prev
                report.datasets[plan.name] = "failed (previous version kept)"
            else:
                report.datasets[plan.name] = "failed"
            bar.update(1)
        bar.close()

        # Keep what this run did not touch (other datasets, or datasets no longer in this cache).
        for name, entry in old_ds.items():
            if name not in ds_entries and name not in report.datasets:
                if _sound(store_dir, entry):
                    ds_entries[name] = entry
                    report.datasets[name] = "kept"
                    if not datasets:
                        log.info("%s: not in this cache; the prepared version is kept", name)
        for name, entry in old_tax.items():
            if name not in tax_entries and _sound(store_dir, entry):
                tax_entries[name] = entry
        _link_umaps(ds_entries)
        catalog = {
            "format": st.FORMAT_VERSION,
            "release": cache.manifest.version,
            "cache_dir": str(cache.cache.root.resolve()),
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "datasets": dict(sorted(ds_entries.items(), key=lambda kv: _dataset_rank(kv[0], kv[1]))),
            "taxonomies": tax_entries,
        }
        st.commit(store_dir, tmp, new_units, catalog)
        st.remove_work_folders(store_dir, keep=set())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sound(store_dir: Path, entry: dict) -> bool:
    """True when a prepared unit's folder is present and its files have their recorded sizes (a damaged unit is
    prepared again, not kept)."""
    problems = st.check_unit(store_dir / st.UNITS / entry["unit"], entry.get("files"))
    if problems and (store_dir / st.UNITS / entry["unit"]).is_dir():
        log.warning("%s is damaged (%s); it is prepared again", entry["unit"], "; ".join(problems[:3]))
    return not problems


def _dataset_rank(name: str, entry: dict) -> tuple:
    species = entry.get("species")
    srank = SPECIES_ORDER.index(species) if species in SPECIES_ORDER else len(SPECIES_ORDER)
    return (0 if entry["kind"] == "spatial" else 1, srank if entry["kind"] == "spatial" else 0,
            0 if entry.get("taxonomy", "") and entry.get("taxonomy", "").startswith("HMBA") else 1, name)


def _link_umaps(entries: dict[str, dict]) -> None:
    """Give each spatial dataset the UMAP dataset sharing its taxonomy."""
    umaps = {}
    for name, e in sorted(entries.items()):
        if e["kind"] == "umap" and e.get("taxonomy"):
            umaps.setdefault(e["taxonomy"], name)
    for e in entries.values():
        e["umap_dataset"] = umaps.get(e.get("taxonomy")) if e["kind"] == "spatial" else None
