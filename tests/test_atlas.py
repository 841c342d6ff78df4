"""The Atlas API (docs/atlas_api.md) on a prepared hand-made store and, once available, on the demo store."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as MplPath

from abc_builders import BG_10X, HUMAN, MARMOSET, WMB, build_quirky_cache
from data_layer import Atlas
from data_layer.atlas import DatasetInfo
from data_layer.prepare import prepare_store


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    q = build_quirky_cache(root / "cache", n_per_section=40)
    prepare_store(q.root, root / "store")
    return Atlas.open(root / "store")


@pytest.fixture(scope="module", params=["quirky", "demo"])
def any_atlas(request, atlas, tmp_path_factory):
    """The API checks run on both stores; the demo one only when the demo generator's fixture exists."""
    if request.param == "quirky":
        return atlas
    try:
        store = request.getfixturevalue("demo_store")
    except pytest.FixtureLookupError:
        try:
            cache = request.getfixturevalue("demo_cache")
        except pytest.FixtureLookupError:
            pytest.skip("no demo_cache fixture yet")
        store = tmp_path_factory.mktemp("demo") / "store"
        prepare_store(cache, store)
    return Atlas.open(store)


def test_datasets_list_spatial_first_in_species_order_then_umaps(atlas):
    assert atlas.datasets() == [HUMAN, MARMOSET, BG_10X, WMB]


def test_info_is_a_frozen_dataclass_with_the_contract_fields(any_atlas):
    for name in any_atlas.datasets():
        info = any_atlas.info(name)
        assert isinstance(info, DatasetInfo)
        with pytest.raises(AttributeError):
            info.n_cells = 1  # frozen
        assert info.kind in ("spatial", "umap")
        assert info.platform in ("MERSCOPE", "Xenium", "10x")
        assert info.n_cells == len(any_atlas.cells(name))
        assert info.n_genes == len(any_atlas.genes(name))
        x, y = any_atlas.xy(name)
        assert info.bounds == pytest.approx((x.min(), x.max(), y.min(), y.max()))
        assert info.levels == any_atlas.taxonomy(name).levels
        if info.kind == "spatial":
            assert info.umap_dataset in any_atlas.datasets()
            assert any_atlas.info(info.umap_dataset).taxonomy == info.taxonomy


def test_unknown_dataset_raises_keyerror_listing_the_datasets(atlas):
    with pytest.raises(KeyError, match=HUMAN):
        atlas.cells("HMBA-MERSCOPE-H22-BG")


def test_sections_have_the_contract_columns_and_umap_datasets_have_none(any_atlas):
    for name in any_atlas.datasets():
        sections = any_atlas.sections(name)
        for col in ("brain_section_label", "slab_plane_label", "n_cells", "x_min", "x_max", "y_min", "y_max"):
            assert col in sections
        if any_atlas.info(name).kind == "umap":
            assert sections.empty
        else:
            assert sections["n_cells"].sum() == any_atlas.info(name).n_cells
            planes = any_atlas.slab_planes(name)
            assert list(planes["slab_plane_label"]) == list(dict.fromkeys(sections["slab_plane_label"]))
            assert planes["n_sections"].sum() == len(sections)


def test_cells_have_the_contract_columns_and_dtypes(any_atlas):
    for name in any_atlas.datasets():
        info = any_atlas.info(name)
        cells = any_atlas.cells(name)
        assert list(cells.columns[:3]) == ["cell_label", "x", "y"]
        assert isinstance(cells["cell_label"].iloc[0], str)
        assert cells["x"].dtype == np.float32 and cells["y"].dtype == np.float32
        for level in info.levels:
            assert isinstance(cells[level].dtype, pd.CategoricalDtype)
            assert list(cells[level].cat.categories) == any_atlas.taxonomy(name).categories(level)
        if info.kind == "spatial":
            for col in ("brain_section_label", "slab_plane_label", "region"):
                assert col in cells
            assert list(cells["region"].cat.categories) == list(any_atlas.region_colors(name))


def test_categories_are_the_same_for_every_section(any_atlas):
    name = any_atlas.datasets()[0]
    labels = any_atlas.sections(name)["brain_section_label"]
    first = any_atlas.cells(name, section=labels.iloc[0])
    last = any_atlas.cells(name, section=labels.iloc[-1])
    for level in any_atlas.info(name).levels:
        assert list(first[level].cat.categories) == list(last[level].cat.categories)


def test_cells_of_a_section_or_plane_are_the_matching_rows_of_all_cells(any_atlas):
    name = any_atlas.datasets()[0]
    whole = any_atlas.cells(name)
    for row in any_atlas.sections(name).itertuples():
        part = any_atlas.cells(name, section=row.brain_section_label)
        expected = whole[whole["brain_section_label"] == row.brain_section_label]
        assert list(part["cell_label"]) == list(expected["cell_label"])
    plane = any_atlas.slab_planes(name)["slab_plane_label"].iloc[0]
    part = any_atlas.cells(name, slab_plane=plane)
    assert (part["slab_plane_label"] == plane).all()
    assert len(part) == (whole["slab_plane_label"] == plane).sum()


