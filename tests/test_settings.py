"""Settings: parsing of every ATLAS_VIEWER_* variable, clear errors, derived values, the README table, gunicorn."""
import runpy
from dataclasses import fields
from pathlib import Path

import pytest

from settings import Settings, env_name, settings_table_markdown

REPO = Path(__file__).resolve().parent.parent


def test_defaults_apply_when_no_variable_is_set():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.cache_type == "auto" and settings.workers == 2 and settings.auth_users_file is None


def test_each_type_is_parsed_from_its_variable(tmp_path):
    settings = Settings.from_env({
        "ATLAS_VIEWER_STORE": str(tmp_path),
        "ATLAS_VIEWER_WORKERS": "3",
        "ATLAS_VIEWER_DEBUG": "yes",
        "ATLAS_VIEWER_PRELOAD": "off",
        "ATLAS_VIEWER_REDIS_TIMEOUT_S": "0.25",
        "ATLAS_VIEWER_EXPORT_RATE_PER_MIN": "12",
        "ATLAS_VIEWER_REDIS_URL": "redis://127.0.0.1:6399/2",
        "ATLAS_VIEWER_LOG_LEVEL": "warning",
        "OTHER_VARIABLE": "ignored",
    })
    assert settings.store == tmp_path
    assert settings.workers == 3
    assert settings.debug is True and settings.preload is False
    assert settings.redis_timeout_s == 0.25
    assert isinstance(settings.export_rate_per_min, float) and settings.export_rate_per_min == 12.0
    assert settings.redis_url == "redis://127.0.0.1:6399/2"
    assert settings.log_level == "WARNING"


def test_empty_optional_variable_means_unset():
    settings = Settings.from_env({"ATLAS_VIEWER_REDIS_URL": "", "ATLAS_VIEWER_AUTH_USERS_FILE": " "})
    assert settings.redis_url is None and settings.auth_users_file is None


@pytest.mark.parametrize("variable, value, expected", [
    ("ATLAS_VIEWER_WORKERS", "two", "not a whole number"),
    ("ATLAS_VIEWER_DEBUG", "maybe", "not a boolean"),
    ("ATLAS_VIEWER_REDIS_TIMEOUT_S", "fast", "not a number"),
    ("ATLAS_VIEWER_REDIS_TIMEOUT_S", "nan", "not a finite number"),
    ("ATLAS_VIEWER_CACHE_TYPE", "memcached", "must be one of auto, simple, filesystem, redis, null"),
    ("ATLAS_VIEWER_PORT", "70000", "must be at most 65535"),
    ("ATLAS_VIEWER_WORKERS", "0", "must be at least 1"),
    ("ATLAS_VIEWER_LOG_LEVEL", "LOUD", "must be one of"),
])
def test_bad_value_error_names_the_variable_and_the_problem(variable, value, expected):
    with pytest.raises(ValueError) as info:
        Settings.from_env({variable: value})
    assert variable in str(info.value)
    assert expected in str(info.value)


def test_direct_construction_is_checked_like_the_environment():
    with pytest.raises(ValueError, match="ATLAS_VIEWER_THREADS"):
        Settings(threads=0)


def test_overrides_win_over_the_environment():
    settings = Settings.from_env({"ATLAS_VIEWER_PORT": "9000"}, port=9100, host=None)
    assert settings.port == 9100 and settings.host == "127.0.0.1"


@pytest.mark.parametrize("changes, expected", [
    ({}, "simple"),
    ({"workers": 4}, "simple"),  # a single process (python app.py) shares nothing, whatever `workers` says
    ({"served_by": "gunicorn", "workers": 1}, "simple"),
    ({"served_by": "gunicorn", "workers": 2}, "filesystem"),
    ({"redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
    ({"redis_url": "redis://127.0.0.1:6379/0", "cache_type": "filesystem"}, "filesystem"),
    ({"cache_type": "null", "served_by": "gunicorn"}, "null"),
])
def test_auto_cache_type_resolves_by_process_model_and_redis_url(changes, expected):
    assert Settings(**changes).resolved_cache_type == expected


def test_default_cache_folder_is_stable_per_store_and_differs_between_stores(tmp_path):
    a1 = Settings(store=tmp_path / "a").resolved_cache_dir
    a2 = Settings(store=tmp_path / "a").resolved_cache_dir
    b = Settings(store=tmp_path / "b").resolved_cache_dir
    assert a1 == a2 and a1 != b
    assert Settings(store=tmp_path / "a", cache_dir=tmp_path / "c").resolved_cache_dir == tmp_path / "c"


def test_settings_table_has_one_row_per_variable_with_its_default_and_meaning():
    table = settings_table_markdown().splitlines()
    assert table[0] == "| Variable | Default | Meaning |"
    rows = table[2:]
    assert len(rows) == len(fields(Settings))
    for row, f in zip(rows, fields(Settings)):
        assert row.startswith(f"| `{env_name(f.name)}` |")
        assert f.metadata["help"].split("|")[0].strip() in row.replace("\\|", "|")
    assert "| `ATLAS_VIEWER_WORKERS` | `2` |" in rows[4]


def test_gunicorn_conf_takes_workers_threads_bind_and_preload_from_settings(monkeypatch):
    monkeypatch.setenv("ATLAS_VIEWER_SERVED_BY", "dev")
    monkeypatch.delenv("ATLAS_VIEWER_SERVED_BY")  # the config must set it itself; monkeypatch restores the absence
    monkeypatch.setenv("ATLAS_VIEWER_WORKERS", "3")
    monkeypatch.setenv("ATLAS_VIEWER_THREADS", "6")
    monkeypatch.setenv("ATLAS_VIEWER_HOST", "127.0.0.1")
    monkeypatch.setenv("ATLAS_VIEWER_PORT", "8123")
    conf = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    assert (conf["workers"], conf["threads"], conf["bind"]) == (3, 6, "127.0.0.1:8123")
    assert conf["preload_app"] is True
    assert conf["accesslog"] is None  # the app's JSON request log replaces gunicorn's
    assert Settings.from_env().served_by == "gunicorn"


def test_procfile_serves_app_server_with_the_gunicorn_config():
    assert (REPO / "Procfile").read_text().strip() == "web: gunicorn app:server -c gunicorn.conf.py"


def test_readme_settings_table_matches_the_settings():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    header = "| Variable | Default | Meaning |"
    assert header in readme, "README.md has no settings table (paste the output of `python settings.py`)"
    start = readme.index(header)
    lines = readme[start:].splitlines()
    table = "\n".join(lines[: next((i for i, ln in enumerate(lines) if not ln.startswith("|")), len(lines))])
    assert table == settings_table_markdown(), "README.md's table is stale: paste the output of `python settings.py`"
