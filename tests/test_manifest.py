"""The manifest reader parses the real release manifests and resolves local paths."""
import json
import shutil
from pathlib import Path

import pytest

from data_layer.manifest import LocalCache, Manifest, ManifestError, find_manifest, list_releases

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
REAL = sorted(FIXTURES.glob("manifest-*.json"))


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_manifest_parses_every_file_with_size_and_hash(path):
    m = Manifest.from_file(path)
    assert m.version == path.stem.split("-")[1]
    files = m.files()
    assert len(files) > 50
    assert all(f.relative_path.startswith(f.kind + "/" + f.dataset + "/") for f in files)
    assert all(len(f.file_hash) == 32 and f.size > 0 for f in files)
    expr = m.files(kind="expression_matrices")
    assert expr and all(f.relative_path.endswith(f"-{f.variant}.h5ad") for f in expr)


def test_real_2025_manifest_resolves_bg_files():
    m = Manifest.from_file(FIXTURES / "manifest-20250531.json")
    f = m.file("HMBA-BG-taxonomy-CCN20250428", "metadata", "cluster_annotation_term")
    assert f.relative_path.endswith("/cluster_annotation_term.csv")
    wmb_views = [f for f in m.files("WMB-taxonomy", "metadata") if "/views/" in f.relative_path]
    assert wmb_views, "views/ files keep their flat tag"
    with pytest.raises(KeyError, match="has no 'nope'"):
        m.file("WMB-taxonomy", "metadata", "nope")


def _cache_with(tmp_path, *versions):
    for v in versions:
        d = tmp_path / "releases" / v
        d.mkdir(parents=True)
        data = json.loads((FIXTURES / "manifest-20231215.json").read_text())
        data["version"] = v
        (d / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def test_newest_release_is_found_and_named_release_wins(tmp_path):
    cache = _cache_with(tmp_path, "20231215", "20240330")
    assert list_releases(cache) == ["20231215", "20240330"]
    assert find_manifest(cache).parent.name == "20240330"
    assert find_manifest(cache, "20231215").parent.name == "20231215"
    with pytest.raises(ManifestError, match="no manifest for release '20990101'"):
        find_manifest(cache, "20990101")


def test_cache_without_manifest_is_explained(tmp_path):
    with pytest.raises(ManifestError, match="not an ABC cache"):
        LocalCache(tmp_path)


def test_manifest_of_another_version_is_refused(tmp_path):
    d = tmp_path / "releases" / "20240101"
    d.mkdir(parents=True)
    shutil.copy(FIXTURES / "manifest-20231215.json", d / "manifest.json")
    with pytest.raises(ManifestError, match="declares version 20231215"):
        LocalCache(tmp_path)


def test_present_lists_only_files_on_disk_with_manifest_size(tmp_path):
    cache = LocalCache(_cache_with(tmp_path, "20231215"))
    f = cache.manifest.file("WMB-taxonomy", "metadata", "cluster")
    p = f.local_path(tmp_path)
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x" * f.size)
    partial = cache.manifest.file("WMB-taxonomy", "metadata", "cluster_annotation_term").local_path(tmp_path)
    partial.write_bytes(b"short")
    assert [x.tag for x in cache.present()] == ["cluster"]
    assert cache.datasets_present() == ["WMB-taxonomy"]
    assert cache.unknown_files() == []
