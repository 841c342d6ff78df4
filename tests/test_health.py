"""/healthz (ok with a store, 503 without) and the JSON request log (one line per request, refused ones too)."""
import json
import logging

import pytest

from server.health import app_version
from server_testapp import FakeAtlas, build_app, settings_for


@pytest.fixture
def access_records(caplog):
    caplog.set_level(logging.INFO, logger="atlas_viewer.access")
    return lambda: [json.loads(r.getMessage()) for r in caplog.records if r.name == "atlas_viewer.access"]


def test_healthz_reports_store_datasets_and_version(tmp_path):
    settings = settings_for(tmp_path)
    response = build_app(settings).client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 200
    assert body["ok"] is True and body["status"] == "ok"
    assert body["store"] == str(settings.store)
    assert body["datasets"] == len(FakeAtlas().datasets())
    assert body["version"] == app_version()
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_is_503_when_the_store_folder_is_missing(tmp_path):
    settings = settings_for(tmp_path).replace(store=tmp_path / "missing")
    response = build_app(settings).client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ok"] is False and body["status"] == "down" and "does not exist" in body["error"] and str(tmp_path / "missing") in body["error"]


def test_healthz_is_503_when_the_store_cannot_be_opened_and_recovers_when_it_can(tmp_path):
    broken = {"yes": True}

    def opener(store):
        if broken["yes"]:
            raise OSError("catalog.json is truncated")
        return FakeAtlas()

    client = build_app(settings_for(tmp_path), opener=opener).client()
    response = client.get("/healthz")
    assert response.status_code == 503 and "catalog.json is truncated" in response.get_json()["error"]
    broken["yes"] = False
    assert client.get("/healthz").status_code == 200


def test_request_log_writes_one_json_line_per_request_with_its_fields(tmp_path, access_records):
    client = build_app(settings_for(tmp_path)).client()
    client.get("/render/human/H1.png?w=32&h=32")
    client.get("/healthz")
    records = access_records()
    assert [r["path"] for r in records] == ["/render/human/H1.png", "/healthz"]
    first = records[0]
    assert set(first) == {"ts", "method", "path", "status", "ms", "user", "bytes", "client"}
    assert first["method"] == "GET" and first["status"] == 200 and first["user"] is None
    assert first["bytes"] == len(client.get("/render/human/H1.png?w=32&h=32").data)
    assert isinstance(first["ms"], float) and first["ms"] >= 0


def test_request_log_records_refused_requests_with_their_status(tmp_path, access_records):
    client = build_app(settings_for(tmp_path)).client()
    client.get("/render/nowhere/H1.png")
    client.get("/render/..%2f..%2fetc%2fpasswd/H1.png")
    assert [r["status"] for r in access_records()] == [400, 400]


def test_request_log_can_be_turned_off(tmp_path, access_records):
    build_app(settings_for(tmp_path, access_log=False)).client().get("/healthz")
    assert access_records() == []


def test_client_address_comes_from_the_proxy_when_proxies_are_trusted(tmp_path, access_records):
    client = build_app(settings_for(tmp_path, proxy_count=1)).client()
    client.get("/healthz", headers={"X-Forwarded-For": "10.1.2.3"})
    assert access_records()[-1]["client"] == "10.1.2.3"


def test_forwarded_address_is_ignored_without_trusted_proxies(tmp_path, access_records):
    client = build_app(settings_for(tmp_path)).client()
    client.get("/healthz", headers={"X-Forwarded-For": "10.1.2.3"})
    assert access_records()[-1]["client"] == "127.0.0.1"


def test_with_login_on_healthz_tells_a_stranger_only_ok(tmp_path):
    from server.auth import user_line

    users = tmp_path / "users.txt"
    users.write_text(user_line("ada", "lovelace-pw") + "\n")
    settings = settings_for(tmp_path, auth_users_file=users, secret_key="s" * 32)
    client = build_app(settings).client()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"ok": True, "status": "ok"}
    missing = build_app(settings.replace(store=tmp_path / "missing")).client().get("/healthz")
    assert missing.status_code == 503 and missing.get_json() == {"ok": False, "status": "down"}
    assert str(tmp_path) not in missing.get_data(as_text=True)
