"""A damaged store is seen and contained: prepare records every store file's size and checksum; ``Atlas.open``
checks the sizes, ``atlas-viewer verify`` the checksums too; a damaged dataset is refused naming it (503 on the
routes, a notice in the page, "degraded" on /healthz, which is 503 only when no dataset serves) while the other datasets serve; prepare fails naming the file and
the column of a dataset it cannot prepare."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
import data_layer.atlas as atlas_module
from app import create_app
from callbacks import navigation
from components import ids
from core.context import ViewerContext
from data_layer import Atlas
from data_layer.store import CATALOG, UNITS, DatasetDamaged
from settings import Settings

REPO = Path(__file__).resolve().parents[1]
DAMAGED = "HMBA-Xenium-CJ23.56.004-BG"  # a dataset of sections, not the first (the default) one
SOUND = "HMBA-MERSCOPE-H22.30.001-BG"
NOTICE = "notice-view.children"


def store_copy(demo_store: Path, tmp_path: Path, real: tuple[str, ...] = (DAMAGED,)) -> Path:
    """A copy of the session's demo store to damage: the catalog and the folders of the ``real`` datasets are
    copied, the other folders are symbolic links to the session's (never written)."""
    store = tmp_path / "store"
    (store / UNITS).mkdir(parents=True)
    shutil.copy2(demo_store / CATALOG, store / CATALOG)
    catalog = json.loads((demo_store / CATALOG).read_text())
    copied = {catalog["datasets"][name]["unit"] for name in real}
    for folder in (demo_store / UNITS).iterdir():
        if folder.name in copied:
            shutil.copytree(folder, store / UNITS / folder.name)
        else:
            (store / UNITS / folder.name).symlink_to(folder)
    return store


def unit_folder(store: Path, dataset: str) -> Path:
    return store / UNITS / json.loads((store / CATALOG).read_text())["datasets"][dataset]["unit"]


def truncate(path: Path, keep: int = 100) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


def first_section(atlas, dataset: str) -> str:
    return str(atlas.sections(dataset)["brain_section_label"].iloc[0])


# ------------------------------------------------------------------------------------------------ prepare
def test_prepare_records_the_size_and_checksum_of_every_store_file(demo_store):
    catalog = json.loads((demo_store / CATALOG).read_text())
    for section in ("datasets", "taxonomies"):
        for name, entry in catalog[section].items():
            folder = demo_store / UNITS / entry["unit"]
            on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            assert sorted(entry["files"]) == on_disk, name
            for rel, (size, checksum) in entry["files"].items():
                assert (folder / rel).stat().st_size == size
    entry = catalog["datasets"][SOUND]
    size, checksum = entry["files"]["x.npy"]
    data = (demo_store / UNITS / entry["unit"] / "x.npy").read_bytes()
    assert checksum == hashlib.blake2b(data, digest_size=16).hexdigest() and size == len(data)


# ------------------------------------------------------------------------------------------------ the atlas
def test_a_truncated_file_is_found_at_open_and_only_its_dataset_is_refused(demo_store, tmp_path):
    store = store_copy(demo_store, tmp_path)
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    atlas = Atlas.open(store)
    damaged = atlas.damaged()
    assert list(damaged) == [DAMAGED]
    assert str(unit_folder(store, DAMAGED) / "x.npy") in damaged[DAMAGED] and "100 bytes" in damaged[DAMAGED]
    with pytest.raises(DatasetDamaged, match=DAMAGED) as exc:
        atlas.cells(DAMAGED)
    assert exc.value.dataset == DAMAGED
    with pytest.raises(DatasetDamaged):
        atlas.gene(DAMAGED, "DRD1")
    cells = atlas.cells(SOUND, section=first_section(atlas, SOUND))
    assert len(cells) > 0 and cells["x"].notna().all()


def test_a_missing_file_or_folder_is_found_at_open(demo_store, tmp_path):
    store = store_copy(demo_store, tmp_path)
    (unit_folder(store, DAMAGED) / "expression" / "indptr.npy").unlink()
    atlas = Atlas.open(store)
    assert "indptr.npy is missing" in atlas.damaged()[DAMAGED]
    shutil.rmtree(unit_folder(store, DAMAGED))
    assert "is missing" in Atlas.open(store).damaged()[DAMAGED]


