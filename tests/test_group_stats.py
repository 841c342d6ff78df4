"""Group statistics on the demo store (``data_layer.analysis``): A versus B, term and selection markers, checked
against scipy's Welch t-test (``ttest_ind(equal_var=False)``) and Benjamini-Hochberg adjustment
(``false_discovery_control``) on the same cells' values, read one gene at a time with ``Atlas.gene``."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from data_layer import Atlas
from data_layer import analysis as an
from data_layer.expression import GeneMatrix

D1, D2 = "STR D1 MSN", "STR D2 MSN"


@pytest.fixture(scope="module")
def atlas(demo_store):
    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def spatial(atlas):
    return next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")


def reference(atlas, dataset_a, rows_a, dataset_b, rows_b, genes):
    """scipy on the values of each gene: ``{column: array}`` of means, fractions, t, p and BH p_adj."""
    out = {k: [] for k in ("mean_A", "mean_B", "frac_A", "frac_B", "t", "p")}
    for gene in genes:
        x = atlas.gene(dataset_a, gene)[rows_a].astype(np.float64)
        y = atlas.gene(dataset_b, gene)[rows_b].astype(np.float64)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]  # cells without an expression row count nowhere
        res = stats.ttest_ind(x, y, equal_var=False)
        for key, value in (("mean_A", x.mean()), ("mean_B", y.mean()), ("frac_A", (x > 0).mean()),
                           ("frac_B", (y > 0).mean()), ("t", res.statistic), ("p", res.pvalue)):
            out[key].append(value)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    tested = np.isfinite(out["p"])
    out["p_adj"] = np.full(len(genes), np.nan)
    out["p_adj"][tested] = stats.false_discovery_control(out["p"][tested], method="bh")
    return out


def assert_matches(table, ref, columns=("mean_A", "mean_B", "frac_A", "frac_B", "t", "p", "p_adj")):
    for column in columns:
        ours = table[column].to_numpy(dtype=np.float64)
        assert np.array_equal(np.isnan(ours), np.isnan(ref[column])), column
        np.testing.assert_allclose(ours, ref[column], rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=column)


def test_d1_against_d2_msns_puts_drd1_and_penk_at_opposite_ends_with_scipys_statistics(atlas, spatial):
    a = an.term_group(atlas, spatial, "Subclass", D1)
    b = an.term_group(atlas, spatial, "Subclass", D2)
    table = an.compare_groups(atlas, a, b)
    assert list(table.columns) == an.DE_COLUMNS
    genes = list(table["gene"])
    assert genes[0] == "DRD1"  # highest in A
    assert "PENK" in genes[-10:] and table.set_index("gene").loc["PENK", "mean_diff"] < -8  # highest in B
    assert list(table["mean_diff"]) == sorted(table["mean_diff"], reverse=True)
    measured = np.isfinite(atlas.gene(spatial, "DRD1"))  # the cells with an expression row
    assert (table.attrs["n_A"], table.attrs["n_B"]) == (int((a.mask & measured).sum()), int((b.mask & measured).sum()))
    assert_matches(table, reference(atlas, spatial, a.mask, spatial, b.mask, genes))


def test_a_selection_against_a_term_it_overlaps_matches_scipy_with_moderate_p_values(atlas, spatial):
    """Half of the D1 MSNs of one section against all D1 MSNs of the dataset: similar groups, so the p-values
    spread over (0, 1] and the adjustment is exercised; the shared cells count in both groups."""
    section = str(atlas.sections(spatial)["brain_section_label"].iloc[0])
    a0, a1 = atlas.row_range(spatial, section)
    cells = atlas.cells(spatial, section=section)
    rows = (cells["Subclass"] == D1).to_numpy() & (np.random.default_rng(3).random(len(cells)) < 0.5)
    a = an.rows_group(atlas, spatial, rows, section=section)
    b = an.term_group(atlas, spatial, "Subclass", D1)
    table = an.compare_groups(atlas, a, b)
    dataset_rows = np.zeros(atlas.info(spatial).n_cells, dtype=bool)
    dataset_rows[a0:a1] = rows
    ref = reference(atlas, spatial, dataset_rows, spatial, b.mask, list(table["gene"]))
    assert_matches(table, ref)
    p = table["p"].dropna()
    assert (p > 0.05).mean() > 0.5 and (table["p_adj"].dropna() >= p.loc[table["p_adj"].dropna().index]).all()


def test_one_term_across_two_species_compares_the_genes_both_measure(atlas):
    human, macaque = (next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial"
                           and atlas.info(d).species == s) for s in ("Human", "Macaque"))
    a = an.term_group(atlas, human, "Subclass", D1, label="Human")
    b = an.term_group(atlas, macaque, "Subclass", D1, label="Macaque")
    table = an.compare_groups(atlas, a, b)
    shared = {s.lower() for s in atlas.genes(human)["gene_symbol"]} & \
        {s.lower() for s in atlas.genes(macaque)["gene_symbol"]}
    assert {g.lower() for g in table["gene"]} == shared
    assert table.attrs["dataset_A"] == human and table.attrs["dataset_B"] == macaque
    assert_matches(table, reference(atlas, human, a.mask, macaque, b.mask, list(table["gene"])))


def test_term_and_selection_markers_carry_the_same_tests(atlas, spatial):
    top = an.markers_for_term(atlas, spatial, "Subclass", D2, n=None)
    assert top["gene_symbol"].iloc[0] == "PENK"
    cells = atlas.cells(spatial)
    inside = (cells["Subclass"] == D2).to_numpy()
    others = ~cells["Subclass"].isin([D2, "Adjacent", "unassigned"]).to_numpy()  # the level's other terms
    ref = reference(atlas, spatial, inside, spatial, others, list(top["gene_symbol"]))
    renamed = top.rename(columns={"mean_in": "mean_A", "mean_out": "mean_B", "frac_in": "frac_A",
                                  "frac_out": "frac_B"})
    assert_matches(renamed, ref)

    section = str(atlas.sections(spatial)["brain_section_label"].iloc[1])
    scope = atlas.cells(spatial, section=section)
    x = scope["x"].to_numpy()
    box = an.cells_in_box(x, scope["y"].to_numpy(), *np.quantile(x, [0.2, 0.5]), -np.inf, np.inf)
    sel = an.markers_for_selection(atlas, spatial, box, n=None, section=section)
    a0, a1 = atlas.row_range(spatial, section)
    inside = np.zeros(len(cells), dtype=bool)
    inside[a0:a1] = box
    rest = np.zeros(len(cells), dtype=bool)
    rest[a0:a1] = ~box
    ref = reference(atlas, spatial, inside, spatial, rest, list(sel["gene_symbol"]))
    renamed = sel.rename(columns={"mean_in": "mean_A", "mean_out": "mean_B", "frac_in": "frac_A",
                                  "frac_out": "frac_B"})
    assert_matches(renamed, ref)


def test_the_comparison_reads_entries_only_never_a_dense_gene_vector(atlas, spatial, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a dense vector was read")

    monkeypatch.setattr(GeneMatrix, "values", refuse)
    table = an.compare_groups(atlas, an.term_group(atlas, spatial, "Subclass", D1),
                              an.term_group(atlas, spatial, "Subclass", D2))
    assert table["gene"].iloc[0] == "DRD1"


def test_the_csv_has_the_documented_columns_and_reads_back(atlas, spatial):
    import io

    import pandas as pd

    table = an.compare_groups(atlas, an.term_group(atlas, spatial, "Subclass", D1),
                              an.term_group(atlas, spatial, "Subclass", D2))
    text = an.compare_groups_csv(table)
    assert text.splitlines()[0] == "gene,mean_A,mean_B,frac_A,frac_B,mean_diff,t,p,p_adj"
    back = pd.read_csv(io.StringIO(text))
    assert list(back["gene"]) == list(table["gene"])
    np.testing.assert_allclose(back["t"], table["t"], rtol=1e-5)


def test_an_unknown_term_or_an_empty_group_is_said_plainly(atlas, spatial):
    with pytest.raises(KeyError, match="no Subclass term 'STR D9 MSN'"):
        an.term_group(atlas, spatial, "Subclass", "STR D9 MSN")
    empty = an.CellGroup(spatial, np.zeros(10, dtype=bool))
    table = an.compare_groups(atlas, empty, an.term_group(atlas, spatial, "Subclass", D1))
    assert table.empty and list(table.columns) == an.DE_COLUMNS and table.attrs["n_A"] == 0


@pytest.mark.parametrize("x, y", [
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),  # both constant, different: t = -inf, p = 0
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # nothing to test: NaN
    ([0.0, 0.0, 0.0], [0.0, 1.5, 0.0]),  # one constant group
    ([2.0, 0.0, 3.5, 1.0], [0.5, 0.0]),  # unequal sizes
])
def test_welch_from_sums_follows_scipy_on_its_edge_cases(x, y):
    def sums(values):
        v = np.asarray(values)
        return an.GroupSums("d", np.arange(1), len(v), np.array([v.sum()]), np.array([(v * v).sum()]),
                            np.array([(v > 0).sum()], dtype=np.float64))

    t, _, p = an.welch_t_test(sums(x), sums(y))
    with np.errstate(all="ignore"):
        ref = stats.ttest_ind(x, y, equal_var=False)
    np.testing.assert_allclose([t[0], p[0]], [ref.statistic, ref.pvalue], rtol=1e-12, equal_nan=True)


def test_a_code_above_the_groups_is_refused_not_written_out_of_bounds(atlas, spatial):
    with pytest.raises(ValueError, match="above n_groups=1"):
        an.scan_groups(atlas, spatial, np.array([0, 2], dtype=np.uint8), n_groups=1)