def test_unknown_section_raises_keyerror_with_close_matches(atlas):
    real = atlas.sections(HUMAN)["brain_section_label"].iloc[0]
    with pytest.raises(KeyError, match=real.replace(".", r"\.")):
        atlas.cells(HUMAN, section=real[:-1] + "9")


def test_a_returned_frame_can_get_new_columns_without_changing_the_cache(atlas):
    a = atlas.cells(HUMAN)
    a["mine"] = 1
    assert "mine" not in atlas.cells(HUMAN)


def test_gene_is_aligned_with_cells_for_a_section_and_for_all(any_atlas):
    for name in any_atlas.datasets():
        genes = any_atlas.genes(name)
        if genes.empty:
            continue
        symbol = genes["gene_symbol"].iloc[len(genes) // 2]
        whole = any_atlas.gene(name, symbol)
        assert whole.dtype == np.float32 and len(whole) == any_atlas.info(name).n_cells
        sections = any_atlas.sections(name)
        if len(sections):
            row = sections.iloc[len(sections) // 2]
            part = any_atlas.gene(name, symbol, section=row["brain_section_label"])
            np.testing.assert_array_equal(part, whole[row["row_start"]:row["row_stop"]])


def test_gene_accepts_a_symbol_in_any_case_or_an_identifier(atlas):
    by_symbol = atlas.gene(HUMAN, "DRD1")
    identifier, symbol = atlas.resolve_gene(HUMAN, "drd1")
    assert symbol == "DRD1"
    np.testing.assert_array_equal(atlas.gene(HUMAN, "Drd1"), by_symbol)
    np.testing.assert_array_equal(atlas.gene(HUMAN, identifier), by_symbol)


def test_an_unknown_gene_raises_keyerror_naming_close_matches(atlas):
    with pytest.raises(KeyError, match="DRD1") as exc:
        atlas.gene(HUMAN, "DRD11")
    assert "DRD11" in str(exc.value)


def test_codes_and_xy_are_the_cells_columns_without_a_dataframe(any_atlas):
    name = any_atlas.datasets()[0]
    section = any_atlas.sections(name)["brain_section_label"].iloc[0]
    cells = any_atlas.cells(name, section=section)
    x, y = any_atlas.xy(name, section=section)
    np.testing.assert_array_equal(x, cells["x"])
    np.testing.assert_array_equal(y, cells["y"])
    for column in any_atlas.categorical_columns(name):
        codes = any_atlas.codes(name, column, section=section)
        np.testing.assert_array_equal(codes, cells[column].cat.codes)
        assert len(any_atlas.colors(name, column)) == len(any_atlas.categories(name, column))
        assert any_atlas.categories(name, column) == list(cells[column].cat.categories)


def test_taxonomy_terms_have_parents_colours_and_counts_of_the_dataset(any_atlas):
    name = any_atlas.datasets()[0]
    tax = any_atlas.taxonomy(name)
    cells = any_atlas.cells(name)
    for i, level in enumerate(tax.levels):
        terms = tax.terms(level)
        assert list(terms.columns) == ["label", "name", "color", "parent", "n_cells"]
        counts = cells[level].value_counts()
        assert (terms["n_cells"].to_numpy() == counts.reindex(terms["name"]).fillna(0).to_numpy()).all()
        assert terms["color"].str.match(r"^#[0-9a-f]{6}$").all()
        if i == 0:
            assert (terms["parent"] == "").all()
        else:
            assert set(terms["parent"]) <= set(tax.terms(tax.levels[i - 1])["name"])
        assert tax.colors(level)[-2:] == ["#808080", "#c8c8c8"]


def test_taxonomy_path_walks_up_to_the_top_level(atlas):
    tax = atlas.taxonomy(HUMAN)
    assert tax.path("Cluster", "Human-143") == {"Neighborhood": "Subpallium GABA", "Class": "CN LGE GABA",
                                                "Subclass": "STR D1 MSN", "Group": "STR D1 MSN",
                                                "Cluster": "Human-143"}
    assert tax.children("Class", "Astro-Epen") == ["Astrocyte"]


def test_nearest_cell_is_the_closest_by_brute_force(any_atlas):
    name = any_atlas.datasets()[0]
    section = any_atlas.sections(name)["brain_section_label"].iloc[-1]
    x, y = (np.asarray(a, dtype=np.float64) for a in any_atlas.xy(name, section=section))
    rng = np.random.default_rng(1)
    for px, py in rng.uniform([x.min(), y.min()], [x.max(), y.max()], size=(5, 2)):
        row = any_atlas.nearest_cell(name, px, py, section=section)
        assert row == int(np.argmin((x - px) ** 2 + (y - py) ** 2))
    assert any_atlas.nearest_cell(name, x.max() + 1000, y.max(), section=section, max_distance=1.0) is None


def test_cells_in_polygon_match_a_point_in_polygon_test(atlas):
    section = atlas.sections(HUMAN)["brain_section_label"].iloc[0]
    xs, ys = [1.0, 6.0, 6.0, 2.0], [1.0, 1.5, 6.0, 5.0]
    rows = atlas.cells_in_polygon(HUMAN, xs, ys, section=section)
    x, y = atlas.xy(HUMAN, section=section)
    inside = MplPath(np.column_stack([xs, ys])).contains_points(np.column_stack([x, y]))
    assert 0 < len(rows) < len(x)
    np.testing.assert_array_equal(rows, np.flatnonzero(inside))


def test_search_genes_puts_symbol_prefixes_first(atlas):
    hits = atlas.search_genes("d", HUMAN)
    symbols = [h["gene_symbol"] for h in hits]
    assert symbols == ["DRD1", "DRD2", "GAD1"]  # prefixes, then substrings
    assert atlas.search_genes("ENSG00000000001", HUMAN)[0]["gene_symbol"] == "DRD2"
    assert atlas.search_genes("", HUMAN) == []


def test_search_terms_finds_names_at_every_level_with_colours(atlas):
    hits = atlas.search_terms("str d", HUMAN)
    assert [(h["level"], h["name"]) for h in hits[:2]] == [("Subclass", "STR D1 MSN"), ("Subclass", "STR D2 MSN")]
    assert all(h["color"].startswith("#") for h in hits)
    assert atlas.search_terms("astro", WMB)[0]["name"] == "30 Astro-Epen"


def test_cluster_stats_are_the_mean_and_fraction_of_each_cluster(any_atlas):
    name = next(n for n in any_atlas.datasets() if any_atlas.info(n).n_genes)
    stats = any_atlas.cluster_stats(name)
    tax = any_atlas.taxonomy(name)
    finest = tax.levels[-1]
    assert stats.clusters == tax.categories(finest)[:-2]
    assert stats.mean.shape == stats.fraction.shape == (len(stats.clusters), any_atlas.info(name).n_genes)
    cells = any_atlas.cells(name)
    g = len(stats.gene_identifiers) // 3
    values = any_atlas.gene(name, stats.gene_identifiers[g])
    for c in np.flatnonzero(stats.n_cells)[:5]:
        rows = (cells[finest].cat.codes.to_numpy() == c) & ~np.isnan(values)
        assert stats.mean[c, g] == pytest.approx(values[rows].mean(), abs=2e-3)
        assert stats.fraction[c, g] == pytest.approx((values[rows] > 0).mean(), abs=1e-6)


def test_term_markers_report_the_cell_weighted_mean_inside_a_term(atlas):
    from data_layer.analysis import markers_for_term

    markers = markers_for_term(atlas, HUMAN, "Class", "Astro-Epen", n=3)
    assert markers["diff"].is_monotonic_decreasing
    cells = atlas.cells(HUMAN)
    values = atlas.gene(HUMAN, markers["gene_identifier"].iloc[0])
    inside = (cells["Class"] == "Astro-Epen").to_numpy() & ~np.isnan(values)
    assert markers["mean_in"].iloc[0] == pytest.approx(values[inside].mean(), abs=2e-3)


def test_polygons_have_labels_and_colours_and_unknown_planes_raise(atlas):
    plane = atlas.slab_planes(HUMAN)["slab_plane_label"].iloc[0]
    fc = atlas.polygons(HUMAN, plane)
    assert fc["type"] == "FeatureCollection" and fc["features"]
    assert all({"label", "color"} <= set(f["properties"]) for f in fc["features"])
    with pytest.raises(KeyError):
        atlas.polygons(HUMAN, "no-such-plane")


def test_reads_from_several_threads_agree(atlas):
    sections = list(atlas.sections(HUMAN)["brain_section_label"])
    expected = {s: (atlas.cells(HUMAN, section=s)["cell_label"].tolist(), atlas.gene(HUMAN, "PENK", section=s))
                for s in sections}
    fresh = Atlas.open(atlas.root)
    errors = []

    def work(i):
        s = sections[i % len(sections)]
        try:
            labels = fresh.cells(HUMAN, section=s)["cell_label"].tolist()
            values = fresh.gene(HUMAN, "penk", section=s)
            fresh.nearest_cell(HUMAN, 3.0, 3.0, section=s)
            assert labels == expected[s][0]
            np.testing.assert_array_equal(values, expected[s][1])
        except Exception as exc:  # collected: assertion errors in threads would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_open_reads_only_the_catalog(atlas):
    fresh = Atlas.open(atlas.root)
    assert fresh._datasets == {}
    assert fresh.info(HUMAN).n_cells > 0 and fresh._datasets == {}


def test_a_taxonomy_opened_by_name_counts_cells_from_its_cluster_table(atlas):
    from abc_builders import BG_TAX, WMB_TAX

    assert set(atlas.taxonomies()) == {BG_TAX, WMB_TAX}
    tax = atlas.taxonomy(WMB_TAX)
    assert list(tax.terms("cluster")["n_cells"]) == [10] * 5  # number_of_cells of cluster.csv
    glut = tax.terms("neurotransmitter").set_index("name").loc["Glut", "n_cells"]
    assert glut == 20  # the two Glut clusters
