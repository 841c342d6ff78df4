"""First page load to first picture: the viewer served by ``atlas-viewer serve`` on loopback, opened by headless
Chromium through Selenium.

Each load starts a fresh browser (no browser cache) and measures, with the page's Performance API (times relative to
the navigation start), when the map's picture (the figure's layout image) has arrived: the resource-timing
``responseEnd`` of the picture URL that the map's ``<image>`` element shows. The first load hits a cold server (the
section's cells and the picture are computed); later loads a warm one (the picture comes from the picture cache).
The server is started as a child process and stopped at the end.

Run alone: ``python -m bench.browser_bench STORE [--loads 4]`` (prints JSON).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Chromium switches that work headless in a container (as tests/conftest.py uses, plus no sandbox as root).
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--no-first-run", "--window-size=1400,1000")

# The map's picture: the URL in the figure, the URL its <image> shows, and that URL's resource timing.
FIRST_PICTURE_JS = """
var gd = document.querySelector('#%s .js-plotly-plot');
if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) { return null; }
var img = gd.querySelector('image');
var shown = img ? (img.getAttribute('href') || '') : '';
if (!shown) { return null; }
var entries = performance.getEntriesByName(new URL(shown, window.location.href).href)
    .filter(function (e) { return e.responseEnd > 0; });
if (!entries.length) { return null; }
var nav = performance.getEntriesByType('navigation')[0] || {};
var e = entries[0];
var before = performance.getEntriesByType('resource').filter(function (r) { return r.startTime < e.requestStart; });
var bytes = (nav.transferSize || 0) + before.reduce(function (sum, r) { return sum + (r.transferSize || 0); }, 0);
var plotly = before.filter(function (r) { return /plotly[^/]*\.js/.test(r.name); })
    .reduce(function (sum, r) { return sum + (r.transferSize || 0); }, 0);
var callbacks = before.filter(function (r) { return r.name.indexOf('_dash-update-component') >= 0; }).length;
return {url: shown, picture_ms: e.responseEnd, seen_ms: performance.now(), request_start_ms: e.requestStart, response_start_ms: e.responseStart,
        dom_content_loaded_ms: nav.domContentLoadedEventEnd || null, load_event_ms: nav.loadEventEnd || null,
        bytes_before_picture: bytes, plotly_bytes: plotly, callbacks_before_picture: callbacks};
