"""Selections, composition, linked clusters, marker genes and CSV export (data_layer.analysis)."""
from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from abc_builders import GENES, HUMAN, build_quirky_cache
from data_layer import Atlas
from data_layer import analysis as an
from data_layer.prepare import prepare_store

# ---------------------------------------------------------------------------------------------- geometry


@pytest.fixture(scope="module")
def grid():
    """Cells at half-integer points of a 10 x 10 square: no cell lies on an integer-vertex outline."""
    gx, gy = np.meshgrid(np.arange(10) + 0.5, np.arange(10) + 0.5)
    return gx.ravel().astype(np.float32), gy.ravel().astype(np.float32)


def test_lasso_on_a_concave_u_selects_exactly_the_cells_inside_it(grid):
    x, y = grid
    u_shape = [(0, 0), (10, 0), (10, 10), (7, 10), (7, 3), (3, 3), (3, 10), (0, 10)]
    expected = ~((x > 3) & (x < 7) & (y > 3))  # the square minus the notch of the U
    mask = an.cells_in_polygon(x, y, u_shape)
    assert mask.dtype == bool and mask.shape == x.shape
    np.testing.assert_array_equal(mask, expected)


def test_lasso_given_as_plotly_xs_ys_pair_equals_vertex_list(grid):
    x, y = grid
    tri = [(1, 1), (9, 1), (5, 8)]
    as_pair = ([p[0] for p in tri], [p[1] for p in tri])
    np.testing.assert_array_equal(an.cells_in_polygon(x, y, as_pair), an.cells_in_polygon(x, y, tri))
    inside = an.cells_in_polygon(x, y, tri)
    # (5.5, 4.5) is inside the triangle, (1.5, 7.5) is outside
    assert inside[(x == 5.5) & (y == 4.5)].all() and not inside[(x == 1.5) & (y == 7.5)].any()


def test_self_intersecting_lasso_selects_both_lobes_of_a_bow_tie(grid):
    x, y = grid
    mask = an.cells_in_polygon(x, y, [(0, 0), (10, 10), (10, 0), (0, 10)])
    left = (x < 5) & (y > x) & (y < 10 - x)
    right = (x > 5) & (y < x) & (y > 10 - x)
    np.testing.assert_array_equal(mask, left | right)


def test_lasso_with_fewer_than_three_distinct_vertices_selects_nothing(grid):
    x, y = grid
    assert not an.cells_in_polygon(x, y, [(0, 0), (5, 5), (0, 0)]).any()


def test_box_selects_cells_within_bounds_in_either_corner_order(grid):
    x, y = grid
    expected = (x > 2) & (x < 5) & (y > 6) & (y < 9)
    np.testing.assert_array_equal(an.cells_in_box(x, y, 2, 5, 6, 9), expected)
    np.testing.assert_array_equal(an.cells_in_box(x, y, 5, 2, 9, 6), expected)


def test_a_lasso_selection_masks_the_cells_inside_a_concave_outline(grid):
    x, y = grid
    sel = an.Selection.make("lasso", [0, 10, 10, 7, 7, 3, 3, 0], [0, 0, 10, 10, 3, 3, 10, 10])
    assert sel.kind == "lasso" and len(sel.xs) == 8
    np.testing.assert_array_equal(sel.mask(x, y), ~((x > 3) & (x < 7) & (y > 3)))


def test_selection_round_trips_through_a_json_dict():
    sel = an.Selection.make("lasso", [0, 4, 2], [0, 0, 3])
    assert an.Selection.from_dict(sel.to_dict()) == sel
    with pytest.raises(ValueError, match="not a selection"):
        an.Selection.from_dict({"kind": "box"})


def test_polygon_mask_rejects_misaligned_coordinates():
    with pytest.raises(ValueError, match="same length"):
        an.cells_in_polygon(np.zeros(3), np.zeros(4), [(0, 0), (1, 0), (0, 1)])


