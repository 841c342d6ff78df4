"""The three basal ganglia spatial datasets (MERSCOPE human and macaque, Xenium marmoset).

Each species has two coronal slab planes (:mod:`.anatomy`, drawn at the species' own size and proportions),
an anterior one (accumbens, ventral pallidum, olfactory tubercle) and a posterior one (globus pallidus,
thalamus, subthalamic nucleus, substantia nigra). As in the release, a human or macaque slab plane is a mosaic
of sections cut from neighbouring blocks of one slab (block ``01``, ``02``...), each slightly off in
registration; a marmoset plane holds serial sections of a whole hemisphere. Cells are placed by tissue
density, typed by the composition of their compartment, given negative-binomial panel counts (saturating
marker levels, a share of non-marker genes per cell type, a decoder's drop-out: see
:func:`.bgmodel.panel_means`), and written in the release's exact tables.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping
from shapely.ops import unary_union

from .anatomy import (REGION_COLORS, REGION_COLUMNS, REGION_DESCRIPTIONS, REGION_IDENTIFIERS, REGION_ORDER,
                      SPECIES_SHAPES, PlaneAnatomy, SpeciesFrame, anterior_plane, posterior_plane)
from .bgmodel import BGModel, assign_clusters, assign_groups, panel_means
from .compositions import COMPOSITIONS
from .counts import log2_cpm, sample_counts
from .genes import EXAMPLE_GENES, GENE_BY_SYMBOL, ensembl_id, ncbi_id
from .h5ad_writer import StreamingH5adWriter, write_h5ad
from .scale import DemoScale
from .util import LABEL_DATE, letters_id, stable_int, stream, uuids, write_csv

log = logging.getLogger(__name__)

SPATIAL_VERSION = "20250630"
#: Negative-binomial shape of the panel counts and the share of detected transcripts a decoder misses, so a
#: marker is detected in most, not all, cells of its type.
PANEL_THETA = 3.0
DROP_OUT = 0.1


@dataclass(frozen=True)
class SpatialSpec:
    """One species' spatial dataset: names, platform, size and where its planes lie."""

    species: str
    donor: str
    platform: str
    scale: float
    origin: tuple[float, float]
    slabs: tuple[tuple[int, int], tuple[int, int]]  # (slab number, slab plane ordinal): anterior, posterior
    layout: str  # "tiles" (blocks of a slab) or "serial" (whole-hemisphere serial sections)
    slab_thickness: float
    segmentation: str
    plane_of_section: str
    platform_gain: float
    geometry_collection: tuple[str, str] | None = None  # (plane kind, region) written as a GeometryCollection
    missing_geojson: str | None = None                  # plane kind without a GeoJSON file
    barcode_base: int = 1_300_000_000
    # number of each block's section within its section set, per plane (the release's labels end in it)
    section_numbers: tuple[tuple[int, ...], tuple[int, ...]] = ((2, 3, 3), (3, 2))

    @property
    def dataset(self) -> str:
        return f"HMBA-{self.platform}-{self.donor}-BG"

    @property
    def tag(self) -> str:
        return f"{self.platform}-{self.donor}-BG"


SPATIAL_SPECS = (
    SpatialSpec("Human", "H22.30.001", "MERSCOPE", SPECIES_SHAPES["Human"].scale, (12.0, 58.0), ((15, 5), (19, 3)),
                "tiles", 4.0, "sis_cellpose_v1", "coronal (caudal to rostral)", 1.0,
                geometry_collection=("posterior", "GP"), barcode_base=1_324_000_000,
                section_numbers=((2, 3, 3), (3, 2))),
    SpatialSpec("Macaque", "QM23.50.001", "MERSCOPE", SPECIES_SHAPES["Macaque"].scale, (38.0, 24.0),
                ((43, 5), (45, 3)), "tiles", 4.0, "sis_cellpose_v1", "coronal (caudal to rostral)", 0.9,
                geometry_collection=("anterior", "VeP"), barcode_base=1_291_800_000,
                section_numbers=((3, 3, 3), (3, 3))),
    SpatialSpec("Marmoset", "CJ23.56.004", "Xenium", SPECIES_SHAPES["Marmoset"].scale, (16.0, 7.0),
                ((42, 4), (43, 5)), "serial", 5.0, "xenium_cell_segmentation_kit_v1", "coronal (rostral to caudal)",
                1.4, missing_geojson="anterior", barcode_base=1_382_000_000),
)