def test_a_file_truncated_under_a_running_atlas_is_found_before_its_map_is_read(demo_store, tmp_path, monkeypatch):
    store = store_copy(demo_store, tmp_path)
    atlas = Atlas.open(store)
    section = first_section(atlas, DAMAGED)
    assert len(atlas.cells(DAMAGED, section=section)) > 0  # mapped
    monkeypatch.setattr(atlas_module, "RECHECK_S", 0.0)
    truncate(unit_folder(store, DAMAGED) / "y.npy")
    # reading the mapped y.npy now would end the process with SIGBUS; the size check comes first
    with pytest.raises(DatasetDamaged, match="y.npy"):
        atlas.xy(DAMAGED, section=section)
    assert list(atlas.damaged()) == [DAMAGED]
    assert len(atlas.cells(SOUND, section=first_section(atlas, SOUND))) > 0


def test_a_store_prepared_before_sizes_were_recorded_opens_and_verify_says_unverified(demo_store, tmp_path):
    store = store_copy(demo_store, tmp_path)
    catalog = json.loads((store / CATALOG).read_text())
    for section in ("datasets", "taxonomies"):
        for entry in catalog[section].values():
            del entry["files"]
    (store / CATALOG).write_text(json.dumps(catalog))
    atlas = Atlas.open(store)
    assert atlas.damaged() == {}
    assert len(atlas.cells(DAMAGED, section=first_section(atlas, DAMAGED))) > 0
    result = CliRunner().invoke(cli.main, ["verify", str(store)])
    assert result.exit_code == 0, result.output
    assert f"dataset {DAMAGED}: unverified (prepared before file sizes and checksums were recorded" in result.output
    # without records an unreadable file is still refused, naming the dataset, when the dataset is opened
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    with pytest.raises(DatasetDamaged, match=DAMAGED):
        Atlas.open(store).cells(DAMAGED)


# ------------------------------------------------------------------------------------------------ verify
def test_verify_checks_sizes_and_checksums_and_exits_nonzero_naming_the_damaged_files(demo_store, tmp_path):
    store = store_copy(demo_store, tmp_path)
    sound = CliRunner().invoke(cli.main, ["verify", str(store)])
    assert sound.exit_code == 0, sound.output
    assert f"dataset {DAMAGED}: ok" in sound.output and "taxonomy HMBA-BG-taxonomy-CCN20250428: ok" in sound.output

    flipped = unit_folder(store, DAMAGED) / "level-0.npy"
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the checksum sees it
    flipped.write_bytes(bytes(data))
    assert Atlas.open(store).damaged() == {}  # the open checks sizes only
    assert CliRunner().invoke(cli.main, ["verify", "--sizes-only", str(store)]).exit_code == 0
    result = CliRunner().invoke(cli.main, ["verify", str(store)])
    assert result.exit_code == 1
    assert f"dataset {DAMAGED}: DAMAGED" in result.output
    assert f"{flipped}: checksum differs from the catalog's" in result.output
    assert f"dataset {SOUND}: ok" in result.output

    truncate(unit_folder(store, DAMAGED) / "cell_label.arrow")
    result = CliRunner().invoke(cli.main, ["verify", "--sizes-only", str(store)])
    assert result.exit_code == 1 and "cell_label.arrow has 100 bytes" in result.output


def test_a_reprepare_rebuilds_a_damaged_dataset(demo_cache, demo_store, tmp_path):
    from data_layer.prepare import prepare_store

    store = store_copy(demo_store, tmp_path)
    old_unit = unit_folder(store, DAMAGED).name
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    report = prepare_store(demo_cache, store, datasets=[DAMAGED], progress=False)
    assert report.datasets[DAMAGED] == "prepared"
    assert unit_folder(store, DAMAGED).name != old_unit
    assert Atlas.open(store).damaged() == {}


# ------------------------------------------------------------------------------------------------ the server
@pytest.fixture
def damaged_store(demo_store, tmp_path):
    store = store_copy(demo_store, tmp_path)
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    return store


def picture_url(dataset: str, section: str, x1: float = 10.0) -> str:
    return f"/render/map.png?dataset={dataset}&section={section}&color_by=region&w=64&h=64&x0=0&x1={x1}&y0=0&y1=10"


