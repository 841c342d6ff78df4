"""The load and fault test in its small, CI-friendly form: real gunicorn (2 workers) and Redis on loopback.

4 users, 40 requests, 20 distinct renders for memory; a worker is SIGKILLed and Redis stopped during the load.
Timing figures are printed by the full run (``python -m bench.load_test``), never asserted here.
"""
import sys

import pytest

from bench.load_test import LoadTestConfig, Sample, format_report, percentile, run_load_test, summarise


@pytest.fixture(scope="module")
def demo_store_dir(demo_cache, tmp_path_factory):
    """The session's demo cache, prepared once for this module."""
    from data_layer.prepare import prepare_store

    store = tmp_path_factory.mktemp("load-demo") / "store"
    prepare_store(demo_cache, store)
    return store


def test_percentile_interpolates_between_ranks():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([10.0, 20.0], 0.95) == pytest.approx(19.5)


def test_failures_while_the_killed_worker_dies_are_counted_apart_from_errors():
    samples = [
        Sample(t=1.0, action="zoom", status=200, ms=10.0),
        Sample(t=5.1, action="zoom", status=0, ms=3.0, error="ConnectionError"),  # in flight on the killed worker
        Sample(t=20.0, action="zoom", status=0, ms=3.0, error="ConnectionError"),  # long after: an error
        Sample(t=21.0, action="export", status=500, ms=30.0),
    ]
    summary = summarise(samples, elapsed_s=30.0, faults={"kill": {"t_s": 5.0, "respawn_s": 1.0}})
    assert summary["lost_with_killed_worker"] == 1
    assert summary["errors"] == 2


def test_the_limits_refusals_are_counted_apart_and_interactive_pictures_have_their_own_p95():
    samples = [Sample(t=1.0, action="zoom", status=200, ms=float(ms)) for ms in range(1, 101)]
    samples += [
        Sample(t=2.0, action="export figure.pdf", status=200, ms=9000.0),  # not an interactive picture
        Sample(t=3.0, action="export figure.png", status=503, ms=2.0, reason="export_slots"),
        Sample(t=3.5, action="export cells.csv", status=429, ms=2.0, reason="rate_limit"),
        Sample(t=4.0, action="zoom", status=503, ms=2.0, error="Service Unavailable"),  # no reason: an error
    ]
    summary = summarise(samples, elapsed_s=10.0, faults={})
    assert summary["refused"] == {"429 rate_limit": 1, "503 export_slots": 1}
    assert summary["errors"] == 1
    assert summary["interactive"]["n"] == 100 and summary["interactive"]["p95_ms"] == pytest.approx(95.05, abs=0.1)
    assert summary["p95_ms"] > 95.05  # the export's 9 s counts in the overall figures only


@pytest.mark.slow
def test_small_load_run_has_no_errors_and_survives_a_killed_worker_and_redis_stopping(demo_store_dir, tmp_path):
    config = LoadTestConfig(users=4, duration_s=60, max_requests=40, renders=20, workers=2, threads=2, think_s=0.0,
                            store=demo_store_dir, work_dir=tmp_path, python=sys.executable)
    result = run_load_test(config, echo=lambda line: None)
    report = format_report(result)
    load = result["load"]
    assert load["requests"] == 40, report
    assert load["errors"] == 0, report
    assert load["faults"]["kill"]["respawned"], report
    assert load["faults"]["kill"]["pid"] not in load["faults"]["kill"]["workers_after"], report
    assert load["served_after_fault"]["kill"] == {**load["served_after_fault"]["kill"], "requests": 10, "ok": 10}
    assert load["served_after_fault"]["redis_stop"]["ok"] == 10, report
    assert result["memory"]["errors"] == 0 and len(result["memory"]["samples"]) == 11, report
    assert result["health_after"]["status"] == 200, report
    assert 1 <= result["cache_warnings"] <= config.workers, report  # once per outage per worker, not per request
    assert result["passed"], report
