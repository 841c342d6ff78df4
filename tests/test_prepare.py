"""prepare: atomic (a killed or interrupted prepare leaves the old store usable), incremental, and its errors."""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from abc_builders import BG_10X, BG_TAX, HUMAN, MARMOSET, WMB, WMB_TAX, build_quirky_cache, build_umap_cache
from data_layer import Atlas
from data_layer.prepare import PrepareError, prepare_store
from data_layer.store import StoreError

ROOT = Path(__file__).resolve().parents[1]
ALL = {HUMAN, MARMOSET, BG_10X, WMB}


@pytest.fixture()
def quirky(tmp_path):
    return build_quirky_cache(tmp_path / "cache", n_per_section=12)


def _units(store: Path) -> dict[str, tuple[int, float]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime) for p in (store / "units").iterdir()}


def _rewrite_csv(q, dataset: str, tag: str, change) -> None:
    path = next((q.root / "metadata" / dataset).rglob(f"{tag}.csv"))
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    q.builder.csv(dataset, tag, change(df), version=path.parent.name)
    q.builder.write_manifest()


# ---------------------------------------------------------------------------------------------- incremental
def test_rerun_on_an_unchanged_cache_does_no_work(quirky, tmp_path):
    store = tmp_path / "store"
    first = prepare_store(quirky.root, store)
    assert set(first.datasets.values()) == {"prepared"}
    before = _units(store)
    second = prepare_store(quirky.root, store)
    assert second.datasets == {name: "unchanged" for name in ALL}
    assert set(second.taxonomies.values()) == {"unchanged"}
    assert _units(store) == before


def test_a_changed_source_reprepares_only_its_dataset(quirky, tmp_path):
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    catalog = json.loads((store / "catalog.json").read_text())
    before = _units(store)

    def to_str(df):
        df["parcellation_term_symbol"] = "STR"
        return df

    _rewrite_csv(quirky, MARMOSET, "cell_anatomical_annotations", to_str)
    report = prepare_store(quirky.root, store)
    assert report.datasets == {HUMAN: "unchanged", MARMOSET: "prepared", BG_10X: "unchanged", WMB: "unchanged"}
    after = _units(store)
    for name in ALL - {MARMOSET}:
        unit = catalog["datasets"][name]["unit"]
        assert after[unit] == before[unit]
    assert catalog["datasets"][MARMOSET]["unit"] not in after  # the old folder is collected
    cells = Atlas.open(store).cells(MARMOSET)
    annotated = set(pd.read_csv(next((quirky.root / "metadata" / MARMOSET).rglob("cell_anatomical_annotations.csv")),
                                dtype=str)["cell_label"])
    assert set(cells.loc[cells["cell_label"].astype(str).isin(annotated), "region"]) == {"STR"}


def test_a_changed_taxonomy_reprepares_the_datasets_using_it(quirky, tmp_path):
    store = tmp_path / "store"
    prepare_store(quirky.root, store)

    def recolor(df):
        df.loc[0, "color_hex_triplet"] = "#010203"
        return df

    _rewrite_csv(quirky, BG_TAX, "cluster_annotation_term", recolor)
    report = prepare_store(quirky.root, store)
    assert report.taxonomies[BG_TAX] == "prepared" and report.taxonomies[WMB_TAX] == "unchanged"
    assert report.datasets == {HUMAN: "prepared", MARMOSET: "prepared", BG_10X: "prepared", WMB: "unchanged"}
    assert "#010203" in Atlas.open(store).taxonomy(HUMAN).colors("Neighborhood")


def test_preparing_some_datasets_keeps_the_others(quirky, tmp_path):
    store = tmp_path / "store"
    prepare_store(quirky.root, store, datasets=[HUMAN])
    assert Atlas.open(store).datasets() == [HUMAN]
    report = prepare_store(quirky.root, store, datasets=[WMB])
    assert report.datasets == {WMB: "prepared", HUMAN: "kept"}
    assert Atlas.open(store).datasets() == [HUMAN, WMB]


