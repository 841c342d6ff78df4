"""``atlas-viewer bench`` end to end on a tiny streamed cache: one table with a ratio column, JSON, reuse.

Times are never asserted (benchmarks are not tests); the tests check that every measurement ran, was compared with
its baseline where it has one, and was reported.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.run import Repeats, format_table, run_bench
from data_layer.demo import DemoScale

#: Smaller than the demo; ``chunk_cells`` makes the WMB cells and the spatial matrices go through the streamed writers.
TINY = DemoScale(cells_per_section=1500, tenx_cells=3000, tenx_genes=800, wmb_cells=4000, wmb_genes=300,
                 wmb_clusters=80, quirk_cells=5, chunk_cells=1500)
FEW = Repeats(genes=3, gene_baseline=1, pictures=2, gene_pictures=2, baseline_pictures=1, markers=1, marker_baseline=1,
              opens=1, sections=2, section_baseline=1, page_loads=2)
#: A small memory budget for datashader's per-category baseline: it is measured on small canvases and projected.
BASELINE_BUDGET = 100_000_000
EXPECTED_ROWS = ("prepare whole cache", "gene, all cells of WMB-10X", "gene, all cells of HMBA-MERSCOPE",
                 "section picture by", "UMAP picture by", "section picture, new gene", "UMAP picture, new gene",
                 "section picture, term highlighted", "UMAP picture, term highlighted", "marker genes of a selection",
                 "markers A vs B,",
                 "Atlas.open", "cells of one section", "first page load to first picture",
                 "first page load, partial plotly.js vs Dash's full bundle", "consensus mouse: prepare alone",
                 "consensus mouse: UMAP picture by cluster", "consensus mouse: gene, all cells",
                 "consensus mouse: UMAP picture, new gene")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One bench run on the tiny scale: (report, printed lines, work dir, json path)."""
    work = tmp_path_factory.mktemp("bench") / "work"
    out = work.parent / "bench.json"
    lines: list[str] = []
    report = run_bench(TINY, work_dir=work, json_path=out, echo=lines.append, repeats=FEW,
                       baseline_budget_bytes=BASELINE_BUDGET)
    return report, lines, work, out


def _table_lines(lines: list[str]) -> list[str]:
    text = "\n".join(lines).splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("what "))
    end = next(i for i in range(start, len(text)) if not text[i].strip())
    return text[start:end]


def test_bench_prints_one_table_whose_header_has_baseline_and_ratio_columns(bench_run):
    _, lines, _, _ = bench_run
    table = _table_lines(lines)
    assert sum(line.startswith("what ") for line in "\n".join(lines).splitlines()) == 1
    assert table[0].split()[:6] == ["what", "p50", "p95", "baseline", "p50", "ratio"]


def test_bench_table_has_a_row_for_every_measurement_and_no_failure(bench_run):
    report, lines, _, _ = bench_run
    table = "\n".join(_table_lines(lines))
    missing = [name for name in EXPECTED_ROWS if name not in table]
    assert missing == []
    assert report["errors"] == {}
    assert "FAILED" not in table


def test_a_versus_b_of_a_quarter_against_the_rest_is_timed_with_its_memory_peaks(bench_run):
    report, _, _, _ = bench_run
    markers = report["results"]["markers"]
    quarter = markers["cases"]["a_vs_b_quarter"]
    # A: the most populous terms until a quarter of the cells, B: every other term's cells
    assert 0 < quarter["n_a"] < quarter["n_b"] and quarter["n_a"] + quarter["n_b"] <= markers["n_cells"]
    assert quarter["n_a"] >= (quarter["n_a"] + quarter["n_b"]) / 4 - 1
    assert quarter["n_genes"] == markers["n_genes"] and quarter["csv_bytes"] > 0
    assert quarter["peak_traced_mb"] > 0 and quarter["rss_peak_mb"] >= quarter["rss_before_mb"] > 0
    assert quarter["p50_ms"] > 0