DONORS = {
    "Human": ("NCBITaxon:9606", "Homo sapiens", "Human", "Male", 58, "years"),
    "Macaque": ("NCBITaxon:9544", "Macaca mulatta", "Macaque", "Female", 7, "years"),
    "Marmoset": ("NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Male", 4, "years"),
}


@dataclass
class Section:
    label: str
    barcode: int
    plane_kind: str
    plane_label: str
    plane_ordinal: int
    slab: int
    block: int
    set_ordinal: int
    section_number: int
    cells: int = 0
    extra: dict = field(default_factory=dict)


def _tile_of(u: np.ndarray, v: np.ndarray, n_tiles: int, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Block index of a plane's points when the plane is cut into ``n_tiles`` slanted strips."""
    u0, v0, u1, v1 = bounds
    edges = np.linspace(u0, u1, n_tiles + 1)[1:-1]
    out = np.zeros(len(u), dtype=np.int64)
    for e in edges:
        out += u > e + 0.08 * (v - (v0 + v1) / 2)
    return out


def _sample_points(anat: PlaneAnatomy, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points of the tissue placed by compartment density: (u, v, compartment index)."""
    density = np.array([c.density for c in anat.compartments])
    u0, v0, u1, v1 = anat.bounds
    us, vs, cs = [], [], []
    have = 0
    while have < n:
        m = int((n - have) * 2.0) + 2000
        u = rng.uniform(u0, u1, m)
        v = rng.uniform(v0, v1, m)
        comp = anat.compartment_of(u, v)
        inside = comp >= 0
        keep = inside & (rng.random(m) < np.where(inside, density[np.maximum(comp, 0)], 0.0) / density.max())
        us.append(u[keep])
        vs.append(v[keep])
        cs.append(comp[keep])
        have += int(keep.sum())
    return np.concatenate(us)[:n], np.concatenate(vs)[:n], np.concatenate(cs)[:n]


def _jitter(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, shift: float, scale: float, rot_deg: float,
            centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A section's registration error: small rotation, scaling and shift about ``centre`` (canonical mm)."""
    a = np.deg2rad(rng.normal(0.0, rot_deg))
    s = 1.0 + rng.normal(0.0, scale)
    du, dv = rng.normal(0.0, shift, 2)
    cu, cv = centre
    x, y = u - cu, v - cv
    return cu + s * (np.cos(a) * x - np.sin(a) * y) + du, cv + s * (np.sin(a) * x + np.cos(a) * y) + dv


def _clean(geom):
    """``geom`` on a 0.01 µm grid (what the file's 5 decimals hold), still valid, polygons only."""
    geom = shapely.make_valid(shapely.set_precision(geom, 1e-5))
    parts = [p for p in getattr(geom, "geoms", [geom]) if p.geom_type in ("Polygon", "MultiPolygon")]
    return unary_union(parts) if len(parts) != 1 else parts[0]


def _geojson(spec: SpatialSpec, kind: str, regions_slab: dict) -> dict:
    regions_slab = {k: _clean(g) for k, g in regions_slab.items()}
    features = []
    for label in ["STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"]:
        if label not in regions_slab:
            continue
        geom = regions_slab[label]
        if spec.geometry_collection == (kind, label):
            parts = [p for p in getattr(geom, "geoms", [geom])]
            if label == "GP" and "GPe" in regions_slab:
                # the pallidum drawn as its two segments (the GPi piece keeps the medial medullary lamina)
                gpe = regions_slab["GPe"]
                parts = [gpe, _clean(geom.difference(gpe))]
            geometry = {"type": "GeometryCollection",
                        "geometries": [_rounded(mapping(p)) for p in parts if not p.is_empty]}
        else:
            geometry = _rounded(mapping(geom))
        features.append({"type": "Feature", "properties": {"label": label}, "geometry": geometry})
    return {"type": "FeatureCollection", "features": features}


def _rounded(obj):
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], float):
            return [round(c, 5) for c in obj]
        return [_rounded(x) for x in obj]
    return obj


