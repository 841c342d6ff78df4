"""The demo looks like basal ganglia to a biologist: markers in the right cell types, cell types in the right
places, a UMAP made of islands. Everything is read back from the written files."""
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
    assert len(striatum) > 5000
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


def test_bg_umap_clusters_are_islands_grouped_by_class(cache, subclass_of_alias):
    xy = pd.read_csv(cache.path(BG_TAX, "metadata", "cell_2d_embedding_coordinates"))
    member = pd.read_csv(cache.path(BG_TAX, "metadata", "cell_to_cluster_membership"))
    df = xy.merge(member, on="cell_label")
    centres = df.groupby("cluster_alias")[["x", "y"]].mean()
    spread = df.groupby("cluster_alias")[["x", "y"]].std().pow(2).sum(axis=1).pow(0.5)
    d = np.linalg.norm(centres.to_numpy()[:, None] - centres.to_numpy()[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = pd.Series(d.min(axis=1), index=centres.index)
    assert (nearest / spread.reindex(centres.index)).median() > 1.5
    classes = pd.read_csv(cache.path(BG_TAX, "metadata", "cluster_to_cluster_annotation_membership"))
    cls = classes[classes["cluster_annotation_term_set_name"] == "Class"].set_index("cluster_alias")[
        "cluster_annotation_term_name"]
    known = centres.index.intersection(cls.index)
    same = cls[known].to_numpy()[:, None] == cls[known].to_numpy()[None]
    dk = np.linalg.norm(centres.loc[known].to_numpy()[:, None] - centres.loc[known].to_numpy()[None], axis=-1)
    off = ~np.eye(len(known), dtype=bool)
    assert np.median(dk[same & off]) < 0.5 * np.median(dk[~same])
