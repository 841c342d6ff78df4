"""Caching of pictures and look-ups: plain-value keys, each backend (Redis real), bounds, and Redis going away."""
import logging

import numpy as np
import pytest
import redis
from flask import Flask

from bench.servers import RedisServer
from server.caching import PNG_SIGNATURE, install_caches, make_key, picture_cache, store_token
from server_testapp import build_app, settings_for


@pytest.fixture(scope="module")
def redis_server():
    """A real redis-server on a free loopback port, without persistence."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def fresh_redis(redis_server):
    """The module's Redis, emptied and running (a test may stop it)."""
    if not redis_server.running:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def caches_for(tmp_path, clock=None, **changes):
    server = Flask(__name__)
    kwargs = {} if clock is None else {"clock": clock}
    return install_caches(server, settings_for(tmp_path, **changes), **kwargs)


def caches_of_backend(backend, tmp_path, request):
    """Caches of one backend kind; for Redis, on the module's real server (emptied)."""
    changes = {"cache_type": backend}
    if backend == "redis":
        changes["redis_url"] = request.getfixturevalue("fresh_redis").url
    return caches_for(tmp_path, **changes)


def P(payload: bytes) -> bytes:
    """A picture as the cache keeps it: PNG bytes (the signature, then ``payload``)."""
    return PNG_SIGNATURE + payload


def counting_render(calls, payload=P(b"PNG")):
    def render():
        calls.append(1)
        return payload
    return render


# --------------------------------------------------------------------------------------------- keys
def test_same_plain_values_give_the_same_key_and_any_difference_another():
    key = ("HMBA-MERSCOPE", "H1", "subclass", None, 0.0, 10.5, -2.0, 8.0, 800, 600)
    assert make_key("png", key, "tok") == make_key("png", list(key), "tok")
    assert make_key("png", key) != make_key("lookup", key)
    assert make_key("png", key, "tok") != make_key("png", key, "other-store")
    assert make_key("png", key) != make_key("png", key[:-1] + (601,))
    assert make_key("png", ("a", "b")) != make_key("png", ("a,b",))


def test_numpy_scalars_key_like_the_python_numbers_they_hold():
    assert make_key("png", ("d", np.float32(0.5), np.int64(800))) == make_key("png", ("d", 0.5, 800))


def test_objects_that_are_not_plain_values_are_refused_as_keys():
    with pytest.raises(TypeError, match=r"key\[1\] is a dict"):
        make_key("png", ("d", {"section": "H1"}))
    with pytest.raises(TypeError, match="ndarray"):
        make_key("png", ("d", np.arange(3)))