def write_spatial_dataset(cache: Path, spec: SpatialSpec, model: BGModel, scale: DemoScale, seed: int,
                          bar=None) -> dict:
    """Write one species' spatial dataset into ``cache``; returns a summary (cells, sections, files)."""
    ver = SPATIAL_VERSION
    meta_dir = cache / "metadata" / spec.dataset / ver
    expr_dir = cache / "expression_matrices" / spec.dataset / ver
    image_dir = cache / "image_volumes" / spec.dataset / ver
    rng = stream(seed, "spatial", spec.species)
    anat_rng = stream(seed, "spatial", spec.species, "anatomy")
    warp_rng = stream(seed, "spatial", spec.species, "warp")
    shape = SPECIES_SHAPES[spec.species]
    warp = (warp_rng.normal(0, 0.35) * shape.scale, warp_rng.uniform(0, 6.28),
            warp_rng.normal(0, 0.35) * shape.scale, warp_rng.uniform(0, 6.28))
    label_rng = stream(seed, "spatial", spec.species, "sections")

    cells_per_section, sections_per_plane = scale.spatial_size(spec.species)
    sections: list[Section] = []
    cols: dict[str, list] = {k: [] for k in ("section", "u", "v", "comp", "plane")}
    planes = []
    for p_i, (kind, (slab, plane_ordinal)) in enumerate(zip(("anterior", "posterior"), spec.slabs)):
        anat = (anterior_plane if kind == "anterior" else posterior_plane)(anat_rng, shape)
        origin = (spec.origin[0] + 0.6 * spec.scale * p_i, spec.origin[1] - 0.8 * spec.scale * p_i)
        u0, v0, u1, v1 = anat.bounds
        frame = SpeciesFrame(1.0, origin, warp, (u1 - u0, v1 - v0))
        plane_label = f"{spec.donor}.CX.{slab}.Plane.{plane_ordinal:02d}"
        n_sec = sections_per_plane[p_i]
        planes.append((kind, anat, frame, plane_label, slab, plane_ordinal))
        if spec.layout == "tiles":
            u, v, comp = _sample_points(anat, cells_per_section * n_sec, rng)
            tile = _tile_of(u, v, n_sec, anat.bounds)
            set_ordinal = 8 - plane_ordinal
            numbers = spec.section_numbers[p_i]
            for t in range(n_sec):
                number = numbers[t] if t < len(numbers) else 2 + int(label_rng.integers(0, 2))
                sec = Section(f"{spec.donor}.CX.{slab}.{t + 1:02d}.{set_ordinal:02d}.{number:02d}",
                              spec.barcode_base + int(label_rng.integers(0, 99_999_999)), kind, plane_label,
                              plane_ordinal, slab, t + 1, set_ordinal, number)
                idx = np.flatnonzero(tile == t)
                centre = (float(np.mean(u[idx])), float(np.mean(v[idx])))
                uu, vv = _jitter(u[idx], v[idx], rng, 0.08 * shape.scale, 0.006, 0.3, centre)
                sections.append(sec)
                for k, val in (("u", uu), ("v", vv), ("comp", comp[idx])):
                    cols[k].append(val)
                cols["section"].append(np.full(len(idx), len(sections) - 1))
                cols["plane"].append(np.full(len(idx), p_i))
        else:
            set_ordinal = plane_ordinal
            for t in range(n_sec):
                number = 6 + t
                sec = Section(f"{spec.donor}.CX.{slab}.{set_ordinal:02d}.{number:02d}",
                              spec.barcode_base + int(label_rng.integers(0, 99_999_999)), kind, plane_label,
                              plane_ordinal, slab, slab, set_ordinal, number)
                # a whole-hemisphere section of a small brain holds fewer cells than a human block mosaic
                n = int(cells_per_section * rng.uniform(0.85, 0.98))
                u, v, comp = _sample_points(anat, n, rng)
                uu, vv = _jitter(u, v, rng, 0.12 * shape.scale, 0.01, 0.8, ((u0 + u1) / 2, (v0 + v1) / 2))
                sections.append(sec)
                for k, val in (("u", uu), ("v", vv), ("comp", comp)):
                    cols[k].append(val)
                cols["section"].append(np.full(n, len(sections) - 1))
                cols["plane"].append(np.full(n, p_i))
    if bar is not None:
        bar.update(1)

    sec_of = np.concatenate(cols["section"])
    u = np.concatenate(cols["u"])
    v = np.concatenate(cols["v"])
    comp = np.concatenate(cols["comp"]).astype(np.int64)
    plane_of = np.concatenate(cols["plane"])
    n_all = len(u)

    # cell types
    groups = np.empty(n_all, dtype=object)
    for p_i, (kind, anat, *_rest) in enumerate(planes):
        for c_i, c in enumerate(anat.compartments):
            idx = np.flatnonzero((plane_of == p_i) & (comp == c_i))
            if len(idx):
                groups[idx] = assign_groups(COMPOSITIONS[c.composition], len(idx), spec.species, model, rng)
    cluster_rows = assign_clusters(groups, spec.species, model, rng)

    # slab coordinates
    x = np.empty(n_all)
    y = np.empty(n_all)
    for p_i, (kind, anat, frame, *_rest) in enumerate(planes):
        idx = np.flatnonzero(plane_of == p_i)
        x[idx], y[idx] = frame.to_slab(u[idx], v[idx])

    # order cells within a section as a segmentation would number them (field of view by field of view)
    fov = np.floor((y - y.min()) / (0.25 * spec.scale)).astype(np.int64)
    order = np.lexsort((x, fov, sec_of))
    sec_of, x, y, groups, cluster_rows, plane_of = (a[order] for a in (sec_of, x, y, groups, cluster_rows, plane_of))

    # the last ``quirk_cells`` cells of the draw become h5ad-only cells (not in the cell table)
    q = scale.quirk_cells
    extra_idx = np.sort(rng.choice(n_all, size=q, replace=False))
    in_table = np.ones(n_all, dtype=bool)
    in_table[extra_idx] = False

    labels = np.empty(n_all, dtype=object)
    for s_i, sec in enumerate(sections):
        idx = np.flatnonzero(sec_of == s_i)
        sec.cells = int(in_table[idx].sum())
        if spec.platform == "Xenium":
            ids = letters_id(rng, len(idx))
            labels[idx] = [f"{sec.barcode}_{c}-1-{LABEL_DATE}" for c in ids]
        else:
            numbers = np.arange(1, len(idx) + 1)
            labels[idx] = [f"{sec.barcode}_{k}-{LABEL_DATE}" for k in numbers]

    neuron = np.array([g in model.neuron_groups for g in groups])
    qc_fail = (rng.random(n_all) < 0.03) & in_table
    size = np.where(neuron, 10.0, 8.0) * rng.lognormal(0.0, 0.35, n_all) * spec.platform_gain
    size[qc_fail] *= 0.35  # low-count cells (few transcripts: high log2 CPM per transcript)

    # expression (all cells, then the h5ad keeps the extras and loses a few table cells)
    panel = model.panels[spec.species]
    gidx = np.array([model.gene_index[g] for g in panel])
    mean = panel_means(model, spec.species, panel, seed)
    genes_df = _gene_table(spec, panel)
    ex_genes = [g for g in EXAMPLE_GENES if g in panel]
    ex_cols = [panel.index(g) for g in ex_genes]
    h5ad_path = expr_dir / f"{spec.tag}-log2.h5ad"
    ids, symbols = genes_df["gene_identifier"].to_numpy(), genes_df["gene_symbol"].to_numpy()
    if scale.chunk_cells is None:
        counts = _drop_out(sample_counts(mean, cluster_rows, size, rng, theta=PANEL_THETA), rng)
        if bar is not None:
            bar.update(1)
        in_h5ad = _missing_from_h5ad(in_table, qc_fail, q, rng)
        log2 = log2_cpm(counts)
        h5_rows = np.flatnonzero(in_h5ad)
        write_h5ad(h5ad_path, log2[h5_rows], labels[h5_rows], ids, symbols)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        n_detected = np.diff(counts.indptr)
        # example genes: values of the expression file (log2; raw counts for the Xenium marmoset)
        ex_all = (counts if spec.platform == "Xenium" else log2)[:, ex_cols].toarray()
        del counts, log2
    else:
        in_h5ad = _missing_from_h5ad(in_table, qc_fail, q, rng)
        totals, n_detected, ex_all = _stream_expression(h5ad_path, ids, symbols, mean, cluster_rows, size, labels,
                                                        in_h5ad, ex_cols, spec.platform == "Xenium",
                                                        scale.chunk_cells, rng)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.update(1)

    t = np.flatnonzero(in_table)
    sec_labels = np.array([s.label for s in sections], dtype=object)
    sec_barcodes = np.array([s.barcode for s in sections])
    plane_labels = np.array([s.plane_label for s in sections], dtype=object)

    # section-local coordinates (micrometres): a rotation and shift per section
    x_exp = np.empty(n_all)
    y_exp = np.empty(n_all)
    x_rot = np.empty(n_all)
    y_rot = np.empty(n_all)
    for s_i in range(len(sections)):
        idx = np.flatnonzero(sec_of == s_i)
        cx, cy = np.median(x[idx]), np.median(y[idx])
        xr, yr = (x[idx] - cx) * 1000.0, (y[idx] - cy) * 1000.0
        a = rng.uniform(-np.pi, np.pi)
        xe, ye = np.cos(a) * xr - np.sin(a) * yr, np.sin(a) * xr + np.cos(a) * yr
        x_exp[idx], y_exp[idx] = xe - xe.min() + rng.uniform(200, 900), ye - ye.min() + rng.uniform(200, 900)
        x_rot[idx], y_rot[idx] = xr, yr
    ndig = 6 if spec.platform == "Xenium" else 4

    sample_ids = uuids(rng, n_all).astype(object)
    sample_ids[qc_fail] = np.nan
    cell_metadata = pd.DataFrame({
        "cell_label": labels[t],
        "brain_section_label": sec_labels[sec_of[t]],
        "brain_section_barcode": sec_barcodes[sec_of[t]],
        "segmentation_job_id": spec.segmentation,
        "x_experiment": np.round(x_exp[t], ndig),
        "y_experiment": np.round(y_exp[t], ndig),
        "qc_pass": ~qc_fail[t],
        "dataset_label": spec.dataset,
        "feature_matrix_label": spec.tag,
        "abc_sample_id": sample_ids[t],
    })
    write_csv(cell_metadata, meta_dir / "cell_metadata.csv")

    # slab coordinates: a few QC-failed cells were never registered (readers inner-join)
    no_coords = qc_fail & (rng.random(n_all) < 0.05)
    c = np.flatnonzero(in_table & ~no_coords)
    coords = {"cell_label": labels[c]}
    if spec.platform == "Xenium":
        coords |= {"brain_section_label": sec_labels[sec_of[c]], "x_rotated_um": np.round(x_rot[c], 6),
                   "y_rotated_um": np.round(y_rot[c], 6)}
    coords |= {"slab_plane_label": plane_labels[sec_of[c]], "x_slab_mm": np.round(x[c], 6),
               "y_slab_mm": np.round(y[c], 6)}
    write_csv(pd.DataFrame(coords), meta_dir / "slab_plane_coordinates.csv")

    # region polygons and per-cell anatomical annotations
    annotations = {col: np.zeros(n_all, dtype=bool) for col in REGION_COLUMNS}
    annotations["Basal ganglia and adjacent"][:] = True
    geojson_planes = []
    for p_i, (kind, anat, frame, plane_label, *_rest) in enumerate(planes):
        if spec.missing_geojson == kind:
            continue
        regions = {k: frame.geometry_to_slab(g) for k, g in anat.regions.items()}
        idx = np.flatnonzero(plane_of == p_i)
        for label, geom in regions.items():
            annotations[label][idx] = shapely.contains_xy(geom, x[idx], y[idx])
        path = image_dir / f"{plane_label}.geojson"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_geojson(spec, kind, regions)))
        geojson_planes.append(plane_label)
    symbol = np.full(n_all, "Basal ganglia and adjacent", dtype=object)
    for col in reversed(REGION_COLUMNS[1:]):
        pick = annotations[col] & (symbol == "Basal ganglia and adjacent")
        symbol[pick] = col
    ann = pd.DataFrame({"cell_label": labels[c]} | {k: annotations[k][c] for k in REGION_COLUMNS}
                       | {"parcellation_term_symbol": symbol[c]})
    write_csv(ann, meta_dir / "cell_anatomical_annotations.csv")

    # cluster membership: QC-failed cells mostly unmapped, 1% of the rest too; Adjacent cells keep their
    # alias, which the taxonomy does not list
    clusters = model.all_clusters
    unmapped = (qc_fail & (rng.random(n_all) < 0.9)) | (rng.random(n_all) < 0.01)
    m = np.flatnonzero(in_table & ~unmapped)
    aliases = np.array([cl.alias for cl in clusters], dtype=object)
    clabels = np.array([cl.label for cl in clusters], dtype=object)
    write_csv(pd.DataFrame({"cell_label": labels[m], "cluster_alias": aliases[cluster_rows[m]],
                            "cluster_label": clabels[cluster_rows[m]]}),
              meta_dir / "cell_to_cluster_membership.csv")
    _write_mmc_results(meta_dir, labels[m], groups[m], cluster_rows[m], model, rng)

    _write_supplemental(meta_dir, spec, labels[t], totals[t], n_detected[t], qc_fail[t], rng)
    if bar is not None:
        bar.update(1)

    ex_rows = np.flatnonzero(in_table & in_h5ad)
    ex_vals = ex_all[ex_rows]
    example = pd.DataFrame({"cell_label": labels[ex_rows]}
                           | {g: np.round(ex_vals[:, i].astype(np.float64), 4) for i, g in enumerate(ex_genes)})
    write_csv(example, meta_dir / "example_gene_expression.csv")

    write_csv(genes_df, meta_dir / "gene.csv")
    write_csv(_specimen_table(spec, sections), meta_dir / "specimen_metadata.csv")
    write_csv(_donor_table(spec), meta_dir / "donor.csv")
    write_csv(_value_sets(), meta_dir / "value_sets.csv")
    write_csv(_visualization(planes, x, y, plane_of, geojson_planes), meta_dir / "visualization.csv")
    if bar is not None:
        bar.update(1)
    log.debug("%s: %d cells in %d sections, %d in the h5ad, %d genes", spec.dataset, int(in_table.sum()),
              len(sections), int(in_h5ad.sum()), len(panel))
    return {
        "dataset": spec.dataset, "cells": int(in_table.sum()), "h5ad_cells": int(in_h5ad.sum()),
        "sections": [s.label for s in sections], "planes": [p[3] for p in planes],
        "geojson_planes": geojson_planes, "genes": len(panel),
    }