# ---------------------------------------------------------------------------------------------- composition


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    names = ["Astro", "Oligo", "D1", "D2", "Adjacent", "unassigned"]
    codes = rng.integers(-1, len(names), 500)
    cluster = pd.Categorical.from_codes(codes, categories=names)
    return pd.DataFrame({"cell_label": [f"c{i}" for i in range(500)], "x": rng.uniform(0, 1, 500),
                         "y": rng.uniform(0, 1, 500), "cluster": cluster,
                         "Subclass": pd.Categorical.from_codes(codes // 2, categories=["glia", "msn", "other"])})


def test_composition_counts_equal_pandas_value_counts(table):
    mask = table["x"].to_numpy() < 0.6
    colors = ["#111111", "#222222", "#333333", "#444444", "#808080", "#c8c8c8"]
    comp = an.composition(table, "cluster", mask, colors=colors)
    expected = table.loc[mask, "cluster"].value_counts()
    expected = expected[expected > 0]
    assert dict(zip(comp["term"], comp["n_cells"])) == expected.to_dict()
    assert list(comp["n_cells"]) == sorted(comp["n_cells"], reverse=True)
    np.testing.assert_allclose(comp["fraction"], comp["n_cells"] / table.loc[mask, "cluster"].notna().sum())
    assert dict(zip(comp["term"], comp["color"]))["D1"] == "#333333"


def test_composition_accepts_row_positions_and_a_colour_mapping(table):
    rows = np.arange(0, 500, 3)
    comp = an.composition(table, "Subclass", rows, colors={"msn": "#ff0000"})
    expected = table.iloc[rows]["Subclass"].value_counts()
    assert dict(zip(comp["term"], comp["n_cells"])) == expected[expected > 0].to_dict()
    colours = dict(zip(comp["term"], comp["color"]))
    assert colours["msn"] == "#ff0000" and colours["glia"] == an.FALLBACK_COLOR


def test_composition_of_an_empty_selection_is_empty(table):
    comp = an.composition(table, "cluster", np.zeros(len(table), dtype=bool))
    assert comp.empty and list(comp.columns) == ["term", "n_cells", "fraction", "color"]


def test_composition_names_a_missing_level(table):
    with pytest.raises(KeyError, match="Group"):
        an.composition(table, "Group")


def test_clusters_of_a_selection_drop_unassigned_and_rare_clusters(table):
    mask = table["y"].to_numpy() < 0.5
    counts = table.loc[mask, "cluster"].value_counts()
    total = counts.sum()
    out = an.clusters_of(table, mask, min_fraction=0.18)
    expected = {t: n for t, n in counts.items() if t not in ("Adjacent", "unassigned") and n / total >= 0.18}
    assert dict(zip(out["term"], out["n_cells"])) == expected
    assert set(an.clusters_of(table, mask, include_unassigned=True)["term"]) >= {"Adjacent", "unassigned"}


def test_cells_of_terms_selects_the_cells_of_the_named_clusters(table):
    mask = an.cells_of_terms(table, "cluster", ["D1", "Astro", "not a cluster"])
    np.testing.assert_array_equal(mask, table["cluster"].isin(["D1", "Astro"]).to_numpy())


# ---------------------------------------------------------------------------------------------- markers

D1, D2 = "Human-143", "Human-7"


def _known_marker_values(alias: np.ndarray, rng) -> np.ndarray:
    """log2 values with planted markers: DRD1 (and less TAC1) in D1 MSNs, PENK and DRD2 in D2 MSNs, AQP4 in
    astrocytes, MBP in oligodendrocytes; every gene has a sparse low background."""
    n = len(alias)
    values = np.where(rng.random((n, len(GENES))) < 0.15, rng.uniform(0.5, 2.0, (n, len(GENES))), 0.0)
    plant = {"DRD1": ([D1], 9.0), "TAC1": ([D1], 5.0), "PENK": ([D2], 10.0), "DRD2": ([D2], 8.0),
             "AQP4": (["Human-88"], 9.0), "MBP": (["Human-2"], 9.0)}
    for gene, (clusters, level) in plant.items():
        inside = np.isin(alias, clusters)
        values[inside, GENES.index(gene)] = level + rng.uniform(-0.5, 0.5, inside.sum())
    return values.astype(np.float32)


@pytest.fixture(scope="module")
def marker_store(tmp_path_factory):
    """The quirky human dataset (cells without expression, Adjacent and unassigned cells included) with
    planted markers."""
    root = tmp_path_factory.mktemp("markers")
    q = build_quirky_cache(root / "cache", n_per_section=60, wmb=False, bg10x=False, marmoset=False)
    _values, rows, gene_ids, symbols = q.expression[HUMAN]
    membership = q.tables[f"{HUMAN}/membership"].set_index("cell_label")["cluster_alias"]
    alias = membership.reindex(rows).fillna("").to_numpy(dtype=object)
    values = _known_marker_values(alias, np.random.default_rng(7))
    q.builder.h5ad(HUMAN, HUMAN.removeprefix("HMBA-"), values, rows, gene_ids, symbols)
    q.builder.write_manifest()
    prepare_store(q.root, root / "store", memory_limit_bytes=64 << 20, datasets=[HUMAN])
    return Atlas.open(root / "store")


def test_term_markers_put_the_planted_gene_first(marker_store):
    d1 = an.markers_for_term(marker_store, HUMAN, "Subclass", "STR D1 MSN", n=3)
    assert list(d1.columns) == an.MARKER_COLUMNS
    assert d1["gene_symbol"].iloc[0] == "DRD1"
    d2 = an.markers_for_term(marker_store, HUMAN, "Group", "STR D2 MSN", n=2)
    assert set(d2["gene_symbol"]) == {"PENK", "DRD2"}
    assert list(d2["diff"]) == sorted(d2["diff"], reverse=True)


def test_term_markers_match_cell_level_means(marker_store):
    """mean_in of the term from cluster statistics = the mean over the term's cells with expression."""
    cells = marker_store.cells(HUMAN)
    drd1 = marker_store.gene(HUMAN, "DRD1")
    inside = (cells["Subclass"] == "STR D1 MSN").to_numpy() & np.isfinite(drd1)
    other_clusters = cells["Cluster"].isin([D2, "Human-88", "Human-2"]).to_numpy() & np.isfinite(drd1)
    markers = an.markers_for_term(marker_store, HUMAN, "Subclass", "STR D1 MSN", n=None)
    row = markers.set_index("gene_symbol").loc["DRD1"]
    # cluster statistics and stored values are the same float32 source values
    assert row["mean_in"] == pytest.approx(drd1[inside].mean(), abs=1e-5)
    assert row["frac_in"] == pytest.approx((drd1[inside] > 0).mean())
    assert row["mean_out"] == pytest.approx(drd1[other_clusters].mean(), abs=1e-5)


def test_unknown_term_names_close_matches(marker_store):
    with pytest.raises(KeyError, match="STR D1 MSN"):
        an.markers_for_term(marker_store, HUMAN, "Subclass", "STR D1 MSM")


def _brute_force(values: np.ndarray, selected: np.ndarray, rest: np.ndarray) -> tuple[float, float, float, float]:
    ok = np.isfinite(values)
    vin, vout = values[selected & ok], values[rest & ok]
    return vin.mean(), vout.mean(), (vin > 0).mean(), (vout > 0).mean()


@pytest.mark.parametrize("against", ["scope", "dataset"])
def test_selection_stats_equal_brute_force_means_within_a_section(marker_store, against):
    atlas = marker_store
    section = atlas.sections(HUMAN)["brain_section_label"].iloc[1]
    cells = atlas.cells(HUMAN, section=section)
    rows = np.flatnonzero(cells["x"].to_numpy() < 5)
    st = an.selection_stats(atlas, HUMAN, rows, section=section, against=against)
    a, b = atlas.row_range(HUMAN, section=section)
    n_all = atlas.info(HUMAN).n_cells
    selected = np.zeros(n_all, dtype=bool)
    selected[a + rows] = True
    scope = np.zeros(n_all, dtype=bool)
    if against == "scope":
        scope[a:b] = True
    else:
        scope[:] = True
    for k, g in enumerate(st.genes):
        values = atlas.gene(HUMAN, GENES[g])
        m_in, m_out, f_in, f_out = _brute_force(values, selected, scope & ~selected)
        assert st.mean_in[k] == pytest.approx(m_in, rel=1e-5)
        assert st.mean_out[k] == pytest.approx(m_out, rel=1e-5)
        assert st.frac_in[k] == pytest.approx(f_in)
        assert st.frac_out[k] == pytest.approx(f_out)
    assert st.n_in == int(np.isfinite(atlas.gene(HUMAN, "DRD1"))[selected].sum())


def test_selection_markers_of_the_d1_cells_put_drd1_first(marker_store):
    cells = marker_store.cells(HUMAN)
    mask = an.cells_of_terms(cells, "Cluster", [D1])
    top = an.markers_for_selection(marker_store, HUMAN, mask, n=3)
    assert top["gene_symbol"].iloc[0] == "DRD1"
    assert top["diff"].iloc[0] > 5


def test_selection_markers_restricted_to_chosen_genes_keep_only_them(marker_store):
    cells = marker_store.cells(HUMAN)
    mask = an.cells_of_terms(cells, "Cluster", [D2])
    out = an.markers_for_selection(marker_store, HUMAN, mask, n=None, genes=["mbp", "PENK"])
    assert list(out["gene_symbol"]) == ["PENK", "MBP"]


def test_selection_without_cells_gives_an_empty_marker_table(marker_store):
    out = an.markers_for_selection(marker_store, HUMAN, np.zeros(0, dtype=np.int64))
    assert out.empty and list(out.columns) == an.MARKER_COLUMNS


def test_dot_plot_table_is_long_terms_by_genes_with_cluster_weighted_values(marker_store):
    terms, genes = ["STR D1 MSN", "STR D2 MSN"], ["DRD1", "penk", "AQP4"]
    dots = an.dot_plot_table(marker_store, HUMAN, "Subclass", terms, genes)
    assert list(dots.columns) == ["term", "gene", "gene_identifier", "mean", "fraction", "n_cells"]
    assert list(zip(dots["term"], dots["gene"])) == [(t, g) for t in terms for g in ["DRD1", "PENK", "AQP4"]]
    cells = marker_store.cells(HUMAN)
    penk = marker_store.gene(HUMAN, "PENK")
    d2 = (cells["Subclass"] == "STR D2 MSN").to_numpy() & np.isfinite(penk)
    row = dots[(dots["term"] == "STR D2 MSN") & (dots["gene"] == "PENK")].iloc[0]
    assert row["mean"] == pytest.approx(penk[d2].mean(), abs=1e-5)
    assert row["n_cells"] == d2.sum()
    by = dots.set_index(["term", "gene"])["fraction"]
    assert by[("STR D1 MSN", "DRD1")] > 0.9 and by[("STR D1 MSN", "AQP4")] < 0.5


def test_selection_dot_plot_rows_carry_selection_and_rest(marker_store):
    cells = marker_store.cells(HUMAN)
    mask = an.cells_of_terms(cells, "Cluster", [D1])
    dots = an.selection_dot_plot_table(marker_store, HUMAN, mask, ["DRD1", "PENK"])
    assert list(dots["term"]) == ["Selection", "Selection", "Rest", "Rest"]
    means = dots.set_index(["term", "gene"])["mean"]
    assert means[("Selection", "DRD1")] > means[("Rest", "DRD1")] + 5


# ---------------------------------------------------------------------------------------------- export


def test_export_writes_the_selected_cells_with_their_genes(table):
    mask = table["x"].to_numpy() > 0.7
    genes = {"DRD1": np.linspace(0, 1, len(table)).astype(np.float32), "PENK": np.full(len(table), np.nan)}
    text = an.export_cells_csv(table, genes, mask)
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == list(table.columns) + ["DRD1", "PENK"]
    assert len(back) == mask.sum()
    assert list(back["cell_label"]) == list(table.loc[mask, "cell_label"])
    assert list(back["cluster"].fillna("")) == list(table.loc[mask, "cluster"].astype(object).fillna(""))
    np.testing.assert_allclose(back["DRD1"], genes["DRD1"][mask], rtol=1e-5)
    assert back["PENK"].isna().all()


def test_export_of_a_real_cell_table_keeps_section_coordinates_and_levels(marker_store):
    cells = marker_store.cells(HUMAN)
    rows = np.arange(0, len(cells), 5)
    text = an.export_cells_csv(cells, {"DRD1": marker_store.gene(HUMAN, "DRD1")}, rows)
    back = pd.read_csv(io.StringIO(text))
    assert len(back) == len(rows)
    for col in ["cell_label", "brain_section_label", "x", "y", "Class", "Subclass", "Cluster", "DRD1"]:
        assert col in back.columns
    np.testing.assert_allclose(back["x"], cells["x"].to_numpy()[rows], atol=1e-5)


def test_export_refuses_more_rows_than_the_limit(table):
    with pytest.raises(ValueError, match="limited to 10"):
        an.export_cells_csv(table, None, None, max_rows=10)


def test_export_rejects_a_gene_column_of_the_wrong_length(table):
    with pytest.raises(ValueError, match="DRD1"):
        an.export_cells_csv(table, {"DRD1": np.zeros(3)})


def test_warm_up_compiles_the_kernel_for_the_arrays_the_store_decodes(marker_store):
    an.warm_up()
    before = len(an._scan_f32.signatures)
    cells = marker_store.cells(HUMAN)
    an.selection_stats(marker_store, HUMAN, np.arange(len(cells)) % 2 == 0)
    assert before >= 1 and len(an._scan_f32.signatures) == before  # the selection compiled nothing new


def test_a_second_process_loads_the_scan_kernel_from_numbas_disk_cache_and_writes_no_new_file(tmp_path):
    """Every server start warms the kernel up: the second process must find it on disk (about 0.4 s) instead of
    compiling it again (about 5 s) and adding one more cache file each time."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import json; from data_layer import analysis as an; an.warm_up(); "
              "print(json.dumps(sum(an._scan_f32.stats.cache_hits.values())))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(root)}

    def hits() -> int:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert hits() == 0  # an empty cache: compiled and written
    files = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*.nbc"))
    assert len(files) == 1, files
    assert hits() == 1
    assert sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*.nbc")) == files


def test_csv_cells_that_start_like_a_formula_are_written_as_text():
    table = pd.DataFrame({
        "cell_label": ["=HYPERLINK(\"http://x\")", "+1", "-cmd", "@SUM(A1)", "\tx", "plain", "a=b", "ok"],
        "Subclass": pd.Categorical(["=1+1", "ok", "ok", "ok", "ok", "ok", "ok", "ok"]),
        "x": [-1.5, 2.0, -3.25, 4.0, 5.0, 6.0, 7.0, 8.0],
    })
    text = an.export_cells_csv(table, {"=evil": np.full(8, -2.0)})
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["cell_label", "Subclass", "x", "'=evil"]
    assert [r[0] for r in rows[1:]] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-cmd", "'@SUM(A1)", "'\tx", "plain",
                                        "a=b", "ok"]
    assert an.spreadsheet_safe_text("\rx") == "'\rx"
    assert rows[1][1] == "'=1+1" and rows[2][1] == "ok"
    assert [r[2] for r in rows[1:3]] == ["-1.5", "2"] and rows[1][3] == "-2.0"  # numbers stay numbers
