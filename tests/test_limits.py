"""Limits and validation: token buckets, 429 on exports, bounded sizes, parameter errors, and path traversal."""
import re
from urllib.parse import quote

import pytest
import redis

from bench.servers import RedisServer
from server.limits import LocalBuckets, RedisBuckets, has_traversal
from server_testapp import build_app, settings_for


class FakeClock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


# --------------------------------------------------------------------------------------------- token buckets
def test_bucket_allows_a_burst_then_refuses_with_the_wait_until_the_next_token():
    clock = FakeClock()
    buckets = LocalBuckets(rate_per_s=0.5, burst=3, clock=clock)
    assert [buckets.consume("ada")[0] for _ in range(3)] == [True, True, True]
    allowed, retry_after = buckets.consume("ada")
    assert not allowed and retry_after == pytest.approx(2.0)
    clock.now += 2.0
    assert buckets.consume("ada") == (True, 0.0)


def test_bucket_refills_no_higher_than_the_burst():
    clock = FakeClock()
    buckets = LocalBuckets(rate_per_s=1.0, burst=2, clock=clock)
    buckets.consume("ada")
    clock.now += 1000
    assert [buckets.consume("ada")[0] for _ in range(3)] == [True, True, False]


def test_buckets_are_kept_per_client():
    buckets = LocalBuckets(rate_per_s=0.01, burst=1, clock=FakeClock())
    assert buckets.consume("ada")[0] and not buckets.consume("ada")[0]
    assert buckets.consume("alan")[0]


def test_bucket_memory_is_bounded_by_forgetting_the_least_recent_clients():
    buckets = LocalBuckets(rate_per_s=0.01, burst=1, clock=FakeClock(), max_clients=3)
    for client in "abcde":
        buckets.consume(client)
    assert len(buckets._buckets) == 3


