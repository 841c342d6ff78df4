"""`atlas-viewer download` against a real HTTP server on 127.0.0.1 serving a small synthetic bucket.

The bucket (tests/bucket_server.py) answers Range requests, the S3 listing call and injected faults; the
manifest is in the real ABC schema with true MD5s and sizes.
"""
from __future__ import annotations

import json
import shutil
import socket
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from data_layer import download as dl
from data_layer.download import DownloadError, run_download
from data_layer.manifest import BUCKET_URL
from bucket_server import BucketServer, bucket_from_cache, build_bucket

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
REAL = sorted(FIXTURES.glob("manifest-*.json"))
VERSION = "20250101"
SPATIAL = "TEST-MERSCOPE-BG"
TAXONOMY = "TEST-BG-taxonomy"
CELLS_CSV = f"metadata/{SPATIAL}/{VERSION}/cell_metadata.csv"
H5AD = f"expression_matrices/{SPATIAL}/{VERSION}/MERSCOPE-TEST-log2.h5ad"
GEOJSON = f"image_volumes/{SPATIAL}/{VERSION}/TEST.CX.01.Plane.01.geojson"


def _h5ad_bytes(tmp_dir: Path) -> bytes:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    x = sp.random(60, 12, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    obs = pd.DataFrame(index=pd.Index([f"cell-{i}" for i in range(60)], name="cell_label"))
    var = pd.DataFrame({"gene_symbol": [f"G{i}" for i in range(12)]},
                       index=pd.Index([f"ENSG{i:011d}" for i in range(12)], name="gene_identifier"))
    path = tmp_dir / "x.h5ad"
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def bucket_files(tmp_path_factory) -> dict[str, bytes]:
    """Relative path -> bytes of a small bucket: CSVs (one of ~150 kB), a views/ CSV, an h5ad and a geojson."""
    rng = np.random.default_rng(1)
    rows = [f"cell-{i},TEST.CX.01.01.01.{i % 4:02d},{x:.4f},{y:.4f},True" for i, (x, y) in
            enumerate(rng.uniform(0, 10_000, size=(3000, 2)))]
    cells = ("cell_label,brain_section_label,x_experiment,y_experiment,qc_pass\n" + "\n".join(rows) + "\n").encode()
    geojson = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "STR"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}).encode()
    return {
        CELLS_CSV: cells,
        f"metadata/{SPATIAL}/{VERSION}/gene.csv": b"gene_identifier,gene_symbol\nENSG00000000000,G0\n",
        f"metadata/{SPATIAL}/{VERSION}/views/cell_colors.csv": b"cell_label,color\ncell-0,#aabbcc\n",
        H5AD: _h5ad_bytes(tmp_path_factory.mktemp("h5ad")),
        GEOJSON: geojson,
        f"metadata/{TAXONOMY}/{VERSION}/cluster.csv": b"label,cluster_alias,number_of_cells\nCS_CLUST_1,Human-1,5\n",
    }


@pytest.fixture
def server(tmp_path, bucket_files):
    """The bucket served on 127.0.0.1; its manifest keeps the public bucket's URLs (so --base-url matters)."""
    with BucketServer(tmp_path / "bucket") as srv:
        build_bucket(srv.root, bucket_files, VERSION, BUCKET_URL)
        yield srv


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def _run(cache, server, **kw):
    kw.setdefault("release", VERSION)
    kw.setdefault("kinds", ["metadata", "expression_matrices", "image_volumes"])
    return run_download(cache, base_url=server.url, progress=False, echo=lambda s: None, backoff_base_s=0,
                        timeout_s=5, **kw)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------------------- full download

def test_full_download_yields_byte_identical_files_in_abc_layout(cache, server, bucket_files):
    summary = _run(cache, server)
    assert sorted(summary.fetched) == sorted(bucket_files)
    for rel, data in bucket_files.items():
        assert (cache / rel).read_bytes() == data, rel
    assert not list(cache.rglob("*.part"))
    assert summary.bytes_fetched == sum(len(d) for d in bucket_files.values())
    assert (cache / "releases" / VERSION / "manifest.json").is_file()