def test_rows_measured_against_a_baseline_print_a_ratio(bench_run):
    report, _, _, _ = bench_run
    compared = [r for r in report["rows"] if r["baseline"] != "-"]
    # two gene look-ups, two pictures by cluster, two gene pictures, markers, cells of a section (the highlight
    # baselines may be skipped under the test's small memory budget)
    assert len(compared) >= 8
    assert all(r["ratio"].endswith("x") for r in compared), compared


def test_a_per_category_baseline_too_big_for_memory_is_marked_projected(bench_run):
    report, _, _, _ = bench_run
    pictures = [report["results"][k] for k in ("picture_section_cluster", "picture_umap_cluster")]
    rows = {r["what"]: r for r in report["rows"]}
    for p in pictures:
        row = next(r for w, r in rows.items() if f"({p['n_cells'] / 1e3:.0f} k cells, {p['n_categories']:,}" in w)
        assert ("projected" in row["baseline"]) == p["baseline"]["projected"]


def test_bench_prints_the_machine_before_the_table(bench_run):
    _, lines, _, _ = bench_run
    text = "\n".join(lines)
    assert text.index("machine:") < text.index("what ")
    assert "cores" in text and "python" in text and "datashader" in text


def test_json_holds_the_machine_every_result_and_the_table(bench_run):
    report, _, _, out = bench_run
    saved = json.loads(Path(out).read_text())
    assert saved["machine"]["cores"] >= 1
    assert set(saved["results"]) == set(report["results"])
    assert [r["what"] for r in saved["rows"]] == [r["what"] for r in report["rows"]]
    assert saved["total_seconds"] > 0


def test_gene_lookup_reads_the_same_number_of_cells_as_the_regional_files_hold(bench_run):
    report, _, _, _ = bench_run
    g = report["results"]["gene_lookup_files"]
    assert g["anndata_backed"]["files"] == 13
    assert abs(g["anndata_backed"]["n_cells"] - g["n_cells"]) <= 2 * TINY.quirk_cells


def test_a_second_run_reuses_the_complete_cache_and_store(bench_run):
    from bench.run import MEMORY_LIMIT_BYTES, ensure_cache, ensure_store

    report, _, work, _ = bench_run
    assert report["cache"]["reused"] is False
    assert ensure_cache(work, TINY)["reused"] is True
    assert ensure_store(work, MEMORY_LIMIT_BYTES)["reused"] is True


def test_an_incomplete_cache_is_written_again(tmp_path):
    from bench.run import ensure_cache

    (tmp_path / "cache" / "metadata").mkdir(parents=True)
    (tmp_path / "cache" / "metadata" / "half-written.csv").write_text("x\n")
    info = ensure_cache(tmp_path, DemoScale(cells_per_section=800, tenx_cells=1500, tenx_genes=700, wmb_cells=1500,
                                            wmb_genes=300, wmb_clusters=80, quirk_cells=5))
    assert info["reused"] is False
    assert not (tmp_path / "cache" / "metadata" / "half-written.csv").exists()
    assert (tmp_path / "cache.json").is_file()


def test_format_table_aligns_the_numeric_columns():
    from bench.run import Row

    text = format_table([Row("a", "1.0 ms", "2.0 ms", "10 ms", "10x", "n"), Row("longer name", "12.5 ms")])
    lines = text.splitlines()
    assert lines[2].index("1.0 ms") + len("1.0 ms") == lines[3].index("12.5 ms") + len("12.5 ms")


def test_cli_bench_passes_scale_work_dir_and_json_to_run_bench(monkeypatch, tmp_path):
    import bench.run
    import cli

    seen = {}
    monkeypatch.setattr(bench.run, "run_bench", lambda **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli.main, ["bench", "--scale", "atlas", "--work-dir", str(tmp_path),
                                           "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    assert seen["scale"] == "atlas"
    assert seen["work_dir"] == tmp_path
    assert seen["json_path"] == tmp_path / "out.json"