def test_a_damaged_dataset_answers_503_naming_it_while_the_others_serve(damaged_store, demo_store):
    atlas = Atlas.open(damaged_store)
    client = create_app(Settings(store=damaged_store), atlas=atlas).server.test_client()
    section = first_section(Atlas.open(demo_store), DAMAGED)
    response = client.get(picture_url(DAMAGED, section))
    assert response.status_code == 503
    body = response.get_json()
    assert body["dataset"] == DAMAGED and body["parameter"] == "dataset" and DAMAGED in body["error"]
    assert str(damaged_store) not in response.get_data(as_text=True)  # no file path in an answer
    genes = client.get(f"/api/genes?dataset={DAMAGED}&q=dr")
    assert genes.status_code == 503 and genes.get_json()["dataset"] == DAMAGED
    sound = client.get(picture_url(SOUND, first_section(atlas, SOUND)))
    assert sound.status_code == 200 and sound.data.startswith(b"\x89PNG")
    assert DAMAGED not in [d["dataset"] for d in client.get("/api/datasets").get_json()]

    health = client.get("/healthz")  # the others serve: a load balancer keeps the server
    assert health.status_code == 200
    body = health.get_json()
    assert body["ok"] is True and body["status"] == "degraded"
    assert list(body["damaged"]) == [DAMAGED] and "x.npy" in body["damaged"][DAMAGED]
    assert DAMAGED in body["error"]


def test_the_page_says_the_dataset_is_damaged_and_shows_another(damaged_store):
    context = ViewerContext.build(Atlas.open(damaged_store), Settings(store=damaged_store))
    values = {getattr(ids, key): None for key in ("DATASET", "SLAB_PLANE", "SECTION", "COLOR_BY", "GENE", "TERM",
                                                  "VIEWPORT", "GENE_VMIN", "GENE_VMAX")}
    outputs = navigation.selection_step(None, values, context, search=f"?dataset={DAMAGED}")
    out = {f"{o.component_id}.{o.component_property}": v for o, v in zip(navigation.SELECTION_OUTPUTS, outputs)}
    notices = out[NOTICE]
    assert len(notices) == 1 and f"Dataset '{DAMAGED}' is damaged in the store" in notices[0].children
    assert out["dataset.value"] == SOUND
    assert DAMAGED not in context.catalog.names and SOUND in context.catalog.names


def test_a_damaged_umap_dataset_leaves_the_maps_of_sections_without_their_umap_panel(demo_store, tmp_path):
    umap = "HMBA-10xMultiome-BG-Aligned"
    store = store_copy(demo_store, tmp_path, real=(umap,))
    (unit_folder(store, umap) / "y.npy").unlink()
    catalog = ViewerContext.build(Atlas.open(store), Settings(store=store)).catalog
    assert list(catalog.damaged) == [umap] and umap not in catalog.names
    assert catalog.get(SOUND).umap_dataset is None and catalog.get(SOUND).n_cells > 0
    sound = ViewerContext.build(Atlas.open(demo_store), Settings(store=demo_store)).catalog
    assert sound.get(SOUND).umap_dataset == umap


def test_a_file_truncated_while_serving_answers_503_and_healthz_turns_degraded(demo_store, tmp_path, monkeypatch):
    store = store_copy(demo_store, tmp_path)
    atlas = Atlas.open(store)
    client = create_app(Settings(store=store), atlas=atlas).server.test_client()
    section = first_section(atlas, DAMAGED)
    assert client.get(picture_url(DAMAGED, section)).status_code == 200
    assert client.get("/healthz").get_json()["status"] == "ok"
    monkeypatch.setattr(atlas_module, "RECHECK_S", 0.0)
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    response = client.get(picture_url(DAMAGED, section, x1=9.0))  # not a cached picture
    assert response.status_code == 503 and response.get_json()["dataset"] == DAMAGED
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"
    assert list(health.get_json()["damaged"]) == [DAMAGED]
    assert client.get(picture_url(SOUND, first_section(atlas, SOUND))).status_code == 200


def test_with_login_on_healthz_names_the_damaged_dataset_only_to_a_logged_in_user(damaged_store, tmp_path):
    from server.auth import user_line
    from test_auth import log_in

    users = tmp_path / "users.txt"
    users.write_text(user_line("ada", "lovelace-pw") + "\n")
    settings = Settings(store=damaged_store, auth_users_file=users, secret_key="s" * 32)
    client = create_app(settings, atlas=Atlas.open(damaged_store)).server.test_client()
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 200 and anonymous.get_json() == {"ok": True, "status": "degraded"}
    assert DAMAGED not in anonymous.get_data(as_text=True)
    log_in(client)
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded" and list(body["damaged"]) == [DAMAGED]