def test_manifest_urls_are_used_when_no_base_url_is_given(cache, tmp_path, bucket_files):
    with BucketServer(tmp_path / "bucket") as srv:
        build_bucket(srv.root, bucket_files, VERSION, srv.url)  # URLs rewritten to the server
        (cache / "releases" / VERSION).mkdir(parents=True)
        shutil.copy(srv.root / "releases" / VERSION / "manifest.json", cache / "releases" / VERSION)
        summary = run_download(cache, release=VERSION, kinds=["metadata"], progress=False, echo=lambda s: None)
        assert summary.fetched and all(srv.requests_for(rel) for rel in summary.fetched)
    for rel in summary.fetched:
        assert (cache / rel).read_bytes() == bucket_files[rel]


def test_default_kinds_leave_out_expression_and_say_so(cache, server, bucket_files):
    lines = []
    summary = run_download(cache, release=VERSION, base_url=server.url, progress=False, echo=lines.append)
    assert H5AD not in summary.fetched and not (cache / H5AD).exists()
    assert {CELLS_CSV, GEOJSON} <= set(summary.fetched)
    assert any("expression matrices are not fetched by default" in line and "1 file" in line for line in lines)


def test_dataset_selection_fetches_only_that_dataset(cache, server):
    summary = _run(cache, server, datasets=[TAXONOMY])
    assert summary.fetched == [f"metadata/{TAXONOMY}/{VERSION}/cluster.csv"]
    assert not (cache / "metadata" / SPATIAL).exists()


def test_unknown_dataset_is_refused_with_close_match(cache, server):
    with pytest.raises(DownloadError, match=f"no dataset 'TEST-MERSCOPE-B'.*did you mean {SPATIAL}"):
        _run(cache, server, datasets=["TEST-MERSCOPE-B"])


# --------------------------------------------------------------------------------------- resume and retries

def test_dropped_connection_is_resumed_with_a_range_request(cache, server, bucket_files):
    server.queue_fault(CELLS_CSV, "drop")
    _run(cache, server)
    reqs = server.requests_for(CELLS_CSV)
    assert [r["fault"] for r in reqs] == ["drop", None]
    half = len(bucket_files[CELLS_CSV]) // 2
    assert reqs[1]["range"] == f"bytes={half}-" and reqs[1]["status"] == 206
    assert (cache / CELLS_CSV).read_bytes() == bucket_files[CELLS_CSV]


def test_part_file_left_by_an_earlier_run_is_resumed(cache, server, bucket_files):
    data = bucket_files[CELLS_CSV]
    part = cache / (CELLS_CSV + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    summary = _run(cache, server)
    assert server.requests_for(CELLS_CSV)[0]["range"] == "bytes=1000-"
    assert (cache / CELLS_CSV).read_bytes() == data and not part.exists()
    assert summary.bytes_fetched == sum(len(d) for d in bucket_files.values()) - 1000


def test_partial_file_of_the_official_tool_is_resumed(cache, server, bucket_files):
    """The official tool writes in place: a short, unrecorded file at the final name is resumed, not refetched."""
    data = bucket_files[CELLS_CSV]
    (cache / CELLS_CSV).parent.mkdir(parents=True)
    (cache / CELLS_CSV).write_bytes(data[:777])
    _run(cache, server)
    assert server.requests_for(CELLS_CSV)[0]["range"] == "bytes=777-"
    assert (cache / CELLS_CSV).read_bytes() == data


def test_server_ignoring_range_still_yields_the_right_file(cache, server, bucket_files):
    data = bucket_files[CELLS_CSV]
    part = cache / (CELLS_CSV + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:500])
    server.queue_fault(CELLS_CSV, "ignore_range")
    _run(cache, server)
    assert server.requests_for(CELLS_CSV)[0]["status"] == 200
    assert (cache / CELLS_CSV).read_bytes() == data


