"""Each quirk of ABC_LAYOUT.md read correctly, on a small hand-made cache (tests/abc_builders.py)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from abc_builders import BG_10X, HUMAN, MARMOSET, WMB, build_quirky_cache, expected_gene
from data_layer import Atlas
from data_layer.prepare import prepare_store


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    root = tmp_path_factory.mktemp("quirky")
    q = build_quirky_cache(root / "cache")
    prepare_store(q.root, root / "store", memory_limit_bytes=64 << 20)
    return q, Atlas.open(root / "store")


def _by_label(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index(df["cell_label"].astype(str))


def test_string_cluster_aliases_of_the_bg_taxonomy_give_cluster_names(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(HUMAN))
    mem = q.tables[f"{HUMAN}/membership"]
    mapped = mem[mem["cluster_alias"] == "Human-143"]["cell_label"]
    mapped = [c for c in mapped if c in cells.index]
    assert mapped
    assert set(cells.loc[mapped, "Cluster"]) == {"Human-143"}
    assert set(cells.loc[mapped, "Subclass"]) == {"STR D1 MSN"}


def test_integer_cluster_aliases_of_the_mouse_taxonomy_are_matched_as_strings(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(WMB))
    cm = q.tables["wmb/cell_metadata"]
    with14 = cm[cm["cluster_alias"] == "14"]["cell_label"]
    assert len(with14)
    assert set(cells.loc[list(with14), "cluster"]) == {"0014 IT EP-CLA Glut_1"}


def test_a_term_named_NA_stays_the_string_NA(quirky):
    q, atlas = quirky
    tax = atlas.taxonomy(WMB)
    assert "NA" in list(tax.terms("neurotransmitter")["name"])
    cells = _by_label(atlas.cells(WMB))
    cm = q.tables["wmb/cell_metadata"]
    astro = list(cm[cm["cluster_alias"].isin(["5300", "5301"])]["cell_label"])
    assert list(cells.loc[astro, "neurotransmitter"].astype(str).unique()) == ["NA"]
    assert not cells["neurotransmitter"].isna().any()


def test_mixed_case_colours_are_normalised_to_lowercase_hex(quirky):
    q, atlas = quirky
    terms = q.tables["bg_terms"]
    tax = atlas.taxonomy(HUMAN)
    got = {}
    for level in tax.levels:
        df = tax.terms(level)
        got.update(dict(zip(df["label"], df["color"])))
    expected = dict(zip(terms["label"], terms["color_hex_triplet"].str.lower()))
    assert got == expected
    assert any(c != c.lower() for c in terms["color_hex_triplet"])  # the source really is mixed case
    assert atlas.region_colors(HUMAN)["GPe"] == "#53db33"


def test_marmoset_slab_coordinates_are_read_by_column_name(quirky):
    q, atlas = quirky
    coords = q.tables[f"{MARMOSET}/coords"].set_index("cell_label")
    assert list(coords.columns[:3]) == ["brain_section_label", "x_rotated_um", "y_rotated_um"]
    cells = _by_label(atlas.cells(MARMOSET))
    np.testing.assert_allclose(cells["x"], coords.loc[cells.index, "x_slab_mm"], rtol=1e-6)
    np.testing.assert_allclose(cells["y"], coords.loc[cells.index, "y_slab_mm"], rtol=1e-6)


def test_alignment_job_ids_mixing_integers_and_hashes_do_not_break_the_10x_table(quirky):
    q, atlas = quirky
    cm = q.tables["bg10x/cell_metadata"]
    assert cm["alignment_job_id"].str.isdigit().any() and not cm["alignment_job_id"].str.isdigit().all()
    emb = q.tables["bg10x/embedding"]
    expected = set(cm["cell_label"]) & set(emb["cell_label"])
    assert set(atlas.cells(BG_10X)["cell_label"].astype(str)) == expected


def test_qc_failed_cells_with_empty_abc_sample_id_are_kept_with_their_bool_qc_pass(quirky):
    q, atlas = quirky
    cm = q.tables[f"{HUMAN}/cell_metadata"].set_index("cell_label")
    cells = _by_label(atlas.cells(HUMAN))
    assert cells["qc_pass"].dtype == bool
    failed = cm[(cm["abc_sample_id"] == "") & ~cm["qc_pass"]].index
    failed = [c for c in failed if c not in q.facts[f"{HUMAN}/no_coords"]]
    assert failed
    assert set(failed) <= set(cells.index)
    assert not cells.loc[failed, "qc_pass"].any()
    assert (cells["qc_pass"] == cm.loc[cells.index, "qc_pass"]).all()


def test_cells_without_slab_coordinates_are_left_out_and_orphan_coordinates_ignored(quirky):
    q, atlas = quirky
    labels = set(atlas.cells(HUMAN)["cell_label"].astype(str))
    assert not labels & set(q.facts[f"{HUMAN}/no_coords"])
    assert "9999999999_orphan-20250227" not in labels
    assert len(labels) == len(q.tables[f"{HUMAN}/cell_metadata"]) - 2


def test_h5ad_rows_absent_from_the_metadata_are_dropped(quirky):
    q, atlas = quirky
    cells = atlas.cells(HUMAN)
    values = atlas.gene(HUMAN, "DRD1")
    assert len(values) == len(cells)
    np.testing.assert_allclose(values, expected_gene(q, HUMAN, "DRD1", cells["cell_label"].astype(str)),
                               rtol=2e-3, atol=2e-3, equal_nan=True)


def test_metadata_cells_missing_from_the_h5ad_get_nan(quirky):
    q, atlas = quirky
    cells = atlas.cells(HUMAN)
    values = atlas.gene(HUMAN, "PENK")
    missing = cells["cell_label"].astype(str).isin(q.facts[f"{HUMAN}/no_expression"]).to_numpy()
    assert missing.sum() == 2
    assert np.isnan(values[missing]).all()
    assert not np.isnan(values[~missing]).any()


def test_unmapped_cells_are_unassigned_at_every_level(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(HUMAN))
    mapped = set(q.tables[f"{HUMAN}/membership"]["cell_label"])
    unmapped = [c for c in cells.index if c not in mapped]
    assert unmapped
    for level in atlas.info(HUMAN).levels:
        assert set(cells.loc[unmapped, level]) == {"unassigned"}
    assert (cells.loc[[c for c in cells.index if c in mapped], "Cluster"] != "unassigned").all()


def test_aliases_absent_from_the_taxonomy_are_adjacent(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(HUMAN))
    mem = q.tables[f"{HUMAN}/membership"]
    adjacent = [c for c in mem[mem["cluster_alias"].str.contains("Adjacent")]["cell_label"] if c in cells.index]
    assert adjacent
    assert set(cells.loc[adjacent, "Class"]) == {"Adjacent"}
    tax = atlas.taxonomy(HUMAN)
    cats = tax.categories("Class")
    assert cats[-2:] == ["Adjacent", "unassigned"]
    assert tax.colors("Class")[-2:] == ["#808080", "#c8c8c8"]
    assert list(cells["Class"].cat.categories) == cats


def test_mouse_adjacent_and_unassigned_cells_are_kept(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(WMB))
    cm = q.tables["wmb/cell_metadata"].set_index("cell_label")
    assert cells.loc[cm.index[cm["cluster_alias"] == "9999"], "cluster"].tolist() == ["Adjacent"]
    assert cells.loc[cm.index[cm["cluster_alias"] == ""], "class"].tolist() == ["unassigned"]
    assert len(cells) == len(cm)


def test_regions_come_from_parcellation_term_symbol_with_a_default_for_unlabelled_cells(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(HUMAN))
    ann = q.tables[f"{HUMAN}/annotations"].set_index("cell_label")
    expected = ann["parcellation_term_symbol"].reindex(cells.index).fillna("").replace("", "Basal ganglia and adjacent")
    assert (cells["region"].astype(str) == expected).all()
    assert list(cells["region"].cat.categories) == list(atlas.region_colors(HUMAN))


def test_views_files_are_known_to_the_manifest_and_not_reported_unknown(quirky, tmp_path, caplog):
    q, _ = quirky
    from data_layer.manifest import LocalCache

    cache = LocalCache(q.root)
    view = cache.path("WMB-taxonomy", "metadata", "cluster_to_cluster_annotation_membership_pivoted")
    assert view.parent.name == "views" and view.is_file()
    assert view not in cache.unknown_files()


def test_geometry_collections_become_multipolygons_and_non_polygons_are_dropped(quirky):
    _, atlas = quirky
    fc = atlas.polygons(HUMAN, "H22.30.001.CX.13.Plane.05")
    by_label = {f["properties"]["label"]: f for f in fc["features"]}
    assert set(by_label) == {"STR", "GPe", "SN"}
    assert by_label["SN"]["geometry"]["type"] == "MultiPolygon"
    assert len(by_label["SN"]["geometry"]["coordinates"]) == 2
    assert by_label["STR"]["geometry"]["type"] == "Polygon"
    assert by_label["STR"]["properties"]["color"] == atlas.region_colors(HUMAN)["STR"]


def test_a_plane_without_geojson_has_no_polygons(quirky):
    _, atlas = quirky
    planes = atlas.slab_planes(HUMAN).set_index("slab_plane_label")
    assert not planes.loc["H22.30.001.CX.12.Plane.01", "has_polygons"]
    assert planes.loc["H22.30.001.CX.13.Plane.05", "has_polygons"]
    assert atlas.polygons(HUMAN, "H22.30.001.CX.12.Plane.01") == {"type": "FeatureCollection", "features": []}


def test_an_unknown_extra_file_is_ignored_with_a_log_line(quirky, tmp_path, caplog):
    q, _ = quirky
    with caplog.at_level(logging.INFO, logger="data_layer.prepare"):
        prepare_store(q.root, tmp_path / "store", datasets=[WMB])
    assert any("notes.txt" in r.getMessage() and "not listed in the manifest" in r.getMessage()
               for r in caplog.records)


def test_sections_follow_slab_plane_order_then_section_ordinal_not_labels(quirky):
    q, atlas = quirky
    sections = atlas.sections(HUMAN)
    assert list(sections["brain_section_label"]) == [
        "H22.30.001.CX.13.01.03.01", "H22.30.001.CX.13.01.03.02", "H22.30.001.CX.12.01.01.04"]
    assert list(atlas.slab_planes(HUMAN)["slab_plane_label"]) == ["H22.30.001.CX.13.Plane.05",
                                                                  "H22.30.001.CX.12.Plane.01"]


def test_one_sections_cells_are_one_contiguous_row_range(quirky):
    _, atlas = quirky
    whole = atlas.cells(HUMAN)
    for row in atlas.sections(HUMAN).itertuples():
        part = atlas.cells(HUMAN, section=row.brain_section_label)
        assert len(part) == row.n_cells
        assert (part["brain_section_label"] == row.brain_section_label).all()
        block = whole.iloc[row.row_start:row.row_stop]
        assert list(block["cell_label"]) == list(part["cell_label"])


def test_10x_species_come_from_the_donor_table(quirky):
    q, atlas = quirky
    cells = _by_label(atlas.cells(BG_10X))
    cm = q.tables["bg10x/cell_metadata"].set_index("cell_label")
    donors = q.tables["bg10x/donor"].set_index("donor_label")["species_genus"]
    expected = cm.loc[cells.index, "donor_label"].map(donors)
    assert (cells["species"].astype(str) == expected).all()
    assert atlas.info(BG_10X).species is None  # several species


def test_wmb_expression_comes_from_every_regional_file_with_symbols_from_gene_csv(quirky):
    q, atlas = quirky
    cells = atlas.cells(WMB)
    values = atlas.gene(WMB, "drd2")
    np.testing.assert_allclose(values, expected_gene(q, WMB, "Drd2", cells["cell_label"].astype(str)),
                               rtol=2e-3, atol=2e-3)
    assert set(atlas.genes(WMB)["gene_symbol"]) == {"Drd1", "Drd2", "Penk", "Gad1", "Aqp4", "Slc17a7"}
    files = atlas.catalog["datasets"][WMB]["expression_files"]
    assert sorted(f.split("/")[1] for f in files) == ["WMB-10Xv2", "WMB-10Xv3"]


@pytest.mark.parametrize("dataset", [MARMOSET, BG_10X])
def test_dense_and_csc_expression_matrices_are_read(quirky, dataset):
    q, atlas = quirky
    cells = atlas.cells(dataset)
    np.testing.assert_allclose(atlas.gene(dataset, "TAC1"),
                               expected_gene(q, dataset, "TAC1", cells["cell_label"].astype(str)),
                               rtol=2e-3, atol=2e-3, equal_nan=True)


@pytest.fixture(scope="module")
def mouse_extras(tmp_path_factory):
    """A cache with the consensus mouse taxonomy (embedding + two-column membership) and a MERFISH-like table."""
    from abc_builders import CONSENSUS, CacheBuilder, QuirkyCache, add_consensus

    root = tmp_path_factory.mktemp("consensus")
    b = CacheBuilder(root / "cache")
    q = QuirkyCache(root=root / "cache", builder=b)
    add_consensus(b, q, np.random.default_rng(0))
    b.csv("MERFISH-C57BL6J-638850", "cell_metadata", pd.DataFrame(
        {"cell_label": ["m1", "m2"], "x": [1.0, 2.0], "y": [1.0, 2.0], "z": [5.0, 5.0], "cluster_alias": ["1", "2"]}))
    b.write_manifest()
    prepare_store(q.root, root / "store")
    return q, Atlas.open(root / "store"), CONSENSUS


def test_the_consensus_taxonomy_is_prepared_with_its_own_umap(mouse_extras):
    q, atlas, name = mouse_extras
    assert atlas.datasets() == [name]
    info = atlas.info(name)
    assert (info.kind, info.species, info.n_genes) == ("umap", "Mouse", 0)
    assert info.levels == ["neurotransmitter", "neighborhood", "class", "subclass", "supertype", "cluster"]
    cells = atlas.cells(name)
    assert list(cells["cell_label"]) == list(q.tables["consensus/labels"]["cell_label"])
    assert list(cells["cluster"].astype(str))[-2:] == ["unassigned", "unassigned"]
    assert cells["cluster"].iloc[0] == "cluster-1"


def test_mouse_merfish_cell_tables_with_z_are_not_taken_for_a_umap(mouse_extras):
    _, atlas, _ = mouse_extras
    assert "MERFISH-C57BL6J-638850" not in atlas.datasets()