def _drop_out(counts, rng: np.random.Generator, p: float = DROP_OUT):
    """``counts`` with a share ``p`` of its detected entries lost (spots missed by decoding), CSR float32."""
    lost = rng.random(counts.nnz) < p
    counts.data[lost] = 0
    counts.eliminate_zeros()
    return counts


def _missing_from_h5ad(in_table: np.ndarray, qc_fail: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    """Bool mask of the cells in the h5ad: all but ``q`` QC-passed table cells."""
    missing = np.sort(rng.choice(np.flatnonzero(in_table & ~qc_fail), size=q, replace=False))
    in_h5ad = np.ones(len(in_table), dtype=bool)
    in_h5ad[missing] = False
    return in_h5ad


def _stream_expression(path: Path, ids, symbols, mean: np.ndarray, cluster_rows: np.ndarray, size: np.ndarray,
                       labels: np.ndarray, in_h5ad: np.ndarray, ex_cols: list[int], raw_examples: bool,
                       chunk_cells: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw counts and write the log2 h5ad ``chunk_cells`` cells at a time (bounded memory).

    Returns
    -------
    tuple
        ``totals`` (float, counts per cell), ``n_detected`` (int, genes per cell), ``examples`` (float32,
        shape (n_cells, len(ex_cols)): the example genes' values, raw counts when ``raw_examples``).
    """
    n = len(cluster_rows)
    totals = np.empty(n)
    n_detected = np.empty(n, dtype=np.int64)
    examples = np.empty((n, len(ex_cols)), dtype=np.float32)
    with StreamingH5adWriter(path, ids, symbols) as h5:
        for a in range(0, n, chunk_cells):
            b = min(n, a + chunk_cells)
            counts = _drop_out(sample_counts(mean, cluster_rows[a:b], size[a:b], rng, theta=PANEL_THETA), rng)
            log2 = log2_cpm(counts)
            totals[a:b] = np.asarray(counts.sum(axis=1)).ravel()
            n_detected[a:b] = np.diff(counts.indptr)
            examples[a:b] = (counts if raw_examples else log2)[:, ex_cols].toarray()
            keep = np.flatnonzero(in_h5ad[a:b])
            h5.append(log2[keep], labels[a:b][keep])
    log.debug("%s: %d cells, %d non-zeros", path.name, h5.n_cells, h5.nnz)
    return totals, n_detected, examples


def _gene_table(spec: SpatialSpec, panel: list[str]) -> pd.DataFrame:
    desc = [GENE_BY_SYMBOL[g].description for g in panel]
    if spec.species == "Human":
        chroms = [str(stable_int("chr" + g, 3) % 23 + 1).replace("23", "X") for g in panel]
        return pd.DataFrame({
            "gene_identifier": [ensembl_id("ENSG", g) for g in panel], "gene_symbol": panel, "description": desc,
            "transcript_identifier": [ensembl_id("ENST", g) for g in panel], "chromosome": chroms,
            "molecular_type": "mRNA",
        })
    if spec.species == "Macaque":
        ens = [ensembl_id("ENSMMUG", g) for g in panel]
        return pd.DataFrame({
            "gene_identifier": ens, "gene_symbol": panel, "description": desc, "molecular_type": "mRNA",
            "ensembl_gene_identifier": ens,
            "ncbi_gene_identifier": [f"NCBIGene:{ncbi_id('macaque', g)}" for g in panel],
            "ncbi_gene_symbol": panel, "ncbi_description": desc,
            "match_method": ["ensembl_ncbi_xref" if stable_int("m" + g, 2) % 5 else "gene_symbol" for g in panel],
        })
    return pd.DataFrame({
        "gene_identifier": [f"NCBIGene:{ncbi_id('marmoset', g)}" for g in panel], "gene_symbol": panel,
        "description": desc, "molecular_type": "mRNA",
    })


def _specimen_table(spec: SpatialSpec, sections: list[Section]) -> pd.DataFrame:
    rows = []
    for s in sections:
        if spec.layout == "tiles":
            base = 41 + (s.set_ordinal - 1) * 50
            ordinal = base + s.section_number
            block_label = f"{spec.donor}.CX.{s.slab}.{s.block:02d}"
            set_label = f"{block_label}.{s.set_ordinal:02d}"
            block_number = s.block
        else:
            base = 1 + (s.set_ordinal - 1) * 20
            ordinal = base + s.section_number - 1
            block_label = f"{spec.donor}.CX.{s.slab}"
            set_label = f"{block_label}.{s.set_ordinal:02d}"
            block_number = s.slab
        rows.append({
            "brain_section_label": s.label, "brain_section_barcode": s.barcode, "brain_section_thickness": 10,
            "brain_section_plane_of_section": spec.plane_of_section, "brain_section_ordinal": ordinal,
            "brain_section_depth": ordinal * 10, "section_set_label": set_label,
            "section_set_ordinal": s.set_ordinal, "section_set_base_ordinal": base,
            "brain_block_label": block_label, "brain_block_number": block_number,
            "brain_slab_label": f"{spec.donor}.CX.{s.slab}", "brain_slab_ordinal": s.slab,
            "brain_slab_thickness": spec.slab_thickness, "hemisphere": "right",
            "brain_division_label": f"{spec.donor}.CX", "brain_division_ordinal": 1, "donor_label": spec.donor,
            "slab_plane_ordinal": s.plane_ordinal, "slab_plane_label": s.plane_label,
            "slab_plane_order": 10000 + 100 * s.slab + s.plane_ordinal,
        })
    return pd.DataFrame(rows)


def _donor_table(spec: SpatialSpec) -> pd.DataFrame:
    taxon, sci, genus, sex, age, unit = DONORS[spec.species]
    return pd.DataFrame([{
        "donor_label": spec.donor, "donor_species": taxon, "species_scientific_name": sci,
        "species_genus": genus, "donor_sex": sex, "donor_age": f"{age} yrs", "donor_age_value": age,
        "donor_age_unit": unit, "donor_nhash_id": f"DO-{stable_int(spec.donor, 4)}-{stable_int('n' + spec.donor, 4)}",
    }])


def _value_sets() -> pd.DataFrame:
    rows = []
    for i, label in enumerate(REGION_ORDER):
        rows.append({
            "label": label, "table": "path", "field": "parcellation_term_symbol",
            "description": REGION_DESCRIPTIONS[label], "order": i + 1,
            "external_identifier": REGION_IDENTIFIERS[label],
            "parent_label": "" if i == 0 else "Basal ganglia and adjacent", "color_hex_triplet": REGION_COLORS[label],
        })
    return pd.DataFrame(rows)


def _visualization(planes, x, y, plane_of, geojson_planes) -> pd.DataFrame:
    rows = []
    for p_i, (kind, _anat, _frame, plane_label, *_rest) in enumerate(planes):
        idx = plane_of == p_i
        rows.append({
            "slab_plane_label": plane_label, "display_order": p_i + 1,
            "x_min_mm": round(float(x[idx].min()), 3), "x_max_mm": round(float(x[idx].max()), 3),
            "y_min_mm": round(float(y[idx].min()), 3), "y_max_mm": round(float(y[idx].max()), 3),
            "invert_y": True, "has_polygons": plane_label in geojson_planes,
        })
    return pd.DataFrame(rows)


def _write_mmc_results(meta_dir: Path, labels, groups, cluster_rows, model: BGModel, rng) -> None:
    tax = model.taxonomy
    group_label = {g.name: f"CS20250428_GROUP_{i:04d}" for i, g in enumerate(tax.taxonomy_groups)}
    clusters = model.all_clusters
    adjacent = np.array([tax.groups[g].adjacent for g in groups])
    n = len(labels)
    p_group = np.round(np.clip(rng.beta(9, 1.2, n), 0, 1), 3)
    p_cluster = np.round(np.clip(p_group * rng.beta(6, 1.5, n), 0, 1), 3)
    df = pd.DataFrame({
        "cell_label": labels,
        "CCN20250428_LEVEL_3_label": [("" if a else group_label[g]) for g, a in zip(groups, adjacent)],
        "CCN20250428_LEVEL_3_name": np.where(adjacent, "Adjacent", groups),
        "CCN20250428_LEVEL_3_bootstrapping_probability": p_group,
        "CCN20250428_LEVEL_4_label": [clusters[r].label for r in cluster_rows],
        "CCN20250428_LEVEL_4_name": [clusters[r].alias for r in cluster_rows],
        "CCN20250428_LEVEL_4_bootstrapping_probability": p_cluster,
        "CCN20250428_LEVEL_4_avg_correlation": np.round(rng.uniform(0.35, 0.85, n), 4),
    })
    write_csv(df, meta_dir / "mmc_results.csv")


def _write_supplemental(meta_dir: Path, spec: SpatialSpec, labels, totals, detected, qc_fail, rng) -> None:
    n = len(labels)
    if spec.platform == "Xenium":
        ctrl = rng.poisson(0.4, n)
        df = pd.DataFrame({
            "cell_label": labels,
            "total_counts": totals.astype(np.int64) + ctrl, "total_counts_genes": totals.astype(np.int64),
            "total_counts_control_probe": ctrl, "total_counts_genomic_control": rng.poisson(0.1, n),
            "total_counts_control_codeword": rng.poisson(0.1, n),
            "total_counts_unassigned_codeword": rng.poisson(0.3, n),
            "total_counts_deprecated_codeword": rng.poisson(0.05, n),
            "cell_area": np.round(rng.lognormal(np.log(55), 0.35, n), 4),
            "nucleus_area": np.round(rng.lognormal(np.log(24), 0.3, n), 4),
            "nucleus_count": np.where(rng.random(n) < 0.93, 1, np.where(rng.random(n) < 0.5, 0, 2)),
            "segmentation_method": np.where(
                rng.random(n) < 0.8, "Segmented by boundary stain (ATP1A1+CD45+E-Cadherin)",
                np.where(rng.random(n) < 0.6, "Segmented by interior stain (18S)",
                         "Segmented by nucleus expansion of 5.0µm")),
            "cluster_id_mmc_bootstrapping_probability": np.round(rng.beta(8, 1.5, n), 3),
            "cluster_id_mmc_aggregate_probability": np.round(rng.beta(6, 2, n), 3),
            "cluster_id_mmc_avg_correlation": np.round(rng.uniform(0.35, 0.85, n), 4),
            "qc_pass": ~qc_fail,
        })
    else:
        blank = rng.poisson(1.2, n)
        total = totals.astype(np.int64) + blank
        doublet = np.round(rng.normal(-0.8, 0.6, n), 4)
        counts_ok = ~qc_fail | (rng.random(n) < 0.3)
        df = pd.DataFrame({
            "cell_label": labels, "total_counts": total, "total_counts_genes": totals.astype(np.int64),
            "total_counts_Blank": blank,
            "pct_counts_Blank": np.round(100.0 * blank / np.maximum(total, 1), 4),
            "n_genes_by_counts": detected, "doublet_singlet_score_diff": doublet, "doublet_diff_threshold": 0.5,
            "blanks_filter": True, "genes_filter": ~qc_fail | counts_ok, "counts_filter": counts_ok,
            "doublets_filter": doublet < 0.5, "qc_pass": ~qc_fail, "qc_pass_and_singlet": ~qc_fail & (doublet < 0.5),
        })
        if spec.species == "Macaque":
            df["incongruous_genes_pct"] = np.round(rng.gamma(1.2, 1.5, n), 4)
            df["incongruous_pairs_pct"] = np.round(rng.gamma(1.0, 0.8, n), 4)
    write_csv(df, meta_dir / "cell_supplemental_metadata.csv")