def test_wrong_bytes_are_fetched_again_from_the_start(cache, server, bucket_files):
    server.queue_fault(GEOJSON, "corrupt")
    _run(cache, server)
    reqs = server.requests_for(GEOJSON)
    assert [(r["fault"], r["range"]) for r in reqs] == [("corrupt", None), (None, None)]
    assert (cache / GEOJSON).read_bytes() == bucket_files[GEOJSON]


def test_persistent_md5_mismatch_is_a_clear_error_and_leaves_no_bad_file(cache, server, bucket_files):
    server.faults[GEOJSON] = "corrupt"
    with pytest.raises(DownloadError, match=rf"1 file\(s\) failed(.|\n)*{GEOJSON}: wrong bytes(.|\n)*MD5"):
        _run(cache, server, retries=2)
    assert len(server.requests_for(GEOJSON)) == 3
    assert not (cache / GEOJSON).exists() and not (cache / (GEOJSON + ".part")).exists()
    recorded = json.loads((cache / "_downloaded_data.json").read_text())
    assert str((cache / GEOJSON).resolve()) not in recorded
    assert (cache / CELLS_CSV).read_bytes() == bucket_files[CELLS_CSV], "the other files are still fetched"


def test_404_is_a_clear_error_naming_the_file(cache, server):
    server.faults[H5AD] = "404"
    with pytest.raises(DownloadError, match=rf"{H5AD}: {server.url}{H5AD} answered HTTP 404"):
        _run(cache, server)
    assert len(server.requests_for(H5AD)) == 1, "a 404 is not retried"
    assert not (cache / H5AD).exists() and not (cache / (H5AD + ".part")).exists()


def test_server_errors_are_retried_with_exponential_back_off_then_given_up(cache, server):
    server.faults[GEOJSON] = "500"
    slept = []
    with pytest.raises(DownloadError, match=rf"{GEOJSON}: gave up after 4 attempts"):
        run_download(cache, release=VERSION, base_url=server.url, datasets=[SPATIAL], kinds=["image_volumes"],
                     progress=False, echo=lambda s: None, retries=3, backoff_base_s=0.5, sleep=slept.append)
    assert slept == [0.5, 1.0, 2.0]
    assert len(server.requests_for(GEOJSON)) == 4


def test_transient_error_then_success_is_fetched(cache, server, bucket_files):
    server.queue_fault(GEOJSON, "500", "500")
    _run(cache, server, retries=2)
    assert (cache / GEOJSON).read_bytes() == bucket_files[GEOJSON]


# ---------------------------------------------------------------------------------------- disk, paths, skip

def test_not_enough_disk_space_stops_before_any_download(cache, server, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10_000, 9_000, 1_000))
    with pytest.raises(DownloadError, match="not enough free disk space.*need .* only 1.0 kB is free"):
        _run(cache, server)
    assert server.file_requests() == []
    assert not any(p.is_file() for kind in ("metadata", "expression_matrices", "image_volumes")
                   for p in (cache / kind).rglob("*"))


@pytest.mark.parametrize("bad", ["../outside.csv", "/etc/passwd", "metadata/../../outside.csv", "C:\\x.csv",
                                 "metadata\\..\\..\\x.csv", ""])
def test_manifest_path_leaving_the_cache_is_refused(tmp_path, bad):
    with pytest.raises(DownloadError, match="refused"):
        dl.safe_local_path(tmp_path, bad)


def test_manifest_with_escaping_path_downloads_nothing(cache, server, bucket_files):
    manifest_path = server.root / "releases" / VERSION / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["file_listing"][TAXONOMY]["metadata"]["cluster"]["files"]["csv"]["relative_path"] = "../../evil.csv"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DownloadError, match="'../../evil.csv' is not a plain relative path"):
        _run(cache, server)
    assert server.file_requests() == []


def test_second_run_skips_verified_files_without_requests(cache, server, bucket_files):
    _run(cache, server)
    n_requests = len(server.file_requests())
    summary = _run(cache, server)
    assert summary.fetched == [] and sorted(summary.skipped) == sorted(bucket_files)
    assert summary.bytes_skipped == sum(len(d) for d in bucket_files.values())
    assert len(server.file_requests()) == n_requests