def test_healthz_is_503_only_when_no_dataset_serves(demo_store, tmp_path):
    catalog = json.loads((demo_store / CATALOG).read_text())
    store = store_copy(demo_store, tmp_path, real=tuple(catalog["datasets"]))  # every folder copied, none shared
    for name in catalog["datasets"]:
        truncate(min(unit_folder(store, name).glob("*.npy")))
    client = create_app(Settings(store=store), atlas=Atlas.open(store)).server.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["ok"] is False and body["status"] == "down" and set(body["damaged"]) == set(catalog["datasets"])


# ------------------------------------------------------------------------------------------------ prepare errors
def _small_cache(demo_cache: Path, tmp_path: Path, datasets: tuple[str, ...]) -> Path:
    """The demo cache's manifest with the metadata of ``datasets`` only (the manifest's other files are then
    simply not downloaded)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("releases", "_manifest_last_used.txt"):
        source = demo_cache / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, cache / name)
    for ds in datasets:
        shutil.copytree(demo_cache / "metadata" / ds, cache / "metadata" / ds)
    return cache


def _drop_column(cache: Path, relative_path: str, column: str) -> Path:
    """Remove ``column`` from a cache CSV and give the manifest its new size and MD5 (a complete download of a
    file without the column, not a truncated one)."""
    import pandas as pd

    path = cache / relative_path
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.drop(columns=[column]).to_csv(path, index=False)
    manifest_path = next((cache / "releases").rglob("manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    found = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("relative_path") == relative_path:
                node["size"] = path.stat().st_size
                node["file_hash"] = hashlib.md5(path.read_bytes()).hexdigest()
                found.append(node)
            for value in node.values():
                visit(value)

    visit(manifest["file_listing"])
    assert len(found) == 1
    manifest_path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("column", ["x", "cluster_alias"])
def test_prepare_exits_nonzero_naming_the_file_and_the_column_a_dataset_lacks(demo_cache, tmp_path, column):
    cache = _small_cache(demo_cache, tmp_path, ("WMB-10X", "WMB-taxonomy"))
    relative = next(p for p in (cache / "metadata" / "WMB-10X").rglob("cell_metadata.csv")).relative_to(cache)
    path = _drop_column(cache, relative.as_posix(), column)
    store = tmp_path / "store"
    result = subprocess.run([sys.executable, "-m", "cli", "prepare", str(cache), str(store)], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr
    assert f"WMB-10X: {path}: missing required column '{column}'" in error
    # the taxonomy was still prepared; the dataset is not in the store
    catalog = json.loads((store / CATALOG).read_text())
    assert "WMB-10X" not in catalog["datasets"] and "WMB-taxonomy" in catalog["taxonomies"]


# ------------------------------------------------------------------------------------------------ re-prepare
def test_a_reprepare_never_removes_the_folders_a_running_viewer_reads(tmp_path):
    import gc

    import pandas as pd

    from abc_builders import HUMAN, MARMOSET, build_quirky_cache
    from data_layer.prepare import prepare_store

    quirky = build_quirky_cache(tmp_path / "cache", n_per_section=12)
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    running = Atlas.open(store)  # a viewer started before the re-prepare; it has opened no dataset yet
    old_unit = running.catalog["datasets"][MARMOSET]["unit"]
    before = running.catalog["datasets"][HUMAN]

    path = next((quirky.root / "metadata" / MARMOSET).rglob("cell_anatomical_annotations.csv"))
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table["parcellation_term_symbol"] = "STR"
    quirky.builder.csv(MARMOSET, "cell_anatomical_annotations", table, version=path.parent.name)
    quirky.builder.write_manifest()
    assert prepare_store(quirky.root, store).datasets[MARMOSET] == "prepared"

    catalog = json.loads((store / CATALOG).read_text())
    assert catalog["datasets"][MARMOSET]["unit"] != old_unit  # the new version beside the old, switched atomically
    assert catalog["datasets"][HUMAN]["unit"] == before["unit"]
    assert (store / UNITS / old_unit).is_dir()  # kept: the running viewer holds it
    assert running.damaged() == {} and running.check_files() == {}

    def annotated_regions(atlas):
        cells = atlas.cells(MARMOSET)
        return set(cells.loc[cells["cell_label"].astype(str).isin(set(table["cell_label"])), "region"])

    assert annotated_regions(running) != {"STR"}  # the running viewer serves its whole old version
    assert annotated_regions(Atlas.open(store)) == {"STR"}  # a viewer opened now serves the new one

    del running
    gc.collect()
    prepare_store(quirky.root, store)  # nothing changed; the folder nobody holds any more is collected
    assert not (store / UNITS / old_unit).exists()