"""


class BrowserBenchError(RuntimeError):
    """The server or the browser did not come up, or the picture never arrived."""


def _free_port() -> int:
    from bench.servers import free_port

    return free_port()


def start_server(store: Path, port: int, log_path: Path, timeout_s: float = 120.0,
                 settings: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
    """``atlas-viewer serve STORE --port PORT`` on 127.0.0.1 (with the ``ATLAS_VIEWER_*`` ``settings`` given,
    none inherited); returns the process and the seconds until ``/`` answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_VIEWER_")}
    env.update(settings or {})
    env["PYTHONPATH"] = str(ROOT)
    t0 = time.perf_counter()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", str(store), "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserBenchError(f"the server exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, time.perf_counter() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)  # polling a port that is not open yet; the server gives no other signal
    stop_server(proc)
    raise BrowserBenchError(f"the server did not answer {url} within {timeout_s:.0f} s: {log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


def new_browser():
    """A fresh headless Chromium (its own empty profile, so nothing is cached)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def load_once(url: str, graph: str = "map-graph", timeout_s: float = 120.0) -> dict:
    """Open ``url`` in a fresh browser and wait for the first picture of ``graph``; returns its timings (ms from
    the navigation start) and the wall time from ``driver.get`` to the picture seen by the poll."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver = new_browser()
    try:
        t0 = time.perf_counter()
        driver.get(url)
        try:
            info = WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(
                lambda d: d.execute_script(FIRST_PICTURE_JS % graph))
        except TimeoutException:
            requests = driver.execute_script(
                "return performance.getEntriesByType('resource').slice(-12).map(function (e) {"
                " return e.name.split('?')[0].split('/').pop() + ' ' + Math.round(e.startTime) + '-'"
                " + Math.round(e.responseEnd); })")
            console = [e.get("message", "") for e in driver.get_log("browser")]
            raise BrowserBenchError(f"no picture in #{graph} within {timeout_s:.0f} s of opening {url}; last "
                                    f"requests (ms): {requests}; console: {console[-5:]}") from None
        info["wall_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        info["console_errors"] = [e.get("message", "") for e in driver.get_log("browser")]
        return info
    finally:
        driver.quit()


def bench_first_picture(store: str | Path, loads: int = 4, timeout_s: float = 120.0, full_plotly: bool = False,
                        first_picture: bool = True) -> dict:
    """Start the server on ``store``, load the page ``loads`` times (the first on a cold server), stop the server.
    ``full_plotly``: the server sends Dash's full plotly.js instead of the page's partial bundle (the "before").
    ``first_picture=False``: the page does not carry its first pictures, the callbacks ask for them (the "before"
    of ``ATLAS_VIEWER_FIRST_PICTURE``).

    Returns
    -------
    dict
        ``server_start_s``, ``cold_ms`` (first picture of the first load, ms from navigation start), ``warm``
        (``p50_ms, p95_ms, n`` of the later loads), ``seen_warm_p50_ms`` (when the page showed the picture,
        later loads), ``loads`` (every load's timings), or ``skipped`` when Chromium or chromedriver is missing.
    """
    if not CHROMIUM or not CHROMEDRIVER:
        return {"skipped": "chromium or chromedriver not installed"}
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="browser-bench-") as tmp:
        log_path = Path(tmp) / "server.log"
        settings = {"ATLAS_VIEWER_FULL_PLOTLY": "true" if full_plotly else "false",
                    "ATLAS_VIEWER_FIRST_PICTURE": "true" if first_picture else "false"}
        proc, start_s = start_server(Path(store), port, log_path, timeout_s, settings=settings)
        try:
            url = f"http://127.0.0.1:{port}/"
            runs = [load_once(url, timeout_s=timeout_s) for _ in range(max(1, loads))]
        except BrowserBenchError as exc:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise BrowserBenchError(f"{exc}\nserver log:\n{tail}") from None
        finally:
            stop_server(proc)
    warm = [r["picture_ms"] for r in runs[1:]]
    return {
        "server_start_s": round(start_s, 2), "cold_ms": round(runs[0]["picture_ms"], 1),
        "warm": ({"p50_ms": round(float(np.percentile(warm, 50)), 1), "p95_ms": round(float(np.percentile(warm, 95)), 1),
                  "n": len(warm)} if warm else {"p50_ms": None, "p95_ms": None, "n": 0}),
        "loads": runs, "console_errors": sum(len(r["console_errors"]) for r in runs),
        "bytes_before_picture": int(np.median([r["bytes_before_picture"] for r in runs])),
        "plotly_bytes": int(np.median([r["plotly_bytes"] for r in runs])),
        "callbacks_before_picture": int(np.median([r["callbacks_before_picture"] for r in runs])),
        "seen_warm_p50_ms": (round(float(np.percentile([r["seen_ms"] for r in runs[1:]], 50)), 1)
                             if warm else None),
    }


def compare_first_picture(store: str | Path, loads: int = 4, timeout_s: float = 120.0) -> dict:
    """The page without its first pictures (the callbacks ask for them) and with them, one after the other on the
    same server code: ``{"before": ..., "after": ...}`` of :func:`bench_first_picture`."""
    before = bench_first_picture(store, loads=loads, timeout_s=timeout_s, first_picture=False)
    return {"before": before, "after": bench_first_picture(store, loads=loads, timeout_s=timeout_s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--loads", type=int, default=4)
    parser.add_argument("--full-plotly", action="store_true", help="serve Dash's full plotly.js (the before)")
    parser.add_argument("--first-picture", action="store_true",
                        help="the page without, then with, its first pictures in the layout (before and after)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.first_picture:
        result = compare_first_picture(args.store, loads=args.loads)
    else:
        result = bench_first_picture(args.store, loads=args.loads, full_plotly=args.full_plotly)
    print(json.dumps(result, indent=1))  # noqa: T201 - the output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
