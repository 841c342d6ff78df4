"""A cache made by `atlas-viewer download` is one `prepare` reads with no further step.

The demo cache is served as a bucket on 127.0.0.1 (its own manifest, URLs rewritten to the server), downloaded
with every kind, then prepared.
"""
from __future__ import annotations

import pytest

from bucket_server import BucketServer, bucket_from_cache
from data_layer.download import run_download
from data_layer.manifest import LocalCache


def test_downloaded_demo_cache_is_prepared_without_further_step(tmp_path):
    demo = pytest.importorskip("data_layer.demo", reason="data_layer.demo not written yet")
    prepare = pytest.importorskip("data_layer.prepare", reason="data_layer.prepare not written yet")
    source = tmp_path / "demo"
    demo.write_demo_cache(source, seed=0, scale="demo", progress=False)
    cache, store = tmp_path / "cache", tmp_path / "store"
    with BucketServer(tmp_path / "bucket") as server:
        version = bucket_from_cache(source, server.root, server.url)
        summary = run_download(cache, release=version, kinds=["metadata", "expression_matrices", "image_volumes"],
                               base_url=server.url, progress=False, echo=lambda s: None, backoff_base_s=0)
    expected = LocalCache(source).manifest.files()
    assert sorted(summary.fetched) == sorted(f.relative_path for f in expected)
    for f in expected:
        assert f.local_path(cache).read_bytes() == f.local_path(source).read_bytes(), f.relative_path

    prepare.prepare_store(cache, store, progress=False)

    from data_layer import Atlas

    atlas = Atlas.open(store)
    spatial = [d for d in LocalCache(cache).manifest.datasets() if d in atlas.datasets()]
    assert spatial, "the prepared store holds the downloaded datasets"
    for dataset in spatial:
        assert atlas.info(dataset).n_cells > 0
