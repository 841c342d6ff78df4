"""Marker genes and linked selections on the synthetic demo atlas (a small-scale demo built once per module)."""
from __future__ import annotations

import numpy as np
import pytest

from data_layer import Atlas
from data_layer import analysis as an
from data_layer.prepare import prepare_store

SPATIAL = ["HMBA-MERSCOPE-H22.30.001-BG", "HMBA-MERSCOPE-QM23.50.001-BG", "HMBA-Xenium-CJ23.56.004-BG"]
TENX = "HMBA-10xMultiome-BG-Aligned"


@pytest.fixture(scope="module")
def demo_atlas(tmp_path_factory):
    from data_layer.demo import DemoScale, write_demo_cache

    root = tmp_path_factory.mktemp("analysis_demo")
    scale = DemoScale(cells_per_section=3000, tenx_cells=6000, tenx_genes=600, wmb_cells=2000, wmb_genes=200,
                      wmb_clusters=40, quirk_cells=5)
    write_demo_cache(root / "cache", seed=0, scale=scale)
    prepare_store(root / "cache", root / "store", memory_limit_bytes=512 << 20, datasets=[*SPATIAL, TENX])
    return Atlas.open(root / "store")


@pytest.mark.parametrize("dataset", [*SPATIAL, TENX])
def test_drd1_tops_the_markers_of_d1_msns(demo_atlas, dataset):
    top = an.markers_for_term(demo_atlas, dataset, "Subclass", "STR D1 MSN", n=3)
    assert top["gene_symbol"].iloc[0] == "DRD1"
    assert top["frac_in"].iloc[0] > 0.75  # most D1 MSNs, not necessarily all (spatial panels miss some)


@pytest.mark.parametrize("dataset", SPATIAL)
def test_penk_tops_d2_msns_with_drd2_close_behind(demo_atlas, dataset):
    top = an.markers_for_term(demo_atlas, dataset, "Subclass", "STR D2 MSN", n=5)
    assert top["gene_symbol"].iloc[0] == "PENK"
    assert "DRD2" in list(top["gene_symbol"])


def test_lassoed_d1_cells_of_a_section_have_drd1_among_their_top_markers(demo_atlas):
    dataset = SPATIAL[0]
    section = demo_atlas.sections(dataset)["brain_section_label"].iloc[0]
    cells = demo_atlas.cells(dataset, section=section)
    mask = an.cells_of_terms(cells, "Subclass", ["STR D1 MSN"])
    assert mask.sum() > 50
    top = an.markers_for_selection(demo_atlas, dataset, mask, n=3, section=section)
    assert "DRD1" in list(top["gene_symbol"])
    assert top["diff"].iloc[0] > 10


def test_umap_selection_of_d1_cells_highlights_only_d1_cells_on_a_section(demo_atlas):
    umap_cells = demo_atlas.cells(TENX)
    picked = an.cells_of_terms(umap_cells, "Subclass", ["STR D1 MSN"])
    clusters = an.clusters_of(umap_cells, picked, level="Cluster")
    assert len(clusters) > 0 and clusters["n_cells"].sum() == picked.sum()
    section = demo_atlas.sections(SPATIAL[0])["brain_section_label"].iloc[0]
    cells = demo_atlas.cells(SPATIAL[0], section=section)
    highlight = an.cells_of_terms(cells, "Cluster", clusters["term"])
    assert highlight.sum() > 0
    assert set(cells.loc[highlight, "Subclass"].astype(str)) == {"STR D1 MSN"}


def test_box_on_a_demo_section_composition_matches_value_counts(demo_atlas):
    dataset = SPATIAL[1]
    section = demo_atlas.sections(dataset)["brain_section_label"].iloc[0]
    cells = demo_atlas.cells(dataset, section=section)
    x, y = cells["x"].to_numpy(), cells["y"].to_numpy()
    mask = an.cells_in_box(x, y, *np.quantile(x, [0.2, 0.6]), *np.quantile(y, [0.2, 0.6]))
    comp = an.composition(cells, "Class", mask, colors=demo_atlas.colors(dataset, "Class"))
    counts = cells.loc[mask, "Class"].value_counts()
    assert dict(zip(comp["term"], comp["n_cells"])) == counts[counts > 0].to_dict()
    colours = dict(zip(demo_atlas.categories(dataset, "Class"), demo_atlas.colors(dataset, "Class")))
    assert all(colours[t] == c for t, c in zip(comp["term"], comp["color"]))