def test_redis_buckets_are_shared_between_workers(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    worker_a = RedisBuckets(redis.Redis.from_url(redis_server.url), rate_per_s=0.01, burst=3)
    worker_b = RedisBuckets(redis.Redis.from_url(redis_server.url), rate_per_s=0.01, burst=3)
    results = [worker_a.consume("ada")[0], worker_b.consume("ada")[0], worker_a.consume("ada")[0]]
    allowed, retry_after = worker_b.consume("ada")
    assert results == [True, True, True]
    assert not allowed and 90 < retry_after <= 100


# --------------------------------------------------------------------------------------------- export routes
def test_exports_over_the_limit_get_429_with_retry_after(tmp_path):
    client = build_app(settings_for(tmp_path, export_burst=2, export_rate_per_min=6)).client()
    statuses = [client.get("/export/human.png").status_code for _ in range(2)]
    refused = client.get("/export/human.png")
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"  # one token every 10 s at 6 per minute
    assert "too many exports" in refused.get_json()["error"]


def test_pictures_are_not_counted_as_exports(tmp_path):
    client = build_app(settings_for(tmp_path, export_burst=1)).client()
    assert all(client.get(f"/render/human/H1.png?w={w}").status_code == 200 for w in range(10, 20))


def test_export_limit_counts_each_client_apart(tmp_path):
    client = build_app(settings_for(tmp_path, export_burst=1)).client()
    assert client.get("/export/human.png", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert client.get("/export/human.png", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/export/human.png", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_export_limit_is_shared_through_redis_and_falls_back_when_redis_stops(tmp_path):
    with RedisServer() as server:
        settings = settings_for(tmp_path, export_burst=2, redis_url=server.url)
        worker_a, worker_b = build_app(settings).client(), build_app(settings).client()
        assert worker_a.get("/export/human.png").status_code == 200
        assert worker_b.get("/export/human.png").status_code == 200
        assert worker_a.get("/export/human.png").status_code == 429  # the two workers share one bucket
        server.stop()
        # Redis gone: each worker limits on its own, and exports are still served
        assert worker_b.get("/export/human.png").status_code == 200


def test_export_size_above_the_maximum_is_refused_naming_the_parameter(tmp_path):
    client = build_app(settings_for(tmp_path, max_export_px=2000)).client()
    assert client.get("/export/human.png?w=2000&h=1500").status_code == 200
    response = client.get("/export/human.png?w=100000&h=1500")
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "w" and "1..2000" in response.get_json()["error"]


# --------------------------------------------------------------------------------------------- parameters
def test_unknown_catalog_value_gets_400_naming_the_parameter(tmp_path):
    response = build_app(settings_for(tmp_path)).client().get("/render/human/H9.png")
    assert response.status_code == 400 and response.get_json()["parameter"] == "section"


@pytest.mark.parametrize("value, expected", [
    ("../etc", True), ("a/../b", True), ("..\\x", True), ("a\x00b", True), ("..", True),
    ("L2/3 IT", False), ("Astro...", False), ("..a", False), ("D1 MSN", False),
])
def test_traversal_is_a_dotdot_segment_or_a_nul_not_a_slash(value, expected):
    assert has_traversal(value) is expected


# --------------------------------------------------------------------------------------------- traversal
PATH_PAYLOADS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..%5c..%5c..%5cetc%5cpasswd",
    "%252e%252e%252fetc%252fpasswd",  # double encoding must stay text
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "passwd%00.png",
]


def traversal_urls(rule, sentinel):
    """URLs of ``rule`` with every argument replaced by each payload (and the sentinel file's absolute path)."""
    payloads = PATH_PAYLOADS + [quote(str(sentinel), safe=""), str(sentinel)]
    return [re.sub(r"<[^>]+>", payload, rule.rule) for payload in payloads]


def is_app_page(body: bytes) -> bool:
    """True for Dash's page shell, which its catch-all route serves for any unknown path (no file is read)."""
    return body.startswith(b"<!DOCTYPE html>") and b'<script id="_dash-config"' in body


def probe_every_route(test_client, url_map, sentinel):
    """Request every route with traversal payloads in its arguments and its query; return the offending answers."""
    problems = []
    for rule in url_map.iter_rules():
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        urls = traversal_urls(rule, sentinel) if rule.arguments else []
        base = re.sub(r"<[^>]+>", "x", rule.rule)
        names = sorted(set(rule.arguments) | {"dataset", "section", "gene", "term", "path", "file", "store"})
        queries = [f"{base}?{name}={payload}" for name in names for payload in PATH_PAYLOADS[:3] + ["a%00"]]
        for url in urls + queries:
            response = test_client.open(url, method=method, follow_redirects=True)
            body = response.get_data()
            if b"root:" in body or b"SENTINEL-CONTENT" in body:
                problems.append((url, response.status_code, "file content leaked"))
            elif response.status_code not in (400, 404, 405) and not is_app_page(body):
                problems.append((url, response.status_code, body[:80]))
    return problems


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("SENTINEL-CONTENT")
    return path


def test_path_traversal_on_every_route_of_the_server_features_gets_400_or_404(tmp_path, sentinel):
    test_app = build_app(settings_for(tmp_path, auth_proxy_header="X-User"))
    client = test_app.client()
    client.environ_base["HTTP_X_USER"] = "ada"  # logged in, so the routes themselves answer
    assert probe_every_route(client, test_app.server.url_map, sentinel) == []


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A small prepared store (the data layer's hand-made ABC cache), so the viewer's routes have a catalog."""
    from abc_builders import build_quirky_cache
    from data_layer.prepare import prepare_store

    root = tmp_path_factory.mktemp("traversal-store")
    build_quirky_cache(root / "cache")
    prepare_store(root / "cache", root / "store")
    return root / "store"


@pytest.fixture(scope="module")
def viewer_client(small_store):
    from app import create_app
    from settings import Settings

    # a burst large enough that every payload reaches the export routes themselves, not the rate limit's 429
    app = create_app(Settings(store=small_store, export_burst=100_000))
    return app.server.test_client(), app.server.url_map


def test_path_traversal_on_every_route_of_the_viewer_gets_400_or_404(viewer_client, sentinel):
    client, url_map = viewer_client
    assert probe_every_route(client, url_map, sentinel) == []


def test_traversal_in_each_picture_parameter_gets_400_or_404(viewer_client, small_store, sentinel):
    from urllib.parse import parse_qsl, urlencode, urlsplit

    from bench.load_test import build_scenario

    client, _ = viewer_client
    scenario = build_scenario(small_store)
    place = scenario.places[0]
    url = scenario.url(place, place.levels[0], None, place.window, (64, 48))
    assert client.get(url).status_code == 200  # the untouched picture renders
    path, pairs = urlsplit(url).path, parse_qsl(urlsplit(url).query)
    problems = []
    for i, (key, _) in enumerate(pairs):
        for payload in ["../../etc/passwd", "/etc/passwd", str(sentinel), "a\x00b", "..\\..\\etc"]:
            query = urlencode(pairs[:i] + [(key, payload)] + pairs[i + 1:])
            response = client.get(f"{path}?{query}")
            body = response.get_data()
            if response.status_code not in (400, 404) or b"root:" in body or b"SENTINEL-CONTENT" in body:
                problems.append((key, payload, response.status_code, body[:80]))
    assert problems == []
