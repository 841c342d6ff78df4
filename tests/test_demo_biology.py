"""The demo looks like basal ganglia to a biologist: markers in the right cell types, cell types in the right
places, a continuous UMAP. Everything is read back from the written files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import shape
from shapely.ops import unary_union

from data_layer.manifest import LocalCache

SPATIAL = {"HMBA-MERSCOPE-H22.30.001-BG": "MERSCOPE-H22.30.001-BG",
           "HMBA-MERSCOPE-QM23.50.001-BG": "MERSCOPE-QM23.50.001-BG",
           "HMBA-Xenium-CJ23.56.004-BG": "Xenium-CJ23.56.004-BG"}
BG_TAX = "HMBA-BG-taxonomy-CCN20250428"
MSN = {"STR D1 MSN", "STR D2 MSN", "STR Hybrid MSN"}

anndata = pytest.importorskip("anndata")


@pytest.fixture(scope="module")
def cache(demo_cache) -> LocalCache:
    return LocalCache(demo_cache)


@pytest.fixture(scope="module")
def subclass_of_alias(cache) -> dict[str, str]:
    member = pd.read_csv(cache.path(BG_TAX, "metadata", "cluster_to_cluster_annotation_membership"))
    sub = member[member["cluster_annotation_term_set_name"] == "Subclass"]
    return dict(zip(sub["cluster_alias"], sub["cluster_annotation_term_name"]))


@pytest.fixture(scope="module", params=list(SPATIAL))
def spatial(request, cache, subclass_of_alias):
    """(cells with subclass, region flags and slab coordinates; expression of those cells) of one species."""
    dataset = request.param
    meta = lambda tag: pd.read_csv(cache.path(dataset, "metadata", tag), dtype={"cell_label": str})  # noqa: E731
    cells = meta("cell_to_cluster_membership")
    cells["subclass"] = cells["cluster_alias"].map(subclass_of_alias).fillna("Adjacent")
    cells = cells.merge(meta("cell_anatomical_annotations"), on="cell_label")
    cells = cells.merge(meta("slab_plane_coordinates"), on="cell_label")
    adata = anndata.read_h5ad(cache.path(dataset, "expression_matrices", SPATIAL[dataset], "log2"))
    cells = cells[cells["cell_label"].isin(adata.obs.index)].reset_index(drop=True)
    return dataset, cells, adata[cells["cell_label"].to_numpy()]


def _mean(adata, cells, gene: str, mask) -> float:
    col = list(adata.var["gene_symbol"]).index(gene)
    values = adata.X[:, col].toarray().ravel()
    return float(values[np.asarray(mask)].mean())


@pytest.mark.parametrize("gene,subclasses", [
    ("DRD1", {"STR D1 MSN"}), ("TAC1", {"STR D1 MSN"}), ("PDYN", {"STR D1 MSN"}),
    ("DRD2", {"STR D2 MSN"}), ("PENK", {"STR D2 MSN"}), ("ADORA2A", {"STR D2 MSN"}),
    ("PPP1R1B", MSN), ("MBP", {"Oligodendrocyte"}), ("PLP1", {"Oligodendrocyte"}), ("AQP4", {"Astrocyte"}),
    ("PDGFRA", {"OPC"}), ("P2RY12", {"Microglia"}), ("CLDN5", {"Endo"}), ("SST", {"STR SST-CHODL GABA"}),
    ("CHAT", {"CN Cholinergic GABA"}),
])
def test_marker_is_far_higher_in_its_cell_type_than_in_other_cells(spatial, gene, subclasses):
    _, cells, adata = spatial
    inside = cells["subclass"].isin(subclasses).to_numpy()
    assert inside.sum() > 20
    high, low = _mean(adata, cells, gene, inside), _mean(adata, cells, gene, ~inside)
    assert high > 5 * low, (gene, high, low)


def test_d1_markers_separate_d1_from_d2_msns(spatial):
    _, cells, adata = spatial
    d1, d2 = (cells["subclass"] == "STR D1 MSN").to_numpy(), (cells["subclass"] == "STR D2 MSN").to_numpy()
    assert _mean(adata, cells, "DRD1", d1) > 4 * _mean(adata, cells, "DRD1", d2)
    assert _mean(adata, cells, "PENK", d2) > 4 * _mean(adata, cells, "PENK", d1)


def test_glutamatergic_markers_are_scarce_in_the_striatum(spatial):
    _, cells, adata = spatial
    col = list(adata.var["gene_symbol"]).index("SLC17A7")
    striatal = cells["STR"].to_numpy()
    detected = adata.X[:, col].toarray().ravel()[striatal] > 0
    assert detected.mean() < 0.1


def test_d1_and_d2_msns_are_the_commonest_cells_inside_the_striatum_polygon(spatial):
    _, cells, _ = spatial
    striatum = cells[cells["STR"]]
    assert len(striatum) > 3000  # the marmoset's striatum is a small part of its whole-hemisphere sections
    counts = striatum["subclass"].value_counts(normalize=True)
    assert set(counts.index[:2]) == {"STR D1 MSN", "STR D2 MSN"}
    assert counts["STR D1 MSN"] + counts["STR D2 MSN"] > 0.35
    assert 0.7 < counts["STR D1 MSN"] / counts["STR D2 MSN"] < 1.4
    neurons_outside_msn = counts.drop(["STR D1 MSN", "STR D2 MSN", "STR Hybrid MSN"], errors="ignore")
    assert counts[["STR D1 MSN", "STR D2 MSN"]].sum() > 0.8 * (counts[["STR D1 MSN", "STR D2 MSN"]].sum() + sum(
        neurons_outside_msn.get(s, 0) for s in ("CN LHX8 GABA", "CN Cholinergic GABA", "STR SST-CHODL GABA")))


def test_oligodendrocytes_dominate_the_white_matter_between_striatum_and_pallidum(spatial, cache):
    dataset, cells, _ = spatial
    planes = [p for p in cells["slab_plane_label"].unique()
              if (cache.root / f"image_volumes/{dataset}").exists()
              and any(f.tag == p for f in cache.manifest.files(dataset, "image_volumes"))]
    checked = 0
    for plane in planes:
        gj = json.loads(cache.path(dataset, "image_volumes", plane).read_text())
        geoms = {f["properties"]["label"]: shape(f["geometry"]) for f in gj["features"]}
        if "GP" not in geoms:
            continue
        grey = unary_union([geoms["STR"], geoms["GP"]])
        scale = np.sqrt(grey.area)
        capsule = grey.convex_hull.difference(grey.buffer(0.04 * scale))
        on_plane = cells[cells["slab_plane_label"] == plane]
        inside = shapely.contains_xy(capsule, on_plane["x_slab_mm"], on_plane["y_slab_mm"])
        share = on_plane.loc[inside, "subclass"].value_counts(normalize=True)
        assert share.index[0] == "Oligodendrocyte" and share.iloc[0] > 0.4, share.head()
        checked += 1
    assert checked == 1


def test_white_matter_is_sparser_than_the_striatum(spatial, cache):
    dataset, cells, _ = spatial
    for plane in cells["slab_plane_label"].unique():
        if not any(f.tag == plane for f in cache.manifest.files(dataset, "image_volumes")):
            continue
        gj = json.loads(cache.path(dataset, "image_volumes", plane).read_text())
        geoms = {f["properties"]["label"]: shape(f["geometry"]) for f in gj["features"]}
        if "GP" not in geoms:
            continue
        grey = unary_union([geoms["STR"], geoms["GP"]])
        capsule = grey.convex_hull.difference(grey.buffer(0.04 * np.sqrt(grey.area)))
        on_plane = cells[cells["slab_plane_label"] == plane]
        n_wm = shapely.contains_xy(capsule, on_plane["x_slab_mm"], on_plane["y_slab_mm"]).sum()
        n_str = shapely.contains_xy(geoms["STR"], on_plane["x_slab_mm"], on_plane["y_slab_mm"]).sum()
        assert n_wm / capsule.area < 0.8 * n_str / geoms["STR"].area


def test_pallidal_neurons_sit_in_the_pallidum(spatial):
    _, cells, _ = spatial
    gp = cells[cells["GP"] | cells["GPe"] | cells["GPi"]]
    if len(gp) < 200:
        pytest.skip("this species' pallidum plane has no polygons")
    pallidal = {"CN ST18 GABA", "CN GABA-Glut", "CN MEIS2 GABA", "CN LHX8 GABA"}
    inside = gp["subclass"].isin(pallidal).mean()
    outside = cells.loc[~cells.index.isin(gp.index), "subclass"].isin(pallidal).mean()
    assert inside > 3 * outside


def test_bg_umap_is_continuous_within_subclasses_and_grouped_by_class(cache, subclass_of_alias):
    from scipy.spatial import cKDTree

    xy = pd.read_csv(cache.path(BG_TAX, "metadata", "cell_2d_embedding_coordinates"))
    member = pd.read_csv(cache.path(BG_TAX, "metadata", "cell_to_cluster_membership"))
    df = xy.merge(member, on="cell_label")
    df["subclass"] = df["cluster_alias"].map(subclass_of_alias).fillna("Adjacent")
    points = df[["x", "y"]].to_numpy()
    _, near = cKDTree(points).query(points, k=11)
    cluster = df["cluster_alias"].to_numpy()
    subclass = df["subclass"].to_numpy()
    other_cluster_same_subclass = ((cluster[near[:, 1:]] != cluster[:, None])
                                   & (subclass[near[:, 1:]] == subclass[:, None])).any(axis=1)
    # clusters of a subclass merge into one another (a continuum), they are not separate islands
    assert other_cluster_same_subclass.mean() > 0.3
    # and a subclass' cells are one another's neighbours: few neighbours belong to another subclass
    assert (subclass[near[:, 1:]] == subclass[:, None]).mean() > 0.85
    centres = df.groupby("cluster_alias")[["x", "y"]].mean()
    classes = pd.read_csv(cache.path(BG_TAX, "metadata", "cluster_to_cluster_annotation_membership"))
    cls = classes[classes["cluster_annotation_term_set_name"] == "Class"].set_index("cluster_alias")[
        "cluster_annotation_term_name"]
    known = centres.index.intersection(cls.index)
    same = cls[known].to_numpy()[:, None] == cls[known].to_numpy()[None]
    dk = np.linalg.norm(centres.loc[known].to_numpy()[:, None] - centres.loc[known].to_numpy()[None], axis=-1)
    off = ~np.eye(len(known), dtype=bool)
    assert np.median(dk[same & off]) < 0.5 * np.median(dk[~same])


# ---------------------------------------------------------------------------------------------- anatomy

def _polygons(cache, dataset: str) -> dict[str, dict]:
    """Region polygons of every slab plane of ``dataset`` that has them: {plane: {label: geometry}}."""
    out = {}
    for f in cache.manifest.files(dataset, "image_volumes"):
        gj = json.loads(cache.path(dataset, "image_volumes", f.tag).read_text())
        out[f.tag] = {feat["properties"]["label"]: shape(feat["geometry"]).buffer(0) for feat in gj["features"]}
    return out


def _pallidal_plane(cache, dataset):
    planes = {p: g for p, g in _polygons(cache, dataset).items() if "GPe" in g}
    assert len(planes) == 1, list(planes)
    return next(iter(planes.items()))


@pytest.mark.parametrize("dataset", list(SPATIAL))
def test_pallidum_lies_medial_to_the_putamen_gpi_medial_to_gpe(cache, dataset):
    _, geoms = _pallidal_plane(cache, dataset)
    parts = sorted(getattr(geoms["STR"], "geoms", [geoms["STR"]]), key=lambda p: p.centroid.x)
    caudate, putamen = parts[0], parts[-1]
    gpe, gpi = geoms["GPe"], geoms["GPi"]
    # x grows laterally (right hemisphere, midline at the low x edge)
    assert caudate.centroid.x < gpi.centroid.x < gpe.centroid.x < putamen.centroid.x
    width = putamen.bounds[2] - putamen.bounds[0]
    assert gpe.distance(putamen) < 0.15 * width  # only the lateral medullary lamina between them
    assert geoms["GP"].contains(gpe.representative_point()) and geoms["GP"].contains(gpi.representative_point())


def test_internal_capsule_between_caudate_and_lentiform_is_white_matter(spatial, cache):
    dataset, cells, _ = spatial
    plane, geoms = _pallidal_plane(cache, dataset)
    parts = sorted(getattr(geoms["STR"], "geoms", [geoms["STR"]]), key=lambda p: p.centroid.x)
    caudate, putamen = parts[0], parts[-1]
    lentiform = shapely.union_all([putamen, geoms["GP"]])
    # the band of tissue between the caudate and the lentiform nucleus, outside every grey region
    between = shapely.union_all([caudate, lentiform]).convex_hull.difference(
        shapely.union_all([caudate.buffer(0.02 * np.sqrt(lentiform.area)), lentiform.buffer(0.02 * np.sqrt(
            lentiform.area))]))
    on_plane = cells[cells["slab_plane_label"] == plane]
    inside = shapely.contains_xy(between, on_plane["x_slab_mm"], on_plane["y_slab_mm"])
    assert inside.sum() > 100
    share = on_plane.loc[inside, "subclass"].value_counts(normalize=True)
    assert share.index[0] == "Oligodendrocyte" and share.iloc[0] > 0.4, share.head()
    msn = on_plane.loc[inside, "subclass"].isin(MSN).mean()
    in_str = on_plane.loc[on_plane["STR"], "subclass"].isin(MSN).mean()
    assert msn < 0.2 * in_str


def test_species_slab_planes_differ_in_size_marmoset_much_smaller_than_human(cache):
    areas = {}
    for dataset in SPATIAL:
        coords = pd.read_csv(cache.path(dataset, "metadata", "slab_plane_coordinates"))
        # a human or macaque plane is a mosaic of block sections, a marmoset plane serial whole sections
        per_plane = [shapely.MultiPoint(g[["x_slab_mm", "y_slab_mm"]].to_numpy()).convex_hull.area
                     for _, g in coords.groupby("slab_plane_label")]
        areas[dataset] = float(np.median(per_plane))
    human, macaque, marmoset = (areas[d] for d in SPATIAL)
    assert marmoset < 0.2 * human
    assert marmoset < 0.6 * macaque < 0.6 * human


def test_marmoset_sections_are_whole_hemispheres_with_a_cortical_mantle(cache):
    cortical = {}
    for dataset in SPATIAL:
        group = pd.read_csv(cache.path(dataset, "metadata", "mmc_results"), usecols=["CCN20250428_LEVEL_3_name"])
        # cortical neurons map outside the taxonomy ("Adjacent"); their share grows with the cortical mantle
        cortical[dataset] = float((group["CCN20250428_LEVEL_3_name"] == "Adjacent").mean())
    human, _, marmoset = (cortical[d] for d in SPATIAL)
    assert marmoset > 1.3 * human


def test_drd1_is_detected_in_most_d1_msns_and_a_minority_of_all_cells(spatial):
    _, cells, adata = spatial
    col = list(adata.var["gene_symbol"]).index("DRD1")
    detected = adata.X[:, col].toarray().ravel() > 0
    d1 = (cells["subclass"] == "STR D1 MSN").to_numpy()
    assert 0.75 < detected[d1].mean() < 0.98
    assert detected.mean() < 0.35
    assert d1[detected].mean() > 0.5  # most DRD1-expressing cells are D1 MSNs


def test_log2_values_and_detection_are_in_the_release_ranges(spatial):
    _, _, adata = spatial
    x = adata.X.tocsc()
    nonzero = x.data
    assert 9.0 < np.median(nonzero) < 13.0
    tops = [np.percentile(x.data[x.indptr[j]:x.indptr[j + 1]], 99) for j in range(x.shape[1])
            if x.indptr[j + 1] - x.indptr[j] > 50]
    assert np.median(tops) < 16.3 and max(tops) < 18.0  # the default colour ranges of the genes
    detection = np.diff(x.indptr) / x.shape[0]
    assert np.median(detection) < 0.35  # most genes are detected in a minority of cells
    genes_per_cell = np.median(np.diff(adata.X.tocsr().indptr))
    assert 40 < genes_per_cell < 160


def test_aligned_nuclei_log2_values_are_in_the_10x_range(cache):
    path = cache.path("HMBA-10xMultiome-BG-Aligned", "expression_matrices", "HMBA-10xMultiome-BG-Aligned", "log2")
    adata = anndata.read_h5ad(path, backed="r")
    data = adata.X[:5000].data
    adata.file.close()
    assert 6.0 < np.median(data) < 11.0 and np.percentile(data, 99) < 15.0