def test_store_token_changes_when_the_store_is_rebuilt(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    before = store_token(store)
    store.rmdir()
    store.mkdir()
    import os
    os.utime(store, ns=(1, 1))  # a rebuilt store has another modification time
    assert store_token(store) != before


# --------------------------------------------------------------------------------------------- backends
@pytest.mark.parametrize("backend", ["simple", "filesystem", "redis"])
def test_each_backend_renders_a_picture_once_per_key(backend, tmp_path, request):
    caches = caches_of_backend(backend, tmp_path, request)
    assert caches.kind == backend
    calls = []
    first = caches.pictures.get_or_render(("d", "H1", 1.5), counting_render(calls, P(b"A")))
    second = caches.pictures.get_or_render(("d", "H1", 1.5), counting_render(calls, P(b"A")))
    other = caches.pictures.get_or_render(("d", "H2", 1.5), counting_render(calls, P(b"B")))
    assert (first, second, other) == (P(b"A"), P(b"A"), P(b"B"))
    assert len(calls) == 2


def test_redis_backend_keeps_pictures_in_redis(fresh_redis, tmp_path):
    caches = caches_for(tmp_path, cache_type="redis", redis_url=fresh_redis.url)
    caches.pictures.get_or_render(("d", "H1"), lambda: P(b"PNG"))
    keys = redis.Redis.from_url(fresh_redis.url).keys("*")
    assert [k.decode() for k in keys] == ["atlas-viewer:" + caches.pictures.key(("d", "H1"))]


def test_filesystem_cache_is_shared_by_two_workers_of_one_store(tmp_path):
    worker_a = caches_for(tmp_path, served_by="gunicorn", workers=2)
    worker_b = caches_for(tmp_path, served_by="gunicorn", workers=2)
    assert worker_a.kind == worker_b.kind == "filesystem"
    worker_a.pictures.get_or_render(("d", "H1"), lambda: P(b"from-a"))
    calls = []
    assert worker_b.pictures.get_or_render(("d", "H1"), counting_render(calls, P(b"from-b"))) == P(b"from-a")
    assert calls == []


@pytest.mark.parametrize("backend", ["simple", "filesystem"])
def test_in_process_and_filesystem_caches_stay_within_max_items(backend, tmp_path):
    caches = caches_for(tmp_path, cache_type=backend, cache_max_items=10)
    for i in range(40):
        caches.pictures.get_or_render(("d", i), lambda: P(b"x" * 100))
    if backend == "simple":
        stored = len(caches.pictures.backend._cache)
    else:
        stored = len(list(caches.pictures.backend._list_dir()))  # entries, without the count file
    assert stored <= 10 + 1  # the backends prune before writing, so the newest entry may stand one over


def test_null_cache_renders_every_time(tmp_path):
    caches = caches_for(tmp_path, cache_type="null")
    calls = []
    for _ in range(3):
        caches.pictures.get_or_render(("d",), counting_render(calls))
    assert len(calls) == 3


def test_a_render_that_raises_is_not_cached(tmp_path):
    caches = caches_for(tmp_path, cache_type="simple")

    def broken():
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        caches.pictures.get_or_render(("d",), broken)
    assert caches.pictures.get_or_render(("d",), lambda: P(b"ok")) == P(b"ok")


def test_render_returning_something_else_than_bytes_is_an_error(tmp_path):
    caches = caches_for(tmp_path, cache_type="simple")
    with pytest.raises(TypeError, match="not bytes"):
        caches.pictures.get_or_render(("d",), lambda: "a string")


def test_picture_cache_passes_through_when_no_cache_is_installed():
    server = Flask(__name__)
    calls = []
    with server.app_context():
        for _ in range(2):
            assert picture_cache().get_or_render(("d",), counting_render(calls)) == P(b"PNG")
    assert len(calls) == 2


def test_picture_route_renders_once_for_repeated_requests(tmp_path):
    test_app = build_app(settings_for(tmp_path, cache_type="simple"))
    client = test_app.client()
    bodies = [client.get("/render/human/H1.png?viewport=0,2,0,2&w=64&h=64").data for _ in range(3)]
    assert len(set(bodies)) == 1 and len(test_app.renders) == 1


# --------------------------------------------------------------------------------------------- Redis going away
def test_redis_stopped_mid_test_app_keeps_serving_and_warns_once_per_outage(fresh_redis, tmp_path, caplog):
    clock = FakeClock()
    caches = caches_for(tmp_path, clock=clock, cache_type="redis", redis_url=fresh_redis.url, redis_retry_s=30)
    calls = []
    caches.pictures.get_or_render(("d", "H1"), counting_render(calls, P(b"A")))
    assert len(calls) == 1

    fresh_redis.stop()
    caplog.set_level(logging.WARNING, logger="server.caching")
    for _ in range(5):
        assert caches.pictures.get_or_render(("d", "H1"), counting_render(calls, P(b"A"))) == P(b"A")
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "redis" in warnings[0].getMessage()
    assert caches.guard.down and len(calls) == 6

    fresh_redis.start()
    clock.now += 31  # past the retry interval: the next request tries Redis again
    caches.pictures.get_or_render(("d", "H2"), counting_render(calls, P(b"B")))
    assert not caches.guard.down
    assert any("is back" in r.getMessage() for r in caplog.records)
    assert caches.pictures.get_or_render(("d", "H2"), counting_render(calls, P(b"B"))) == P(b"B")
    assert len(calls) == 7  # H2 came from Redis the second time


def test_during_an_outage_redis_is_not_retried_before_the_interval(fresh_redis, tmp_path):
    clock = FakeClock()
    caches = caches_for(tmp_path, clock=clock, cache_type="redis", redis_url=fresh_redis.url, redis_retry_s=30)
    fresh_redis.stop()
    caches.pictures.get(("d",))
    assert caches.guard.down
    fresh_redis.start()
    clock.now += 10
    caches.pictures.get_or_render(("d",), lambda: P(b"A"))
    assert caches.guard.down  # still skipping Redis: no request paid a connection attempt
    clock.now += 25
    caches.pictures.get_or_render(("d",), lambda: P(b"A"))
    assert not caches.guard.down


def test_app_starts_and_serves_when_redis_is_down_from_the_start(tmp_path):
    from bench.servers import free_port

    settings = settings_for(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    test_app = build_app(settings)
    response = test_app.client().get("/render/human/H1.png")
    assert response.status_code == 200 and response.data.startswith(P(b"PNG human H1"))
    health = test_app.client().get("/healthz").get_json()
    assert health["cache"] == "redis" and health["cache_ok"] is False
