"""A cache made by `atlas-viewer download` is one `prepare` reads with no further step.

A small hand-made ABC cache (tests/abc_builders.py: real dataset names, exact layout, true MD5s) or the demo is
served as a bucket on 127.0.0.1 (its own manifest, URLs rewritten to the server), downloaded, then prepared.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from abc_builders import BG_TAX, HUMAN, build_quirky_cache
from bucket_server import BucketServer, bucket_from_cache
from data_layer import Atlas
from data_layer.download import run_download
from data_layer.manifest import LocalCache
from data_layer.prepare import prepare_store


def test_readme_download_of_human_merscope_prepares_to_the_same_atlas_as_the_source(tmp_path):
    import cli

    source = build_quirky_cache(tmp_path / "source", wmb=False, bg10x=False, marmoset=False).root
    cache = tmp_path / "cache"
    with BucketServer(tmp_path / "bucket") as server:
        bucket_from_cache(source, server.root, server.url)
        # The README's command (release "latest", found by listing the bucket), pointed at the loopback bucket.
        result = CliRunner().invoke(cli.main, [
            "download", str(cache), "--dataset", HUMAN, "--dataset", BG_TAX, "--kind", "metadata",
            "--kind", "expression_matrices", "--kind", "image_volumes", "--base-url", server.url])
    assert result.exit_code == 0, result.output
    listed = [f for f in LocalCache(source).manifest.files() if f.dataset in (HUMAN, BG_TAX)]
    assert listed and all(f.local_path(cache).read_bytes() == f.local_path(source).read_bytes() for f in listed)

    prepare_store(cache, tmp_path / "store")
    prepare_store(source, tmp_path / "store_source")
    got, want = Atlas.open(tmp_path / "store"), Atlas.open(tmp_path / "store_source")
    assert HUMAN in got.datasets()
    pd.testing.assert_frame_equal(got.cells(HUMAN), want.cells(HUMAN))
    gene = want.genes(HUMAN)["gene_symbol"].iloc[0]
    np.testing.assert_array_equal(got.gene(HUMAN, gene), want.gene(HUMAN, gene))


def test_downloaded_demo_cache_is_prepared_without_further_step(tmp_path, demo_cache):
    source = demo_cache  # the session's demo cache, only read here
    cache, store = tmp_path / "cache", tmp_path / "store"
    with BucketServer(tmp_path / "bucket") as server:
        version = bucket_from_cache(source, server.root, server.url)
        summary = run_download(cache, release=version, kinds=["metadata", "expression_matrices", "image_volumes"],
                               base_url=server.url, progress=False, echo=lambda s: None, backoff_base_s=0)
    expected = LocalCache(source).manifest.files()
    assert sorted(summary.fetched) == sorted(f.relative_path for f in expected)
    for f in expected:
        assert f.local_path(cache).read_bytes() == f.local_path(source).read_bytes(), f.relative_path

    prepare_store(cache, store)
    atlas = Atlas.open(store)
    downloaded = [d for d in LocalCache(cache).manifest.datasets() if d in atlas.datasets()]
    assert downloaded, "the prepared store holds the downloaded datasets"
    assert all(atlas.info(d).n_cells > 0 for d in downloaded)