def test_the_catalog_lists_datasets_species_levels_sections_genes_versions_and_hashes(quirky, tmp_path):
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    catalog = json.loads((store / "catalog.json").read_text())
    human = catalog["datasets"][HUMAN]
    assert (human["kind"], human["species"], human["platform"]) == ("spatial", "Human", "MERSCOPE")
    assert human["levels"] == ["Neighborhood", "Class", "Subclass", "Group", "Cluster"]
    assert (human["n_sections"], human["n_slab_planes"], human["n_genes"]) == (3, 2, 10)
    assert human["umap_dataset"] == BG_10X
    manifest = json.loads(next((quirky.root / "releases").rglob("manifest.json")).read_text())
    info = manifest["file_listing"][HUMAN]["metadata"]["cell_metadata"]["files"]["csv"]
    assert {"path": info["relative_path"], "size": info["size"], "md5": info["file_hash"]} in human["sources"]
    assert human["versions"]["metadata"] == info["version"]
    assert catalog["release"] == manifest["version"]
    assert set(catalog["taxonomies"]) == {BG_TAX, WMB_TAX}


# ---------------------------------------------------------------------------------------------- atomicity
KILL_CHILD = "import sys; from data_layer.prepare import prepare_store; prepare_store(sys.argv[1], sys.argv[2])"


@pytest.mark.slow
def test_a_prepare_killed_midway_leaves_the_previous_store_usable(tmp_path):
    cache, store = tmp_path / "cache", tmp_path / "store"
    builder = build_umap_cache(cache, n_cells=20_000, n_genes=1_000, per_row=400)
    prepare_store(cache, store)
    catalog_before = (store / "catalog.json").read_bytes()
    old = Atlas.open(store)
    x_before = old.cells(WMB)["x"].to_numpy()
    gene_before = old.gene(WMB, "Gene5")

    cm_path = next(cache.rglob("cell_metadata.csv"))
    cm = pd.read_csv(cm_path, dtype={"cell_label": str, "cluster_alias": str})
    cm["x"] = cm["x"] + 100.0
    builder.csv(WMB, "cell_metadata", cm)
    builder.write_manifest()

    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(cache), str(store)], cwd=ROOT,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = store / f".tmp-{child.pid}"
    deadline = time.monotonic() + 120
    # Poll the file system until the child is midway through the expression conversion of its new unit.
    while not list(store.glob(".work/*/slice-*.npz")):
        assert time.monotonic() < deadline, "prepare never reached the expression conversion"
        try:  # wait on the child itself between looks at the file system: it must not end first
            child.wait(timeout=0.002)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError("prepare ended before it could be killed midway")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert tmp.is_dir()  # the kill really happened mid-build

    assert (store / "catalog.json").read_bytes() == catalog_before
    reopened = Atlas.open(store)
    np.testing.assert_array_equal(reopened.cells(WMB)["x"].to_numpy(), x_before)
    np.testing.assert_array_equal(reopened.gene(WMB, "Gene5"), gene_before)

    del old, reopened  # no viewer holds the old folders any more (a running one would keep them on disk)
    gc.collect()
    report = prepare_store(cache, store)  # the next prepare cleans up and finishes the job
    assert report.datasets == {WMB: "prepared"}
    assert not list(store.glob(".tmp-*"))
    catalog = json.loads((store / "catalog.json").read_text())
    referenced = {e["unit"] for e in catalog["datasets"].values()} | {e["unit"] for e in catalog["taxonomies"].values()}
    assert {p.name for p in (store / "units").iterdir()} == referenced
    np.testing.assert_allclose(Atlas.open(store).cells(WMB)["x"].to_numpy(), x_before + 100.0, rtol=1e-5)