def test_unrecorded_file_with_wrong_bytes_is_replaced(cache, server, bucket_files):
    _run(cache, server)
    (cache / "_downloaded_data.json").unlink()
    good = bucket_files[GEOJSON]
    (cache / GEOJSON).write_bytes(bytes(len(good)))
    summary = _run(cache, server)
    assert summary.fetched == [GEOJSON]
    assert (cache / GEOJSON).read_bytes() == good
    assert len(json.loads((cache / "_downloaded_data.json").read_text())) == len(bucket_files)


def test_unrecorded_file_with_right_md5_is_skipped_and_recorded(cache, server, bucket_files):
    _run(cache, server)
    (cache / "_downloaded_data.json").unlink()
    n_requests = len(server.file_requests())
    summary = _run(cache, server)
    assert summary.fetched == [] and len(summary.skipped) == len(bucket_files)
    assert len(server.file_requests()) == n_requests
    assert len(json.loads((cache / "_downloaded_data.json").read_text())) == len(bucket_files)


def test_a_downloaded_cache_served_as_a_bucket_downloads_identically(cache, server, bucket_files, tmp_path):
    """The round trip the demo -> download -> prepare test relies on."""
    _run(cache, server)
    again = tmp_path / "again"
    with BucketServer(tmp_path / "bucket2") as srv:
        version = bucket_from_cache(cache, srv.root, srv.url)
        summary = run_download(again, release=version, kinds=["metadata", "expression_matrices", "image_volumes"],
                               base_url=srv.url, progress=False, echo=lambda s: None)
        assert all(srv.requests_for(rel) for rel in bucket_files)
    assert sorted(summary.fetched) == sorted(bucket_files)
    assert all((again / rel).read_bytes() == data for rel, data in bucket_files.items())


# ------------------------------------------------------------------------------- the official tool's records

def test_downloaded_data_json_is_written_in_the_official_format(cache, server, bucket_files):
    _run(cache, server)
    text = (cache / "_downloaded_data.json").read_text()
    recorded = json.loads(text)
    # abc_atlas_access: json.dumps(list_of_str(local_path.resolve())), indent=2
    assert isinstance(recorded, list) and all(isinstance(p, str) for p in recorded)
    assert set(recorded) == {str((cache / rel).resolve()) for rel in bucket_files}
    assert text == json.dumps(recorded, indent=2, sort_keys=True)
    assert (cache / "_manifest_last_used.txt").read_text() == f"releases/{VERSION}/manifest.json"


def test_entries_of_the_official_tool_are_kept(cache, server):
    cache.mkdir()
    other = str((cache / "metadata" / "OTHER" / "x.csv").resolve())
    (cache / "_downloaded_data.json").write_text(json.dumps([other], indent=2))
    _run(cache, server, datasets=[TAXONOMY])
    assert other in json.loads((cache / "_downloaded_data.json").read_text())


# ------------------------------------------------------------------------------------------ latest / listing

def test_latest_release_is_the_newest_manifest_listed_in_the_bucket(cache, server, bucket_files):
    newer = "20250601"
    build_bucket(server.root, {f"metadata/{TAXONOMY}/{newer}/cluster.csv": b"label\nx\n"}, newer, BUCKET_URL)
    server.page_size = 1  # the listing spans several pages: continuation tokens are followed
    summary = _run(cache, server, release="latest")
    assert summary.release == newer and summary.fetched == [f"metadata/{TAXONOMY}/{newer}/cluster.csv"]
    listings = [r for r in server.requests if r["key"] == ""]
    assert len(listings) > 1 and any("continuation-token" in r["query"] for r in listings)


def test_latest_falls_back_to_the_cached_manifest_when_the_bucket_is_unreachable(tmp_path, caplog):
    cache = tmp_path / "cache"
    (cache / "releases" / "20231215").mkdir(parents=True)
    shutil.copy(FIXTURES / "manifest-20231215.json", cache / "releases" / "20231215" / "manifest.json")
    lines = []
    run_download(cache, release="latest", base_url=_closed_port_url(), list_only=True, progress=False,
                 echo=lines.append, timeout_s=2)
    assert lines[0].startswith("release 20231215:")
    assert "using the newest manifest in the cache: release 20231215" in caplog.text


