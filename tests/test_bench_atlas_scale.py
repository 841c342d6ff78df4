"""The real-size demo cache (``scale="atlas"``): its sizes, the exact mouse taxonomy and the streamed writers.

The atlas itself (4 M + 1 M cells) is written by ``atlas-viewer bench --scale atlas``, not here: these tests run the
same streamed code on a tiny :class:`DemoScale` with ``chunk_cells`` set.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from data_layer.demo import DemoScale, write_demo_cache
from data_layer.demo.h5ad_writer import StreamingH5adWriter
from data_layer.demo.scale import get_scale
from data_layer.demo.wmb import build_wmb_taxonomy

STREAMED = DemoScale(cells_per_section=1200, tenx_cells=1500, tenx_genes=700, wmb_cells=5000, wmb_genes=300,
                     wmb_clusters=80, quirk_cells=5, spatial_overrides=(("Human", 2500, (3, 2)),), chunk_cells=700)
HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"
WMB_EXPR = Path("expression_matrices/WMB-10Xv3/20230630")
WMB_META = Path("metadata/WMB-10X/20241115")


@pytest.fixture(scope="module")
def streamed(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("streamed") / "cache"
    write_demo_cache(cache, seed=5, scale=STREAMED)
    return cache


def test_atlas_scale_has_the_issue_sizes():
    atlas = get_scale("atlas")
    assert atlas.wmb_cells == 4_000_000
    assert (atlas.wmb_subclasses, atlas.wmb_supertypes, atlas.wmb_clusters) == (338, 1_201, 5_322)
    cells, sections = atlas.spatial_size("Human")
    assert 0.9e6 <= cells * sum(sections) <= 1.1e6
    assert atlas.chunk_cells is not None


def test_atlas_scale_has_the_consensus_mouse_at_the_release_size_and_a_size_can_be_chosen():
    from data_layer.demo.scale import with_consensus_cells

    atlas = get_scale("atlas")
    assert (atlas.consensus_aibs_cells, atlas.consensus_macosko_cells) == (3_920_000, 3_730_000)
    smaller = with_consensus_cells(atlas, 1_000_000)
    assert smaller.consensus_aibs_cells + smaller.consensus_macosko_cells == 1_000_000
    assert smaller.consensus_aibs_cells > smaller.consensus_macosko_cells


def test_streamed_consensus_has_all_nine_neighborhood_umaps_and_ten_macosko_files(streamed):
    from data_layer.demo import consensus

    folder = streamed / "metadata" / consensus.TAXONOMY / consensus.VERSION
    whole = pd.read_csv(folder / "cell_2d_embedding_coordinates.csv")
    parts = [pd.read_csv(folder / f"{consensus.NEIGHBORHOOD_TABLE.format(h)}.csv") for h in consensus.NEIGHBORHOODS]
    labels = pd.concat([p["cell_label"] for p in parts], ignore_index=True)
    assert len(parts) == 9 and not labels.duplicated().any() and set(labels) == set(whole["cell_label"])
    files = sorted(p.name for p in (streamed / "expression_matrices" / consensus.MACOSKO).rglob("*.h5ad"))
    assert files == sorted(f"Macosko-10X-{region}-log2.h5ad" for region, _ in consensus.ALL_MACOSKO_REGIONS)
    aibs = pd.read_csv(streamed / "metadata" / consensus.AIBS / consensus.VERSION / "cell_metadata.csv")
    assert len(aibs) == STREAMED.wmb_cells  # a real-size cache: every WMB-10X cell asked for is a consensus cell


def test_species_without_an_override_keep_the_common_section_size():
    scale = DemoScale(cells_per_section=10, sections_per_plane=(2, 1), spatial_overrides=(("Human", 99, (3, 3)),))
    assert scale.spatial_size("Macaque") == (10, (2, 1))
    assert scale.spatial_size("Human") == (99, (3, 3))


def test_exact_mouse_taxonomy_has_the_whole_mouse_brain_counts_per_level():
    tax = build_wmb_taxonomy(5_322, 338, 1_201)
    assert (len(tax["classes"]), len(tax["subclasses"]), len(tax["supertypes"]), len(tax["clusters"])) == \
        (34, 338, 1_201, 5_322)
    for level in ("subclasses", "supertypes", "clusters"):
        names = [t["name"] for t in tax[level]]
        assert len(set(names)) == len(names), level
    subclass_numbers = [int(s["name"][:3]) for s in tax["subclasses"]]
    assert subclass_numbers == list(range(1, 339))
    assert {s["subclass"] for s in tax["supertypes"]} == {s["name"] for s in tax["subclasses"]}
    assert {c["supertype"] for c in tax["clusters"]} == {s["name"] for s in tax["supertypes"]}


def test_exact_taxonomy_needs_both_subclass_and_supertype_counts():
    with pytest.raises(ValueError, match="both"):
        build_wmb_taxonomy(500, n_subclasses=200)


def test_streamed_wmb_matrices_are_float32_csr_that_anndata_reads(streamed):
    files = sorted((streamed / WMB_EXPR).glob("*-log2.h5ad"))
    assert len(files) == 13
    for path in files[:3]:
        with h5py.File(path) as f:
            assert f["X"].attrs["encoding-type"] == "csr_matrix"
            assert f["X/data"].dtype == np.float32 and f["X/indices"].dtype == np.int32
            assert f["X/data"].compression == "gzip"
        adata = ad.read_h5ad(path)
        assert sp.issparse(adata.X) and adata.X.dtype == np.float32
        assert adata.obs.index.name == "cell_label" and adata.var.index.name == "gene_identifier"
        assert adata.X.indptr[-1] == adata.X.nnz


def test_streamed_wmb_cell_table_lists_every_matrix_cell_once(streamed):
    table = pd.read_csv(streamed / WMB_META / "cell_metadata.csv", dtype={"cell_label": str}, keep_default_na=False)
    labels = []
    for path in sorted((streamed / WMB_EXPR).glob("*-log2.h5ad")):
        labels.extend(ad.read_h5ad(path, backed="r").obs_names)
    assert len(table) == STREAMED.wmb_cells
    assert table["cell_label"].is_unique
    assert sorted(labels) == sorted(table["cell_label"])


def test_streamed_wmb_rows_are_log2_cpm(streamed):
    adata = ad.read_h5ad(sorted((streamed / WMB_EXPR).glob("*-log2.h5ad"))[0])
    counts = np.expm1(adata.X.toarray().astype(np.float64) * np.log(2))
    totals = counts.sum(axis=1)
    expressing = totals > 0
    np.testing.assert_allclose(totals[expressing], 1e6, rtol=1e-3)


def test_streamed_spatial_matrix_keeps_the_quirk_cells_and_the_overridden_size(streamed):
    meta = streamed / "metadata" / HUMAN / "20250630"
    table = pd.read_csv(meta / "cell_metadata.csv", dtype={"cell_label": str})
    adata = ad.read_h5ad(next((streamed / "expression_matrices" / HUMAN).rglob("*-log2.h5ad")), backed="r")
    in_table = set(table["cell_label"])
    in_h5ad = set(adata.obs_names)
    assert len(in_h5ad - in_table) == STREAMED.quirk_cells
    assert len(in_table - in_h5ad) == STREAMED.quirk_cells
    cells, sections = STREAMED.spatial_size("Human")
    assert len(table) == cells * sum(sections) - STREAMED.quirk_cells  # tiles share their plane's cells


def test_streamed_example_genes_match_the_matrix(streamed):
    meta = streamed / "metadata" / HUMAN / "20250630"
    example = pd.read_csv(meta / "example_gene_expression.csv", dtype={"cell_label": str}).set_index("cell_label")
    adata = ad.read_h5ad(next((streamed / "expression_matrices" / HUMAN).rglob("*-log2.h5ad")))
    symbol_to_id = dict(zip(adata.var["gene_symbol"], adata.var_names))
    sample = example.index[:200]
    gene = example.columns[0]
    from_matrix = adata[sample, symbol_to_id[gene]].X.toarray().ravel()
    np.testing.assert_allclose(example.loc[sample, gene].to_numpy(), np.round(from_matrix, 4), atol=1e-4)


def test_streamed_cache_is_byte_identical_for_the_same_seed(streamed, tmp_path):
    again = tmp_path / "again"
    write_demo_cache(again, seed=5, scale=STREAMED)

    def hashes(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != "_downloaded_data.json"}

    assert hashes(again) == hashes(streamed)


def test_streaming_writer_appends_chunks_into_one_matrix(tmp_path):
    rng = np.random.default_rng(0)
    parts = [sp.random(n, 6, density=0.3, format="csr", dtype=np.float32, random_state=rng) for n in (4, 0, 7)]
    labels = [f"c{i}" for i in range(11)]
    with StreamingH5adWriter(tmp_path / "m-log2.h5ad", [f"g{j}" for j in range(6)], [f"G{j}" for j in range(6)]) as w:
        w.append(parts[0], labels[:4])
        w.append(parts[1], [])
        w.append(parts[2], labels[4:])
    adata = ad.read_h5ad(tmp_path / "m-log2.h5ad")
    np.testing.assert_array_equal(adata.X.toarray(), sp.vstack(parts).toarray())
    assert list(adata.obs_names) == labels
    assert list(adata.var["gene_symbol"]) == [f"G{j}" for j in range(6)]


def test_streaming_writer_removes_a_half_written_file_on_error(tmp_path):
    path = tmp_path / "broken-log2.h5ad"
    with pytest.raises(ValueError, match="does not match"):
        with StreamingH5adWriter(path, ["g0", "g1"], ["G0", "G1"]) as w:
            w.append(sp.csr_matrix(np.ones((2, 3), dtype=np.float32)), ["a", "b"])
    assert not path.exists()
