"""The demo cache is a true ABC cache: manifest, folders, file names, columns, dtypes, encodings, quirks.

Expected columns are copied from /work/shared/ABC_LAYOUT.md (the release's tables), not from the generator.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import shape

from data_layer.demo import RELEASE, DemoScale, write_demo_cache
from data_layer.manifest import LocalCache

HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"
MACAQUE = "HMBA-MERSCOPE-QM23.50.001-BG"
MARMOSET = "HMBA-Xenium-CJ23.56.004-BG"
SPATIAL = (HUMAN, MACAQUE, MARMOSET)
BG_TAX = "HMBA-BG-taxonomy-CCN20250428"
ALIGNED = "HMBA-10xMultiome-BG-Aligned"
BUCKET = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"
FIXTURE_MANIFEST = Path("/work/shared/fixtures/manifest-20250531.json")

SPATIAL_TAGS = {"cell_anatomical_annotations", "cell_metadata", "cell_supplemental_metadata",
                "cell_to_cluster_membership", "donor", "example_gene_expression", "gene", "mmc_results",
                "slab_plane_coordinates", "specimen_metadata", "value_sets", "visualization"}

COLUMNS = {
    (None, "cell_metadata"): ["cell_label", "brain_section_label", "brain_section_barcode", "segmentation_job_id",
                              "x_experiment", "y_experiment", "qc_pass", "dataset_label", "feature_matrix_label",
                              "abc_sample_id"],
    (None, "specimen_metadata"): [
        "brain_section_label", "brain_section_barcode", "brain_section_thickness", "brain_section_plane_of_section",
        "brain_section_ordinal", "brain_section_depth", "section_set_label", "section_set_ordinal",
        "section_set_base_ordinal", "brain_block_label", "brain_block_number", "brain_slab_label",
        "brain_slab_ordinal", "brain_slab_thickness", "hemisphere", "brain_division_label", "brain_division_ordinal",
        "donor_label", "slab_plane_ordinal", "slab_plane_label", "slab_plane_order"],
    (HUMAN, "slab_plane_coordinates"): ["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"],
    (MACAQUE, "slab_plane_coordinates"): ["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"],
    (MARMOSET, "slab_plane_coordinates"): ["cell_label", "brain_section_label", "x_rotated_um", "y_rotated_um",
                                           "slab_plane_label", "x_slab_mm", "y_slab_mm"],
    (None, "cell_anatomical_annotations"): ["cell_label", "Basal ganglia and adjacent", "STR", "GP", "GPe", "GPi",
                                            "VeP", "SN", "STH", "parcellation_term_symbol"],
    (None, "cell_to_cluster_membership"): ["cell_label", "cluster_alias", "cluster_label"],
    (HUMAN, "gene"): ["gene_identifier", "gene_symbol", "description", "transcript_identifier", "chromosome",
                      "molecular_type"],
    (MACAQUE, "gene"): ["gene_identifier", "gene_symbol", "description", "molecular_type", "ensembl_gene_identifier",
                        "ncbi_gene_identifier", "ncbi_gene_symbol", "ncbi_description", "match_method"],
    (MARMOSET, "gene"): ["gene_identifier", "gene_symbol", "description", "molecular_type"],
    (None, "value_sets"): ["label", "table", "field", "description", "order", "external_identifier", "parent_label",
                           "color_hex_triplet"],
}
TAXONOMY_COLUMNS = {
    "cluster_annotation_term_set": ["label", "name", "description", "order", "parent_term_set_label"],
    "cluster_annotation_term": ["label", "name", "cluster_annotation_term_set_label",
                                "cluster_annotation_term_set_name", "color_hex_triplet", "term_order",
                                "term_set_order", "parent_term_label", "parent_term_name", "parent_term_set_label"],
    "cluster": ["label", "cluster_alias", "number_of_cells"],
    "cluster_to_cluster_annotation_membership": ["cluster_annotation_term_label", "cluster_annotation_term_set_label",
                                                 "cluster_alias", "cluster_annotation_term_set_name",
                                                 "cluster_annotation_term_name"],
    "cell_2d_embedding_coordinates": ["cell_label", "x", "y"],
}
ALIGNED_CELL_COLUMNS = ["cell_label", "cell_barcode", "donor_label", "barcoded_cell_sample_label", "library_label",
                        "alignment_job_id", "doublet_score", "umi_count", "feature_matrix_label", "dataset_label",
                        "abc_sample_id"]
ALIGNED_DONOR_COLUMNS = ["donor_label", "donor_species", "species_scientific_name", "species_genus", "donor_sex",
                         "donor_age", "donor_age_value", "donor_age_unit", "donor_nhash_id"]
WMB_CELL_COLUMNS = ["cell_label", "cell_barcode", "barcoded_cell_sample_label", "library_label",
                    "feature_matrix_label", "entity", "brain_section_label", "library_method",
                    "region_of_interest_acronym", "donor_label", "donor_genotype", "donor_sex", "dataset_label", "x",
                    "y", "cluster_alias", "abc_sample_id"]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entries(manifest: dict):
    for dataset, kinds in manifest["file_listing"].items():
        for kind, tags in kinds.items():
            for tag, entry in tags.items():
                for variant, sub in ([(None, entry)] if "files" in entry else entry.items()):
                    for fmt, info in sub["files"].items():
                        yield dataset, kind, tag, variant, fmt, info


@pytest.fixture(scope="module")
def manifest(demo_cache) -> dict:
    return json.loads((demo_cache / "releases" / RELEASE / "manifest.json").read_text())


@pytest.fixture(scope="module")
def cache(demo_cache) -> LocalCache:
    return LocalCache(demo_cache)


def _csv(cache: LocalCache, dataset: str, tag: str, **kw) -> pd.DataFrame:
    return pd.read_csv(cache.path(dataset, "metadata", tag), **kw)


# ------------------------------------------------------------------------------------------------- manifest

def test_every_manifest_file_exists_with_its_true_size_and_md5(demo_cache, manifest):
    entries = list(_entries(manifest))
    assert len(entries) > 60
    for *_, info in entries:
        path = demo_cache / info["relative_path"]
        assert path.is_file(), info["relative_path"]
        assert path.stat().st_size == info["size"], info["relative_path"]
        assert _md5(path) == info["file_hash"], info["relative_path"]


def test_every_data_file_of_the_cache_is_in_the_manifest(demo_cache, manifest):
    listed = {info["relative_path"] for *_, info in _entries(manifest)}
    on_disk = {p.relative_to(demo_cache).as_posix() for kind in ("metadata", "expression_matrices", "image_volumes")
               for p in (demo_cache / kind).rglob("*") if p.is_file()}
    assert on_disk == listed


def test_manifest_entries_follow_the_release_schema(manifest):
    assert manifest["version"] == RELEASE
    assert manifest["resource_uri"] == "s3://allen-brain-cell-atlas/"
    for dataset, kinds, tag, variant, fmt, info in _entries(manifest):
        assert list(info) == ["version", "relative_path", "url", "size", "file_hash"]
        rel = info["relative_path"]
        assert info["url"] == BUCKET + rel
        assert rel.startswith(f"{kinds}/{dataset}/{info['version']}/")
        name = rel.rsplit("/", 1)[1]
        if kinds == "expression_matrices":
            assert variant in ("log2", "raw") and fmt == "h5ad" and name == f"{tag}-{variant}.h5ad"
        else:
            assert name == f"{tag}.{fmt}"
    for dataset, kinds in manifest["file_listing"].items():
        for kind in kinds:
            d = manifest["directory_listing"][dataset]["directories"][kind]
            assert list(d) == ["version", "relative_path", "url", "view_link", "total_size"]
            assert d["url"] == BUCKET + d["relative_path"] + "/"
            assert d["view_link"] == BUCKET + "index.html#" + d["relative_path"] + "/"
            sizes = [info["size"] for ds, k, *_, info in _entries(manifest) if ds == dataset and k == kind]
            assert d["total_size"] == sum(sizes)


def test_manifest_uses_the_real_release_file_names_of_the_bg_taxonomy_and_aligned_datasets(manifest):
    real = json.loads(FIXTURE_MANIFEST.read_text())["file_listing"]
    assert set(manifest["file_listing"][BG_TAX]["metadata"]) == set(real[BG_TAX]["metadata"])
    assert set(manifest["file_listing"][ALIGNED]["metadata"]) <= set(real[ALIGNED]["metadata"])
    assert set(manifest["file_listing"][ALIGNED]["expression_matrices"]) == {ALIGNED}
    assert set(manifest["file_listing"]["WMB-taxonomy"]["metadata"]) == set(real["WMB-taxonomy"]["metadata"])
    real_regions = set(real["WMB-10Xv3"]["expression_matrices"])
    assert set(manifest["file_listing"]["WMB-10Xv3"]["expression_matrices"]) <= real_regions


def test_manifest_last_used_names_the_demo_release(demo_cache):
    assert (demo_cache / "_manifest_last_used.txt").read_text() == f"releases/{RELEASE}/manifest.json"


def test_downloaded_record_lists_every_manifest_file_by_absolute_path(demo_cache, manifest):
    recorded = json.loads((demo_cache / "_downloaded_data.json").read_text())
    assert sorted(recorded) == sorted(str((demo_cache / i["relative_path"]).resolve())
                                      for *_, i in _entries(manifest))


def test_spatial_datasets_carry_every_metadata_tag_and_a_log2_matrix(manifest):
    for dataset in SPATIAL:
        assert set(manifest["file_listing"][dataset]["metadata"]) == SPATIAL_TAGS
        (tag,) = manifest["file_listing"][dataset]["expression_matrices"]
        assert tag == dataset.removeprefix("HMBA-")
        assert "log2" in manifest["file_listing"][dataset]["expression_matrices"][tag]


# --------------------------------------------------------------------------------------------------- columns

@pytest.mark.parametrize("dataset", SPATIAL)
@pytest.mark.parametrize("tag", ["cell_metadata", "specimen_metadata", "slab_plane_coordinates",
                                 "cell_anatomical_annotations", "cell_to_cluster_membership", "gene", "value_sets"])
def test_spatial_table_columns_are_the_release_columns_in_order(cache, dataset, tag):
    expected = COLUMNS.get((dataset, tag)) or COLUMNS[(None, tag)]
    header = list(pd.read_csv(cache.path(dataset, "metadata", tag), nrows=0).columns)
    assert header == expected


@pytest.mark.parametrize("tag", list(TAXONOMY_COLUMNS))
def test_bg_taxonomy_table_columns_are_the_release_columns_in_order(cache, tag):
    assert list(pd.read_csv(cache.path(BG_TAX, "metadata", tag), nrows=0).columns) == TAXONOMY_COLUMNS[tag]


def test_aligned_10x_tables_have_the_release_columns(cache):
    assert list(_csv(cache, ALIGNED, "cell_metadata", nrows=0).columns) == ALIGNED_CELL_COLUMNS
    assert list(_csv(cache, ALIGNED, "donor", nrows=0).columns) == ALIGNED_DONOR_COLUMNS
    library = _csv(cache, ALIGNED, "library")
    assert {"library_label", "region_of_interest_label", "donor_label"} <= set(library.columns)
    assert {"Ca", "Pu", "NAC", "GPe", "GPi", "SN", "STH"} <= set(library["region_of_interest_label"])
    assert list(_csv(cache, ALIGNED, "gene", nrows=0).columns) == ["gene_identifier", "gene_symbol", "description",
                                                                   "molecular_type"]


def test_wmb_tables_have_the_release_columns(cache):
    assert list(_csv(cache, "WMB-10X", "cell_metadata", nrows=0).columns) == WMB_CELL_COLUMNS
    pivoted = _csv(cache, "WMB-taxonomy", "cluster_to_cluster_annotation_membership_pivoted", nrows=0)
    assert list(pivoted.columns) == ["cluster_alias", "neurotransmitter", "class", "subclass", "supertype", "cluster"]
    colors = _csv(cache, "WMB-taxonomy", "cluster_to_cluster_annotation_membership_color", nrows=0)
    assert list(colors.columns) == ["cluster_alias", "neurotransmitter_color", "class_color", "subclass_color",
                                    "supertype_color", "cluster_color"]
    member = _csv(cache, "WMB-taxonomy", "cluster_to_cluster_annotation_membership", nrows=0)
    assert {"number_of_cells", "color_hex_triplet"} <= set(member.columns)
    terms = _csv(cache, "WMB-taxonomy", "cluster_annotation_term", nrows=0)
    assert "parent_term_name" not in terms.columns and "color_hex_triplet" in terms.columns


def test_example_gene_expression_has_cell_label_then_gene_symbols(cache):
    for dataset in SPATIAL:
        ex = _csv(cache, dataset, "example_gene_expression", nrows=5)
        genes = set(_csv(cache, dataset, "gene")["gene_symbol"])
        assert ex.columns[0] == "cell_label" and len(ex.columns) > 3
        assert set(ex.columns[1:]) <= genes


# ----------------------------------------------------------------------------------------------------- dtypes

def test_qc_pass_is_bool_and_failed_cells_can_lack_a_sample_id(cache):
    for dataset in SPATIAL:
        cells = _csv(cache, dataset, "cell_metadata", dtype={"cell_label": str})
        assert cells["qc_pass"].dtype == bool
        assert (~cells["qc_pass"]).any()
        assert cells.loc[~cells["qc_pass"], "abc_sample_id"].isna().any()
        assert cells.loc[cells["qc_pass"], "abc_sample_id"].notna().all()
        assert cells["cell_label"].is_unique


def test_bg_cluster_aliases_are_strings_and_wmb_ones_are_integers(cache):
    bg = _csv(cache, BG_TAX, "cluster")
    assert bg["cluster_alias"].dtype == object
    assert bg["cluster_alias"].str.match(r"^(Human|Macaque|Marmoset)-\d+$").all()
    wmb = _csv(cache, "WMB-taxonomy", "cluster")
    assert pd.api.types.is_integer_dtype(wmb["cluster_alias"])
    cells = _csv(cache, "WMB-10X", "cell_metadata", usecols=["cluster_alias"])
    assert pd.api.types.is_integer_dtype(cells["cluster_alias"])
    assert set(cells["cluster_alias"]) <= set(wmb["cluster_alias"])


def test_a_mouse_neurotransmitter_term_is_literally_named_NA(cache):
    path = cache.path("WMB-taxonomy", "metadata", "cluster_annotation_term")
    kept = pd.read_csv(path, keep_default_na=False)
    nt = kept[kept["cluster_annotation_term_set_name"] == "neurotransmitter"]
    assert "NA" in set(nt["name"])
    assert pd.read_csv(path)["name"].isna().sum() == 1  # what a default read makes of it


def test_term_colours_are_hex_triplets_in_mixed_case(cache):
    colors = _csv(cache, BG_TAX, "cluster_annotation_term")["color_hex_triplet"]
    assert colors.str.match(r"^#[0-9a-fA-F]{6}$").all()
    assert colors.str.contains(r"[A-F]").any() and colors.str.contains(r"[a-f]").any()


# ------------------------------------------------------------------------------------------------------ h5ad

def test_expression_files_are_compressed_float32_csr_indexed_by_cell_and_gene(demo_cache, manifest):
    paths = [demo_cache / i["relative_path"] for ds, kind, *_, i in _entries(manifest) if kind == "expression_matrices"]
    assert len(paths) >= 6
    for path in paths:
        with h5py.File(path, "r") as f:
            x = f["X"]
            assert x.attrs["encoding-type"] == "csr_matrix", path.name
            assert x["data"].dtype == np.float32
            assert x["data"].compression == "gzip" and x["indices"].compression == "gzip"
            assert f["obs"].attrs["_index"] == "cell_label"
            assert f["var"].attrs["_index"] == "gene_identifier"
            assert "gene_symbol" in f["var"]
            n_cells, n_genes = x.attrs["shape"]
            assert len(x["indptr"]) == n_cells + 1 and len(f["var"]["gene_identifier"]) == n_genes


def test_anndata_reads_a_demo_matrix_with_its_index_names(cache):
    anndata = pytest.importorskip("anndata")
    adata = anndata.read_h5ad(cache.path(HUMAN, "expression_matrices", "MERSCOPE-H22.30.001-BG", "log2"), backed="r")
    assert adata.obs.index.name == "cell_label" and adata.var.index.name == "gene_identifier"
    genes = _csv(cache, HUMAN, "gene")
    assert list(adata.var["gene_symbol"]) == list(genes["gene_symbol"])
    assert list(adata.var.index) == list(genes["gene_identifier"])
    adata.file.close()


def test_log2_values_are_log2_cpm_of_the_raw_counts(cache):
    """Marmoset example genes are raw counts; with the cell's total they give the matrix's log2 values."""
    anndata = pytest.importorskip("anndata")
    raw = _csv(cache, MARMOSET, "example_gene_expression", dtype={"cell_label": str}, nrows=3000)
    totals = _csv(cache, MARMOSET, "cell_supplemental_metadata", dtype={"cell_label": str},
                  usecols=["cell_label", "total_counts_genes"]).set_index("cell_label")["total_counts_genes"]
    adata = anndata.read_h5ad(cache.path(MARMOSET, "expression_matrices", "Xenium-CJ23.56.004-BG", "log2"))
    genes = list(raw.columns[1:])
    col = [list(adata.var["gene_symbol"]).index(g) for g in genes]
    x = adata[raw["cell_label"].to_numpy()].X[:, col].toarray()
    expected = np.log2(raw[genes].to_numpy() / totals.loc[raw["cell_label"]].to_numpy()[:, None] * 1e6 + 1)
    assert np.allclose(x, expected, rtol=1e-5, atol=1e-4)
    cpm = np.expm1(np.log(2) * adata.X[:2000].toarray().astype(np.float64)).sum(axis=1)
    assert np.allclose(cpm[cpm > 0], 1e6, rtol=1e-3)


# ----------------------------------------------------------------------------------------------------- quirks

def test_h5ad_and_cell_table_disagree_by_a_few_cells_each_way(cache):
    anndata = pytest.importorskip("anndata")
    for dataset in SPATIAL:
        tag = dataset.removeprefix("HMBA-")
        adata = anndata.read_h5ad(cache.path(dataset, "expression_matrices", tag, "log2"), backed="r")
        in_h5ad = set(adata.obs.index)
        adata.file.close()
        in_table = set(_csv(cache, dataset, "cell_metadata", usecols=["cell_label"], dtype=str)["cell_label"])
        assert 0 < len(in_h5ad - in_table) < 100
        assert 0 < len(in_table - in_h5ad) < 100


def test_some_cells_are_unmapped_and_some_map_to_aliases_absent_from_the_taxonomy(cache):
    taxonomy_aliases = set(_csv(cache, BG_TAX, "cluster")["cluster_alias"])
    for dataset in SPATIAL:
        cells = set(_csv(cache, dataset, "cell_metadata", usecols=["cell_label"], dtype=str)["cell_label"])
        member = _csv(cache, dataset, "cell_to_cluster_membership", dtype=str)
        assert set(member["cell_label"]) < cells  # unmapped cells exist
        outside = ~member["cluster_alias"].isin(taxonomy_aliases)
        assert 0 < outside.mean() < 0.3  # Adjacent cells
        assert member["cluster_alias"].str.split("-").str[0].nunique() == 1  # one species per dataset


def test_one_slab_plane_has_no_geojson_and_others_carry_multipolygon_and_geometry_collection(cache, manifest):
    planes_with_files = set()
    types = set()
    labels = set()
    for dataset in SPATIAL:
        specimen = _csv(cache, dataset, "specimen_metadata")
        planes = set(specimen["slab_plane_label"])
        assert len(planes) == 2
        assert specimen.groupby("slab_plane_label").size().between(2, 3).all()
        files = manifest["file_listing"][dataset].get("image_volumes", {})
        assert set(files) <= planes
        planes_with_files |= set(files)
        for plane in files:
            gj = json.loads(cache.path(dataset, "image_volumes", plane).read_text())
            assert gj["type"] == "FeatureCollection"
            for feature in gj["features"]:
                labels.add(feature["properties"]["label"])
                types.add(feature["geometry"]["type"])
                geometry = feature["geometry"]
                for part in geometry.get("geometries", [geometry]):
                    assert shape(part).is_valid, (plane, feature["properties"]["label"])
    assert len(planes_with_files) == 5
    assert {"MultiPolygon", "GeometryCollection", "Polygon"} <= types
    assert {"STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"} == labels


def test_coordinates_are_slab_millimetres_of_species_sized_sections(cache):
    widths = {}
    for dataset in SPATIAL:
        coords = _csv(cache, dataset, "slab_plane_coordinates")
        widths[dataset] = coords.groupby("slab_plane_label")["x_slab_mm"].agg(lambda x: x.max() - x.min()).mean()
    assert 25 < widths[HUMAN] < 45  # blocks around the basal ganglia
    assert 0.35 < widths[MACAQUE] / widths[HUMAN] < 0.6
    assert 6 < widths[MARMOSET] < 14  # a whole marmoset hemisphere


def test_sections_hold_20_to_40_thousand_cells(cache):
    for dataset in SPATIAL:
        per_section = _csv(cache, dataset, "cell_metadata", usecols=["brain_section_label"]).value_counts()
        assert per_section.between(15_000, 45_000).all(), per_section


# ------------------------------------------------------------------------------------------------- taxonomy

def test_bg_taxonomy_has_five_named_levels_and_the_real_top_names(cache):
    sets = _csv(cache, BG_TAX, "cluster_annotation_term_set")
    assert list(sets["label"]) == [f"CCN20250428_LEVEL_{i}" for i in range(5)]
    assert list(sets["name"]) == ["Neighborhood", "Class", "Subclass", "Group", "Cluster"]
    terms = _csv(cache, BG_TAX, "cluster_annotation_term")
    names = terms.groupby("cluster_annotation_term_set_name")["name"].apply(set)
    assert names["Neighborhood"] == {"Glut Sero Dopa", "Nonneuron", "Subpallium GABA", "Subpallium GABA-Glut"}
    assert names["Class"] == {"Astro-Epen", "CN CGE GABA", "CN GABA-Glut", "CN LGE GABA", "CN MGE GABA", "Cx GABA",
                              "F M GABA", "F M Glut", "Immune", "M Dopa", "OPC-Oligo", "Vascular"}
    assert {"STR D1 MSN", "STR D2 MSN", "STR Hybrid MSN", "OT Granular GABA", "Astrocyte"} <= names["Subclass"]
    assert 30 <= len(names["Subclass"]) <= 40 and 50 <= len(names["Group"]) <= 70
    assert 200 <= len(names["Cluster"]) <= 800


def test_bg_cluster_terms_are_named_by_their_alias_and_every_cluster_has_five_memberships(cache):
    cluster = _csv(cache, BG_TAX, "cluster")
    terms = _csv(cache, BG_TAX, "cluster_annotation_term").set_index("label")
    assert (terms.loc[cluster["label"], "name"].to_numpy() == cluster["cluster_alias"].to_numpy()).all()
    member = _csv(cache, BG_TAX, "cluster_to_cluster_annotation_membership")
    assert member.groupby("cluster_alias").size().eq(5).all()
    assert set(member["cluster_alias"]) == set(cluster["cluster_alias"])


def test_cluster_cell_counts_match_the_10x_membership(cache):
    cluster = _csv(cache, BG_TAX, "cluster").set_index("cluster_alias")["number_of_cells"]
    member = _csv(cache, BG_TAX, "cell_to_cluster_membership")["cluster_alias"].value_counts()
    assert (member.reindex(cluster.index).fillna(0).astype(int) == cluster).all()


def test_aligned_genes_include_every_spatial_panel_symbol_with_ncbi_ids(cache):
    genes = _csv(cache, ALIGNED, "gene")
    assert genes["gene_identifier"].str.startswith("NCBIGene:").all() and genes["gene_identifier"].is_unique
    assert 2500 <= len(genes) <= 4000
    for dataset in SPATIAL:
        assert set(_csv(cache, dataset, "gene")["gene_symbol"]) <= set(genes["gene_symbol"])


def test_species_gene_identifiers_use_their_id_styles(cache):
    human = _csv(cache, HUMAN, "gene")
    assert human["gene_identifier"].str.match(r"^ENSG00000\d{6}$").all()  # e.g. ENSG00000184845
    assert human["transcript_identifier"].str.match(r"^ENST00000\d{6}$").all()
    macaque = _csv(cache, MACAQUE, "gene")
    assert macaque["gene_identifier"].str.match(r"^ENSMMUG00000\d{6}$").all()
    assert (macaque["ensembl_gene_identifier"] == macaque["gene_identifier"]).all()
    assert macaque["ncbi_gene_identifier"].str.match(r"^NCBIGene:\d{6,9}$").all()
    assert _csv(cache, MARMOSET, "gene")["gene_identifier"].str.match(r"^NCBIGene:10\d{7}$").all()
    for dataset, n in ((HUMAN, 314), (MACAQUE, 315), (MARMOSET, 300)):
        genes = _csv(cache, dataset, "gene")
        assert len(genes) == n and genes["gene_identifier"].is_unique and genes["gene_symbol"].is_unique


def test_wmb_feature_matrix_labels_name_expression_files_of_the_release(cache, manifest):
    cells = _csv(cache, "WMB-10X", "cell_metadata", usecols=["feature_matrix_label", "dataset_label"])
    assert set(cells["dataset_label"]) == {"WMB-10Xv3"}
    assert set(cells["feature_matrix_label"]) == set(manifest["file_listing"]["WMB-10Xv3"]["expression_matrices"])
    assert {"WMB-10Xv3-STR", "WMB-10Xv3-CTXsp"} <= set(cells["feature_matrix_label"])


def test_wmb_term_names_carry_numeric_prefixes(cache):
    terms = _csv(cache, "WMB-taxonomy", "cluster_annotation_term", keep_default_na=False)
    classes = terms[terms["cluster_annotation_term_set_name"] == "class"]["name"]
    assert "01 IT-ET Glut" in set(classes) and len(classes) == 34
    for level, digits in (("class", 2), ("subclass", 3), ("supertype", 4), ("cluster", 4)):
        names = terms[terms["cluster_annotation_term_set_name"] == level]["name"]
        assert names.str.match(rf"^\d{{{digits}}} ").all(), level


# ------------------------------------------------------------------------------------- determinism and scale

_SMALL = DemoScale(cells_per_section=1500, tenx_cells=3000, tenx_genes=800, wmb_cells=2000, wmb_genes=300,
                   wmb_clusters=80, quirk_cells=5)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _md5(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "_downloaded_data.json"}


def test_same_seed_writes_identical_bytes_and_another_seed_differs(tmp_path):
    write_demo_cache(tmp_path / "a", seed=3, scale=_SMALL)
    write_demo_cache(tmp_path / "b", seed=3, scale=_SMALL)
    write_demo_cache(tmp_path / "c", seed=4, scale=_SMALL)
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(a) > 60
    assert a == b
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a) > len(a) // 2


def test_rewriting_a_cache_replaces_its_demo_files_without_leftovers(tmp_path):
    write_demo_cache(tmp_path / "a", seed=3, scale=_SMALL)
    stale = tmp_path / "a" / "metadata" / HUMAN / "20250630" / "stale.csv"
    stale.write_text("x\n1\n")
    write_demo_cache(tmp_path / "a", seed=3, scale=_SMALL)
    assert not stale.exists()


def test_an_unknown_scale_name_is_refused_naming_the_known_ones(tmp_path):
    # scale="atlas" (real size) is written by the bench; its streamed writers are tested in test_bench_atlas_scale.py
    with pytest.raises(ValueError, match="demo, atlas"):
        write_demo_cache(tmp_path, scale="huge")


# ------------------------------------------------------------------------------ the official access package

def test_official_access_package_opens_the_demo_cache(demo_cache):
    """Runs only where ``abc_atlas_access`` is installed (it is not on this machine's package index)."""
    project = pytest.importorskip("abc_atlas_access.abc_atlas_cache.abc_project_cache",
                                  reason="abc_atlas_access is not installable here")
    abc = project.AbcProjectCache.from_local_cache(demo_cache)
    assert abc.current_manifest == f"releases/{RELEASE}/manifest.json"
    assert HUMAN in abc.list_directories
    assert set(abc.list_metadata_files(HUMAN)) == SPATIAL_TAGS
    path = abc.get_file_path(directory=HUMAN, file_name="cell_metadata")
    assert Path(path).is_file()