def test_an_interrupted_prepare_removes_its_temp_folder_and_keeps_the_old_store(quirky, tmp_path, monkeypatch):
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    catalog_before = (store / "catalog.json").read_bytes()
    units_before = _units(store)
    _rewrite_csv(quirky, HUMAN, "cell_to_cluster_membership", lambda df: df.iloc[1:])

    import data_layer.prepare as prep

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "convert_expression", interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(quirky.root, store)
    assert (store / "catalog.json").read_bytes() == catalog_before
    assert not list(store.glob(".tmp-*"))
    assert _units(store) == units_before
    assert len(Atlas.open(store).cells(HUMAN)) > 0


# ---------------------------------------------------------------------------------------------- errors
def test_a_missing_required_column_names_the_file_and_column_and_others_are_prepared(quirky, tmp_path):
    _rewrite_csv(quirky, HUMAN, "slab_plane_coordinates", lambda df: df.drop(columns=["y_slab_mm"]))
    with pytest.raises(PrepareError) as exc:
        prepare_store(quirky.root, tmp_path / "store")
    message = str(exc.value)
    assert "slab_plane_coordinates.csv" in message and "'y_slab_mm'" in message
    report = exc.value.report
    assert report.datasets[HUMAN] == "failed"
    assert {report.datasets[d] for d in ALL - {HUMAN}} == {"prepared"}
    assert set(Atlas.open(tmp_path / "store").datasets()) == ALL - {HUMAN}


def test_a_failed_dataset_keeps_its_previous_version(quirky, tmp_path):
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    n_before = len(Atlas.open(store).cells(HUMAN))
    _rewrite_csv(quirky, HUMAN, "cell_metadata", lambda df: df.drop(columns=["brain_section_label"]))
    with pytest.raises(PrepareError, match="brain_section_label") as exc:
        prepare_store(quirky.root, store)
    assert exc.value.report.datasets[HUMAN] == "failed (previous version kept)"
    assert len(Atlas.open(store).cells(HUMAN)) == n_before


def test_a_corrupt_h5ad_names_the_file_and_the_other_datasets_are_prepared(quirky, tmp_path):
    h5ad = next((quirky.root / "expression_matrices" / HUMAN).rglob("*.h5ad"))
    h5ad.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4000))
    entry = next(e for e in quirky.builder.entries if e["rel"].endswith(h5ad.name))
    assert entry  # the manifest is rewritten with the corrupt file's size and MD5: corrupt, not truncated
    quirky.builder.write_manifest()
    store = tmp_path / "store"
    with pytest.raises(PrepareError, match=h5ad.name) as exc:
        prepare_store(quirky.root, store)
    report = exc.value.report
    assert report.datasets[HUMAN] == "prepared without expression"
    assert {report.datasets[d] for d in ALL - {HUMAN}} == {"prepared"}
    atlas = Atlas.open(store)
    assert atlas.info(HUMAN).n_genes == 0 and len(atlas.cells(HUMAN)) > 0
    with pytest.raises(KeyError, match="no expression"):
        atlas.gene(HUMAN, "DRD1")
    with pytest.raises(PrepareError) as again:  # an incomplete dataset is retried, never "unchanged"
        prepare_store(quirky.root, store)
    assert again.value.report.datasets[HUMAN] == "failed (previous version kept)"
    assert again.value.report.datasets[MARMOSET] == "unchanged"


def test_a_truncated_download_is_reported_naming_the_file(quirky, tmp_path):
    h5ad = next((quirky.root / "expression_matrices" / MARMOSET).rglob("*.h5ad"))
    h5ad.write_bytes(h5ad.read_bytes()[:1000])  # the manifest still gives the full size
    with pytest.raises(PrepareError, match="incomplete") as exc:
        prepare_store(quirky.root, tmp_path / "store")
    assert h5ad.name in str(exc.value)
    assert exc.value.report.datasets[HUMAN] == "prepared"


def test_a_cache_without_a_manifest_is_explained(tmp_path):
    (tmp_path / "cache" / "metadata").mkdir(parents=True)
    with pytest.raises(PrepareError, match=r"releases/<YYYYMMDD>/manifest.json") as exc:
        prepare_store(tmp_path / "cache", tmp_path / "store")
    assert "atlas-viewer download" in str(exc.value)
    assert not (tmp_path / "store").exists()