def test_latest_with_unreachable_bucket_and_empty_cache_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot list the releases.*holds no release manifest"):
        run_download(tmp_path / "cache", base_url=_closed_port_url(), list_only=True, progress=False,
                     echo=lambda s: None, timeout_s=2)


def test_unknown_release_is_a_clear_error(cache, server):
    with pytest.raises(DownloadError, match="release 20990101 not found: .* HTTP 404"):
        _run(cache, server, release="20990101")


def _independent_counts(raw: dict) -> dict[tuple[str, str], tuple[int, int]]:
    """(dataset, kind) -> (files, bytes), walking the raw JSON for every 'files' dict."""
    out = {}

    def walk(node, acc):
        if isinstance(node, dict):
            if "files" in node:
                for info in node["files"].values():
                    acc[0] += 1
                    acc[1] += info["size"]
            else:
                for child in node.values():
                    walk(child, acc)

    for dataset, kinds in raw["file_listing"].items():
        for kind, node in kinds.items():
            acc = [0, 0]
            walk(node, acc)
            out[(dataset, kind)] = tuple(acc)
    return out


@pytest.mark.parametrize("fixture", REAL, ids=[p.name for p in REAL])
def test_list_prints_every_dataset_kind_count_and_size_of_a_real_manifest(tmp_path, fixture):
    import cli

    raw = json.loads(fixture.read_text())
    version = raw["version"]
    cache = tmp_path / "cache"
    (cache / "releases" / version).mkdir(parents=True)
    shutil.copy(fixture, cache / "releases" / version / "manifest.json")
    result = CliRunner().invoke(cli.main, ["download", str(cache), "--release", version, "--list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = _independent_counts(raw)
    assert lines[0].startswith(f"release {version}: {len(raw['file_listing'])} dataset(s), "
                               f"{sum(n for n, _ in expected.values())} file(s)")
    rows = [line for line in lines[2:] if not line.startswith("(kinds ")]
    assert len(rows) == len(expected)
    dataset = None
    for row in rows:
        parts = row.split()
        if len(parts) == 5:
            dataset = parts.pop(0)
        kind, n_files = parts[0], int(parts[1])
        assert (n_files, " ".join(parts[2:])) == (expected[(dataset, kind)][0],
                                                  dl.format_size(expected[(dataset, kind)][1])), row
    assert not (cache / "metadata").exists(), "--list downloads nothing"


@pytest.mark.parametrize("n_bytes, text", [(512, "512 B"), (996_000_000, "996 MB"), (1_300_000_000, "1.3 GB"),
                                           (15_255_179_148, "15.3 GB"), (17e12, "17.0 TB")])
def test_sizes_are_human_readable_decimal_units(n_bytes, text):
    assert dl.format_size(n_bytes) == text


# ---------------------------------------------------------------------------------------------------- the CLI

def test_cli_download_prints_progress_and_summary(cache, server, bucket_files):
    import cli

    result = CliRunner().invoke(cli.main, ["download", str(cache), "--release", VERSION, "--base-url", server.url,
                                           "--dataset", SPATIAL, "--kind", "image_volumes"])
    assert result.exit_code == 0, result.output
    assert "fetched 1 file(s)" in result.output and "failed 0" in result.output
    assert (cache / GEOJSON).read_bytes() == bucket_files[GEOJSON]


def test_cli_failure_exits_non_zero_with_the_reason(cache, server):
    import cli

    server.faults[GEOJSON] = "404"
    result = CliRunner().invoke(cli.main, ["download", str(cache), "--release", VERSION, "--base-url", server.url,
                                           "--dataset", SPATIAL, "--kind", "image_volumes"])
    assert result.exit_code == 1
    assert f"{GEOJSON}: {server.url}{GEOJSON} answered HTTP 404" in result.output
