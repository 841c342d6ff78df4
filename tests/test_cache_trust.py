"""Nothing read back from a shared cache is trusted: a pickle planted in the cache folder or in the Redis runs
nothing (the picture is drawn again), the cache folder is private to the server's user and bounded in bytes."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from app import create_app
from bench.servers import RedisServer
from core.viewport import padded
from server.caching import (PNG_SIGNATURE, BatchPruningFileSystemCache, CacheFolderError, PlainSerializer,
                            install_caches, private_folder)
from settings import Settings


class Planted:
    """A pickle that, once unpickled, creates ``path``: what an attacker would plant."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


def picture_url(atlas) -> str:
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = str(atlas.sections(dataset)["brain_section_label"].iloc[0])
    row = atlas.sections(dataset).iloc[0]
    frame = padded((float(row["x_min"]), float(row["x_max"]), float(row["y_min"]), float(row["y_max"])))
    query = {"dataset": dataset, "section": section, "color_by": atlas.info(dataset).levels[0],
             "x0": f"{frame.x0:.6g}", "x1": f"{frame.x1:.6g}", "y0": f"{frame.y0:.6g}", "y1": f"{frame.y1:.6g}",
             "w": "64", "h": "48"}
    return "/render/map.png?" + urlencode(query)


def test_a_pickle_planted_in_the_cache_folder_runs_nothing(atlas, tmp_path):
    cache = tmp_path / "cache"
    settings = Settings(store=tmp_path, cache_type="filesystem", cache_dir=cache)
    client = create_app(settings, atlas=atlas).server.test_client()
    url = picture_url(atlas)
    first = client.get(url)
    assert first.status_code == 200 and first.data.startswith(PNG_SIGNATURE)
    entries = [p for p in cache.iterdir() if p.stat().st_size > 100]
    assert len(entries) == 1
    sentinel = tmp_path / "ran"
    entries[0].write_bytes(struct.pack("I", 0) + pickle.dumps(Planted(sentinel)))  # cachelib's file layout
    again = client.get(url, headers={"Cache-Control": "no-cache"})
    assert not sentinel.exists()
    assert again.status_code == 200 and again.data == first.data


def test_a_pickle_planted_in_the_redis_runs_nothing(atlas, tmp_path):
    with RedisServer() as server:
        settings = Settings(store=tmp_path, cache_type="redis", redis_url=server.url)
        client = create_app(settings, atlas=atlas).server.test_client()
        url = picture_url(atlas)
        first = client.get(url)
        assert first.status_code == 200
        store = redis.Redis.from_url(server.url)
        keys = store.keys("*png*")
        assert len(keys) == 1 and store.get(keys[0]).startswith(b"b" + PNG_SIGNATURE)
        sentinel = tmp_path / "ran"
        store.set(keys[0], b"!" + pickle.dumps(Planted(sentinel)))  # cachelib's Redis layout of a pickle
        again = client.get(url)
        assert not sentinel.exists()
        assert again.status_code == 200 and again.data == first.data
        assert store.get(keys[0]) == b"b" + first.data  # the planted entry is replaced by the real picture


def test_a_cached_value_that_is_not_a_png_is_drawn_again(atlas, tmp_path):
    cache = tmp_path / "cache"
    client = create_app(Settings(store=tmp_path, cache_type="filesystem", cache_dir=cache),
                        atlas=atlas).server.test_client()
    url = picture_url(atlas)
    first = client.get(url).data
    entry = next(p for p in cache.iterdir() if p.stat().st_size > 100)
    entry.write_bytes(struct.pack("I", 0) + b"b<script>alert(1)</script>")
    assert client.get(url).data == first


def test_the_serializer_writes_and_reads_only_bytes_and_counts():
    plain = PlainSerializer()
    assert plain.loads(plain.dumps(PNG_SIGNATURE + b"x")) == PNG_SIGNATURE + b"x"
    assert plain.loads(plain.dumps(12)) == 12
    assert plain.loads(pickle.dumps({"a": 1})) is None
    with pytest.raises(TypeError):
        plain.dumps({"a": 1})


def test_a_cache_folder_open_to_others_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(CacheFolderError, match="open to other users"):
        private_folder(folder)
    from flask import Flask

    with pytest.raises(CacheFolderError):
        install_caches(Flask(__name__), Settings(store=tmp_path, cache_type="filesystem", cache_dir=folder))


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder of another user needs root")
def test_a_cache_folder_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(CacheFolderError, match="belongs to user id 65534"):
        private_folder(folder)


def test_a_link_in_place_of_the_cache_folder_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(CacheFolderError, match="not a folder"):
        private_folder(tmp_path / "link")


def test_the_default_cache_folder_is_in_the_users_cache_home_not_the_shared_temp(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert Settings(store=tmp_path / "store").resolved_cache_dir.parent == Path("/home/someone/.cache/abc-atlas-viewer")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    folder = Settings(store=tmp_path / "store").resolved_cache_dir
    assert folder.parent == tmp_path / "home-cache" / "abc-atlas-viewer"
    assert private_folder(folder).stat().st_mode & 0o777 == 0o700


def test_the_file_cache_is_bounded_in_bytes(tmp_path):
    folder = private_folder(tmp_path / "cache")
    cache = BatchPruningFileSystemCache(str(folder), threshold=10_000, max_bytes=40_000)
    for i in range(200):
        cache.set(f"k{i}", PNG_SIGNATURE + os.urandom(1000))
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total <= 40_000 + cache.bytes_check_every * 1100
    assert cache.get("k199") is not None and cache.get("k0") is None