def test_a_folder_that_is_not_a_store_is_refused(quirky, tmp_path):
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "thesis.docx").write_text("precious")
    with pytest.raises(PrepareError, match="not a store"):
        prepare_store(quirky.root, tmp_path / "notastore")
    assert (tmp_path / "notastore" / "thesis.docx").read_text() == "precious"


def test_an_unknown_dataset_name_lists_the_datasets_of_the_cache(quirky, tmp_path):
    with pytest.raises(PrepareError, match="HMBA-MERSCOPE-H22.30.001-BG") as exc:
        prepare_store(quirky.root, tmp_path / "store", datasets=["HMBA-MERSCOPE-H99-BG"])
    assert "'HMBA-MERSCOPE-H99-BG' not found" in str(exc.value)


def test_the_cli_exits_nonzero_and_names_the_problem_when_a_dataset_failed(quirky, tmp_path):
    import cli

    _rewrite_csv(quirky, HUMAN, "slab_plane_coordinates", lambda df: df.drop(columns=["x_slab_mm"]))
    result = CliRunner().invoke(cli.main, ["prepare", str(quirky.root), str(tmp_path / "store"),
                                           "--memory-limit", "256MB"])
    assert result.exit_code != 0
    assert "x_slab_mm" in result.output
    ok = CliRunner().invoke(cli.main, ["prepare", str(quirky.root), str(tmp_path / "store2"), "--datasets", WMB])
    assert ok.exit_code == 0, ok.output


def test_the_cli_temp_limit_bounds_the_expression_conversion_and_names_itself_when_too_small(quirky, tmp_path):
    import cli

    small = CliRunner().invoke(cli.main, ["prepare", str(quirky.root), str(tmp_path / "small"), "--datasets", WMB,
                                          "--temp-limit", "2KB"])
    assert small.exit_code != 0
    assert "--temp-limit" in small.output and WMB in small.output
    ok = CliRunner().invoke(cli.main, ["prepare", str(quirky.root), str(tmp_path / "ok"), "--datasets", WMB,
                                       "--temp-limit", "37KB"])  # the slices' counts take 35 KB of it
    assert ok.exit_code == 0, ok.output
    conversion = json.loads(next((tmp_path / "ok").rglob("expression.json")).read_text())["conversion"]
    assert conversion["extra"]["passes"] > 1 and conversion["temp_bytes_peak"] <= 37 * 1024
    free = prepare_store(quirky.root, tmp_path / "free", datasets=[WMB])
    assert not free.errors
    a, b = Atlas.open(tmp_path / "ok"), Atlas.open(tmp_path / "free")
    genes = a.genes(WMB)["gene_symbol"].tolist()
    assert genes
    for gene in genes:
        np.testing.assert_array_equal(a.gene(WMB, gene), b.gene(WMB, gene))


def test_atlas_open_on_a_folder_that_is_not_a_store_says_how_to_make_one(tmp_path):
    with pytest.raises(StoreError, match="atlas-viewer prepare"):
        Atlas.open(tmp_path)


def test_aligned_10x_cells_naming_per_species_matrices_still_get_the_aligned_matrix(quirky, tmp_path):
    def per_species(df):
        df["dataset_label"] = "HMBA-10xMultiome-BG"
        df["feature_matrix_label"] = "HMBA-10xMultiome-BG-Human"
        return df

    _rewrite_csv(quirky, BG_10X, "cell_metadata", per_species)
    prepare_store(quirky.root, tmp_path / "store", datasets=[BG_10X])
    atlas = Atlas.open(tmp_path / "store")
    assert atlas.catalog["datasets"][BG_10X]["expression_files"] == [
        e["rel"] for e in quirky.builder.entries if e["dataset"] == BG_10X and e["kind"] == "expression_matrices"]
    assert not np.isnan(atlas.gene(BG_10X, "DRD1")).any()
