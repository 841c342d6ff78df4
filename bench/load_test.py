"""Load and fault test of the shared-server deployment, on loopback, bounded in count and time.

``python -m bench.load_test --users 20 --duration 60 --workers 2`` (or ``atlas-viewer load-test``):

1. builds the demo store (or uses ``--store``), starts a throw-away ``redis-server`` and the viewer under a real
   gunicorn (``app:server -c gunicorn.conf.py``) with ``--workers`` workers, all on 127.0.0.1;
2. **memory**: ``--renders`` distinct pictures (cache misses), sampling each worker's resident memory (psutil)
   every tenth of the way, so growth beyond the cache bound shows;
3. **load**: ``--users`` simulated users (threads, one ``requests.Session`` each, each from its own address through
   ``X-Forwarded-For``, so the per-client limits count each apart as for real users) open the page, change
   sections, colour by taxonomy levels and genes, zoom (picture URLs with viewports) and export (real
   ``/export/figure.png``, ``/export/figure.pdf`` and ``/export/cells.csv`` requests), for ``--duration`` seconds
   or ``--max-requests`` requests, while each worker's resident memory is sampled every 2 s;
4. **faults** during the load: one worker is killed with SIGKILL at 40 % of the time (gunicorn boots a new one;
   the others keep serving), and Redis is stopped at 60 % (the app serves without cache);
5. reports p50/p95/p99 latency per action and of the interactive pictures alone, errors, the deliberate refusals
   of the limits (429, 503 with a JSON ``reason``) apart, requests lost with the killed worker, memory per worker,
   and whether serving went on after each fault. Exit status 0 when there were no errors and every fault was
   survived.

``--compare`` runs the load twice in one run, without faults: "before" with the export slots, the rates and the
picture budget turned off through their settings (:data:`LIMITS_OFF`), then "after" with their defaults, and
prints both.

Requests that were in flight on the killed worker fail by design (their connection dies); they are counted
apart as ``lost_with_killed_worker``, not as errors.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("bench.load_test")

MAP_SIZE_PX = (900, 700)
EXPORT_SIZE_PX = (2400, 1800)
#: What a user's export asks for (one at random): a figure as PNG or PDF, or the cells of the view as CSV.
EXPORT_KINDS = ("figure.png", "figure.pdf", "cells.csv")
#: Actions that ask for the map's interactive pictures (``/render/...``), whose latency users feel.
INTERACTIVE_ACTIONS = ("section", "colour", "zoom")
#: Settings that turn the costly-work limits off, for the "before" phase of ``--compare``.
LIMITS_OFF = {
    "ATLAS_VIEWER_EXPORT_SLOTS": "256",
    "ATLAS_VIEWER_EXPORT_RATE_PER_MIN": "1000000",
    "ATLAS_VIEWER_EXPORT_BURST": "100000",
    "ATLAS_VIEWER_PICTURE_RATE_PER_MIN": "1000000",
    "ATLAS_VIEWER_PICTURE_BURST": "100000",
    "ATLAS_VIEWER_PICTURE_BUDGET_MPX_PER_S": "0",
}


# --------------------------------------------------------------------------------------------- scenario
@dataclass
class Place:
    """One place a user can look at: a dataset and a section (or a UMAP), its window and what it can be coloured by."""

    dataset: str
    section: str | None
    window: tuple[float, float, float, float]
    levels: tuple[str, ...]
    genes: tuple[str, ...]


@dataclass
class Scenario:
    """What the simulated users request: places from the store's catalog and the URL builder of the viewer."""

    places: list[Place]
    picture_url: Callable[..., str]
    page_paths: tuple[str, ...] = ("/", "/_dash-layout", "/_dash-dependencies")

    def url(self, place: Place, color_by: str, gene: str | None, window, size_px) -> str:
        return self.picture_url(place, color_by, gene, window, size_px)

    def export_url(self, place: Place, color_by: str, gene: str | None, window, kind: str) -> str:
        """``/export/<kind>`` of the view (the address bar's parameters), a figure of :data:`EXPORT_SIZE_PX`."""
        from core.state import ViewState, to_query
        from core.viewport import Window

        state = ViewState(dataset=place.dataset, section=place.section, color_by=color_by,
                          gene=gene if color_by == "gene" else None, viewport=Window(*window))
        query = to_query(state)
        if kind.startswith("figure."):
            query += f"&width={EXPORT_SIZE_PX[0]}&height={EXPORT_SIZE_PX[1]}"
        return f"/export/{kind}{query}"


def build_scenario(store: Path, max_places: int = 40, max_genes: int = 12) -> Scenario:
    """Places and picture URLs from the store's catalog, through the viewer's own URL builder.

    Uses ``data_layer.Atlas`` (catalog only, no cells) and ``core.picture.PictureRequest.url``, so the load
    test requests exactly what the viewer's map requests.
    """
    from core.catalog import catalog_from_atlas
    from core.picture import PictureRequest
    from core.viewport import Window
    from data_layer import Atlas

    atlas = Atlas.open(store)
    catalog = catalog_from_atlas(atlas)
    places: list[Place] = []
    for name, entry in catalog.datasets.items():
        genes: tuple[str, ...] = ()
        if entry.has_genes:
            genes = tuple(atlas.genes(name)["gene_symbol"].astype(str).head(max_genes))
        levels = tuple(c for c in entry.color_by_choices() if c not in ("gene", "two_genes"))  # taxonomy levels, then region
        if entry.spatial:
            for section in list(entry.sections.values())[: max(1, max_places // 4)]:
                places.append(Place(name, section.label, tuple(section.bounds), levels, genes))
        else:
            places.append(Place(name, None, tuple(entry.bounds), levels, genes))
    if not places:
        raise RuntimeError(f"store {store} has no dataset to look at")

    def picture_url(place: Place, color_by: str, gene: str | None, window, size_px) -> str:
        request = PictureRequest(
            dataset=place.dataset, section=place.section, slab_plane=None, color_by=color_by,
            gene=gene if color_by == "gene" else None, term=None, term_level=None, window=Window(*window),
            width_px=size_px[0], height_px=size_px[1],
        )
        return request.url()

    return Scenario(places=places[:max_places], picture_url=picture_url)


def zoomed(window, rng: random.Random, factor: float | None = None):
    """A random sub-window of ``window`` (zoom 1.5x to 8x around a random centre)."""
    x0, x1, y0, y1 = window
    factor = factor or rng.uniform(1.5, 8.0)
    w, h = (x1 - x0) / factor, (y1 - y0) / factor
    cx, cy = rng.uniform(x0 + w / 2, x1 - w / 2), rng.uniform(y0 + h / 2, y1 - h / 2)
    return (cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)


# --------------------------------------------------------------------------------------------- recording
@dataclass
class Sample:
    t: float  # seconds since the start of the load phase
    action: str
    status: int  # 0: no answer (connection error, timeout)
    ms: float
    error: str = ""
    reason: str = ""  # a limit's deliberate refusal (429 or 503 with JSON "reason")


@dataclass
class Recorder:
    start: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, status: int, ms: float, error: str = "", reason: str = "") -> None:
        with self.lock:
            self.samples.append(Sample(time.monotonic() - self.start, action, status, ms, error, reason))

    def count(self) -> int:
        with self.lock:
            return len(self.samples)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def request(session, recorder: Recorder, base_url: str, action: str, path: str, timeout_s: float) -> int:
    """GET ``path``, record its latency, status and (for a limit's refusal) reason; return the status (0 when no
    answer came)."""
    import requests

    started = time.perf_counter()
    reason = ""
    try:
        response = session.get(base_url + path, timeout=timeout_s)
        _ = response.content
        status, error = response.status_code, ("" if response.ok else response.text[:200])
        if status in (429, 503) and response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                reason = str(response.json().get("reason") or "")
            except ValueError:
                reason = ""
    except requests.RequestException as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
    recorder.add(action, status, (time.perf_counter() - started) * 1000, error, reason)
    return status


# --------------------------------------------------------------------------------------------- simulated user
def simulated_user(user: int, scenario: Scenario, base_url: str, recorder: Recorder, stop: threading.Event,
                   budget: "Budget", seed: int, timeout_s: float, think_s: float = 0.0) -> None:
    """One user: opens the page, then changes sections, colours, zooms and exports until stopped.

    Between two actions the user looks at the picture for a random time of mean ``think_s`` (exponential);
    0 sends the next request as soon as the last answer came (a saturation test, not a person).
    """
    import requests

    rng = random.Random(seed * 1000 + user)
    with requests.Session() as session:
        # each user its own client address (the server trusts X-Forwarded-For from 127.0.0.1 with PROXY_COUNT=1)
        session.headers["X-Forwarded-For"] = f"10.{user // 62500 % 256}.{user // 250 % 250}.{user % 250 + 1}"
        for path in scenario.page_paths:
            if stop.is_set() or not budget.take():
                return
            request(session, recorder, base_url, "page", path, timeout_s)
        place = rng.choice(scenario.places)
        window = place.window
        color_by = place.levels[min(2, len(place.levels) - 1)] if place.levels else "region"
        gene = None
        while not stop.is_set() and budget.take():
            roll = rng.random()
            if roll < 0.25:
                action = "section"
                place, window = (p := rng.choice(scenario.places)), p.window
                if color_by not in place.levels and color_by != "gene":
                    color_by = place.levels[-1] if place.levels else "region"
            elif roll < 0.45:
                action = "colour"
                choices = list(place.levels) + (["gene"] if place.genes else [])
                color_by = rng.choice(choices) if choices else "region"
                gene = rng.choice(place.genes) if color_by == "gene" else None
            elif roll < 0.85:
                action = "zoom"
                window = zoomed(place.window, rng)
            else:
                action = "export"
            if color_by == "gene" and not (gene and gene in place.genes):
                gene = rng.choice(place.genes) if place.genes else None
                color_by = "gene" if gene else (place.levels[-1] if place.levels else "region")
            if action == "export":
                kind = rng.choice(EXPORT_KINDS)
                request(session, recorder, base_url, f"export {kind}",
                        scenario.export_url(place, color_by, gene, window, kind), timeout_s)
            else:
                request(session, recorder, base_url, action, scenario.url(place, color_by, gene, window, MAP_SIZE_PX),
                        timeout_s)
            if think_s > 0:
                stop.wait(rng.expovariate(1.0 / think_s))


class Budget:
    """A shared count of requests left (the run stops at ``max_requests`` whatever the time)."""

    def __init__(self, total: int):
        self._left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


# --------------------------------------------------------------------------------------------- phases
def probe(scenario: Scenario, base_url: str, rng: random.Random, timeout_s: float, n: int = 10) -> dict:
    """``n`` picture requests on a new connection each (half of them new pictures, so they must render).

    Returns
    -------
    dict
        ``requests``, ``ok`` (answered 200), ``p95_ms``.
    """
    import requests

    recorder = Recorder()
    for i in range(n):
        place = scenario.places[i % len(scenario.places)]
        window = zoomed(place.window, rng) if i % 2 else place.window
        color_by = place.levels[-1] if place.levels else "region"
        with requests.Session() as session:
            request(session, recorder, base_url, "probe", scenario.url(place, color_by, None, window, MAP_SIZE_PX),
                    timeout_s)
    times = [s.ms for s in recorder.samples if s.status == 200]
    return {"requests": n, "ok": len(times), "p95_ms": round(percentile(times, 0.95), 1)}


def memory_phase(scenario: Scenario, server, renders: int, seed: int, threads: int = 4,
                 timeout_s: float = 60.0) -> dict:
    """``renders`` distinct pictures (each a cache miss); resident memory of every worker sampled 10 times.

    Returns
    -------
    dict
        ``samples``: list of ``{"renders", "rss_mb": {pid: MB}}``; ``growth_mb``: per worker, last minus the sample
        after the first tenth (warm-up excluded); ``errors``.
    """
    import requests

    from bench.servers import rss_mb, uss_mb

    rng = random.Random(seed)
    urls = []
    for i in range(renders):
        place = scenario.places[i % len(scenario.places)]
        color_by = rng.choice(list(place.levels) or ["region"])
        urls.append(scenario.url(place, color_by, None, zoomed(place.window, rng), MAP_SIZE_PX))
    def sample(done: int) -> dict:
        pids = server.worker_pids()
        return {"renders": done, "rss_mb": rss_mb(pids), "uss_mb": uss_mb(pids)}

    samples = [sample(0)]
    step = max(1, renders // 10)
    recorder = Recorder()
    for start in range(0, renders, step):
        chunk = urls[start:start + step]

        def work(my_urls):
            with requests.Session() as session:
                for url in my_urls:
                    request(session, recorder, server.base_url, "memory", url, timeout_s)

        parts = [chunk[k::threads] for k in range(threads)]
        workers = [threading.Thread(target=work, args=(p,)) for p in parts if p]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        samples.append(sample(min(renders, start + step)))
    errors = sum(1 for s in recorder.samples if s.status != 200)
    first, last = samples[1]["rss_mb"] if len(samples) > 1 else samples[0]["rss_mb"], samples[-1]["rss_mb"]
    growth = {pid: round(last[pid] - first[pid], 1) for pid in last if pid in first}
    first_uss, last_uss = samples[1 if len(samples) > 1 else 0]["uss_mb"], samples[-1]["uss_mb"]
    growth_uss = {pid: round(last_uss[pid] - first_uss[pid], 1) for pid in last_uss if pid in first_uss}
    latencies = [s.ms for s in recorder.samples if s.status == 200]
    return {"renders": renders, "errors": errors, "samples": samples, "growth_mb": growth,
            "growth_uss_mb": growth_uss,
            "p50_ms": round(percentile(latencies, 0.5), 1), "p95_ms": round(percentile(latencies, 0.95), 1)}


def load_phase(scenario: Scenario, server, redis_server, users: int, duration_s: float, max_requests: int,
               seed: int, kill_worker: bool, stop_redis: bool, timeout_s: float, think_s: float = 0.0) -> dict:
    """Simulated users for ``duration_s`` (or ``max_requests``), with a worker killed and Redis stopped."""
    recorder = Recorder()
    stop = threading.Event()
    budget = Budget(max_requests)
    threads = [threading.Thread(target=simulated_user, name=f"user-{u}", daemon=True,
                                args=(u, scenario, server.base_url, recorder, stop, budget, seed, timeout_s,
                                      think_s))
               for u in range(users)]
    faults: dict = {}
    recorder.start = time.monotonic()
    memory = MemorySampler(server, recorder.start)
    memory.start()
    for t in threads:
        t.start()

    def wait_until(fraction: float) -> bool:
        """Block until ``fraction`` of the time or of the request budget has passed; False if the run ended."""
        deadline = recorder.start + fraction * duration_s
        while time.monotonic() < deadline and recorder.count() < fraction * max_requests:
            if not any(t.is_alive() for t in threads):
                return False
            stop.wait(0.05)
        return True

    probes: dict = {}
    probe_rng = random.Random(seed + 7)
    if kill_worker and wait_until(0.4):
        victims = server.worker_pids()
        if victims:
            victim = victims[0]
            booted_before = len(server.booted_pids())
            t_kill = time.monotonic() - recorder.start
            server.kill_worker(victim)
            # right away, before gunicorn has booted a replacement: the other workers must answer
            probes["kill"] = probe(scenario, server.base_url, probe_rng, timeout_s)
            respawned = server.wait_for_workers(booted_before + 1, timeout_s=60)
            faults["kill"] = {"pid": victim, "t_s": round(t_kill, 2), "respawned": respawned,
                              "respawn_s": round(time.monotonic() - recorder.start - t_kill, 2),
                              "workers_after": server.worker_pids()}
    if stop_redis and redis_server is not None and wait_until(0.6):
        t_stop = time.monotonic() - recorder.start
        redis_server.stop()
        faults["redis_stop"] = {"t_s": round(t_stop, 2)}
        probes["redis_stop"] = probe(scenario, server.base_url, probe_rng, timeout_s)

    deadline = recorder.start + duration_s
    while time.monotonic() < deadline and any(t.is_alive() for t in threads):
        stop.wait(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=timeout_s + 5)
    elapsed = time.monotonic() - recorder.start
    memory.stop()
    summary = summarise(recorder.samples, elapsed, faults)
    summary["served_after_fault"] = probes
    summary["rss"] = memory.summary()
    return summary


class MemorySampler:
    """Each worker's resident memory (MB) every ``every_s`` seconds on a thread of its own, during a load phase."""

    def __init__(self, server, start: float, every_s: float = 2.0):
        self.server = server
        self.start_time = start
        self.every_s = every_s
        self.samples: list[tuple[float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from bench.servers import rss_mb

        while True:
            self.samples.append((round(time.monotonic() - self.start_time, 1), rss_mb(self.server.worker_pids())))
            if self._stop.wait(self.every_s):
                break

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        from bench.servers import rss_mb

        self.samples.append((round(time.monotonic() - self.start_time, 1), rss_mb(self.server.worker_pids())))

    def summary(self) -> dict:
        """``start_mb`` / ``end_mb`` (per worker pid at the first and last sample), ``max_mb`` (the most each
        worker reached), ``total_start_mb`` / ``total_end_mb`` / ``total_max_mb`` (all workers together) and the
        ``samples`` (seconds, {pid: MB})."""
        if not self.samples:
            return {}
        first, last = self.samples[0][1], self.samples[-1][1]
        peak: dict[int, float] = {}
        for _, by_pid in self.samples:
            for pid, mb in by_pid.items():
                peak[pid] = max(peak.get(pid, 0.0), mb)
        totals = [sum(by_pid.values()) for _, by_pid in self.samples]
        return {"start_mb": {pid: round(mb) for pid, mb in first.items()},
                "end_mb": {pid: round(mb) for pid, mb in last.items()},
                "max_mb": {pid: round(mb) for pid, mb in peak.items()},
                "total_start_mb": round(totals[0]), "total_end_mb": round(totals[-1]), "total_max_mb": round(max(totals)),
                "samples": [(t, {pid: round(mb) for pid, mb in by_pid.items()}) for t, by_pid in self.samples]}


def summarise(samples: list[Sample], elapsed_s: float, faults: dict) -> dict:
    """Latency and error figures of a load phase; failures around the kill are counted apart."""
    kill = faults.get("kill")
    lost, errors, refused = [], [], {}
    for s in samples:
        if s.status in (200, 304):
            continue
        if s.status in (429, 503) and s.reason:  # a limit's deliberate refusal, not an error
            refused[f"{s.status} {s.reason}"] = refused.get(f"{s.status} {s.reason}", 0) + 1
            continue
        # in flight on the killed worker: no answer, or 502/503 from it, between the kill and its replacement
        if kill and s.status in (0, 502, 503) and kill["t_s"] - 0.5 <= s.t <= kill["t_s"] + kill["respawn_s"] + 1:
            lost.append(s)
        else:
            errors.append(s)
    ok = [s.ms for s in samples if s.status in (200, 304)]
    interactive = [s.ms for s in samples if s.action in INTERACTIVE_ACTIONS and s.status in (200, 304)]
    by_action = {}
    for action in sorted({s.action for s in samples}):
        times = [s.ms for s in samples if s.action == action and s.status in (200, 304)]
        by_action[action] = {"n": sum(1 for s in samples if s.action == action), "ok": len(times),
                             "p50_ms": round(percentile(times, 0.5), 1), "p95_ms": round(percentile(times, 0.95), 1)}
    return {
        "requests": len(samples),
        "elapsed_s": round(elapsed_s, 1),
        "throughput_rps": round(len(samples) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "ok_rps": round(len(ok) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "interactive": {"n": len(interactive), "p50_ms": round(percentile(interactive, 0.5), 1),
                        "p95_ms": round(percentile(interactive, 0.95), 1),
                        "p99_ms": round(percentile(interactive, 0.99), 1)},
        "refused": dict(sorted(refused.items())),
        "p50_ms": round(percentile(ok, 0.5), 1),
        "p95_ms": round(percentile(ok, 0.95), 1),
        "p99_ms": round(percentile(ok, 0.99), 1),
        "max_ms": round(max(ok), 1) if ok else math.nan,
        "mean_ms": round(statistics.fmean(ok), 1) if ok else math.nan,
        "errors": len(errors),
        "error_examples": [asdict(s) for s in errors[:5]],
        "lost_with_killed_worker": len(lost),
        "by_action": by_action,
        "faults": faults,
    }


# --------------------------------------------------------------------------------------------- run
@dataclass
class LoadTestConfig:
    """Bounds of one run (every one is a hard limit)."""

    users: int = 20
    duration_s: float = 60.0
    workers: int = 2
    threads: int = 4
    max_requests: int = 20_000
    renders: int = 1000
    store: Path | None = None
    work_dir: Path | None = None
    redis: bool = True
    kill_worker: bool = True
    stop_redis: bool = True
    seed: int = 0
    think_s: float = 1.0
    timeout_s: float = 30.0
    python: str = sys.executable
    compare: bool = False


def run_load_test(config: LoadTestConfig, echo: Callable[[str], None] = print) -> dict:
    """Run the whole test (servers started and stopped here) and return its figures.

    Returns
    -------
    dict
        ``config``, ``memory`` (see :func:`memory_phase`), ``load`` (see :func:`summarise`), ``passed`` (bool),
        ``cache_warnings`` (Redis outage warnings in the server log).
    """
    import requests

    from bench.servers import GunicornServer, RedisServer, demo_store

    work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="atlas-load-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    store = Path(config.store) if config.store else demo_store(work_dir / "demo")
    echo(f"store: {store}")
    scenario = build_scenario(store)
    env = {
        "ATLAS_VIEWER_STORE": str(store),
        "ATLAS_VIEWER_WORKERS": str(config.workers),
        "ATLAS_VIEWER_THREADS": str(config.threads),
        # a new folder each run: pictures cached by an earlier run would flatter the figures
        "ATLAS_VIEWER_CACHE_DIR": tempfile.mkdtemp(prefix="picture-cache-", dir=work_dir),
        "ATLAS_VIEWER_LOG_LEVEL": "WARNING",
        "ATLAS_VIEWER_REDIS_RETRY_S": "5",
        "ATLAS_VIEWER_EXPORT_RATE_PER_MIN": "600",  # users export often here; the limit is tested elsewhere
        "ATLAS_VIEWER_EXPORT_BURST": "50",
        "ATLAS_VIEWER_PICTURE_RATE_PER_MIN": "1000000",
        "ATLAS_VIEWER_PICTURE_BURST": "100000",
        # each simulated user sends its own X-Forwarded-For (trusted from 127.0.0.1, the default TRUSTED_PROXIES)
        "ATLAS_VIEWER_PROXY_COUNT": "1",
    }
    redis_server = RedisServer().start() if config.redis else None
    if redis_server is not None:
        env["ATLAS_VIEWER_REDIS_URL"] = redis_server.url
    access_lines = [0]

    def count_access(_line: str) -> None:
        access_lines[0] += 1

    result: dict = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()
                               if k != "python"}}
    try:
        with GunicornServer(env, python=config.python, access_log=count_access) as server:
            health = requests.get(server.base_url + "/healthz", timeout=config.timeout_s).json()
            echo(f"gunicorn {server.base_url}: workers {server.worker_pids()}, cache {health.get('cache')}, "
                 f"{health.get('datasets')} datasets, {len(scenario.places)} places")
            if config.renders:
                echo(f"memory: {config.renders} distinct renders ...")
                result["memory"] = memory_phase(scenario, server, config.renders, config.seed,
                                                timeout_s=config.timeout_s)
            echo(f"load: {config.users} users for {config.duration_s:g} s (at most {config.max_requests} "
                 f"requests, think time {config.think_s:g} s) ...")
            result["load"] = load_phase(scenario, server, redis_server, config.users, config.duration_s,
                                        config.max_requests, config.seed, config.kill_worker,
                                        config.stop_redis and redis_server is not None, config.timeout_s,
                                        config.think_s)
            final = requests.get(server.base_url + "/healthz", timeout=config.timeout_s)
            health_after = final.json()  # its "status" (ok, degraded, down) kept as "health"
            result["health_after"] = {**health_after, "health": health_after.get("status"),
                                      "status": final.status_code}
            log_text = server.log_tail(2000)
            result["cache_warnings"] = log_text.count("cache backend redis unavailable")
            result["access_log_lines"] = access_lines[0]
    finally:
        if redis_server is not None:
            redis_server.close()
        shutil.rmtree(env["ATLAS_VIEWER_CACHE_DIR"], ignore_errors=True)
    load = result["load"]
    passed = load["errors"] == 0 and result["health_after"]["status"] == 200
    for name, after in load["served_after_fault"].items():
        passed = passed and after["requests"] > 0 and after["ok"] == after["requests"]
    if "kill" in load["faults"]:
        passed = passed and load["faults"]["kill"]["respawned"]
    if "memory" in result:
        passed = passed and result["memory"]["errors"] == 0
    result["passed"] = passed
    return result


def run_comparison(config: LoadTestConfig, echo: Callable[[str], None] = print) -> dict:
    """The load twice on one store, without faults: "before" with the costly-work limits off (:data:`LIMITS_OFF`),
    then "after" with every limit at its default (each user its own client).

    Returns
    -------
    dict
        ``config``, ``before`` and ``after`` (each as :func:`summarise`, with ``rss``), ``passed`` (no error in
        "after").
    """
    from bench.servers import GunicornServer, RedisServer, demo_store

    work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="atlas-load-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    store = Path(config.store) if config.store else demo_store(work_dir / "demo")
    echo(f"store: {store}")
    scenario = build_scenario(store)
    result: dict = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()
                               if k != "python"}}
    for phase, limits in (("before", LIMITS_OFF), ("after", {})):
        env = {
            "ATLAS_VIEWER_STORE": str(store),
            "ATLAS_VIEWER_WORKERS": str(config.workers),
            "ATLAS_VIEWER_THREADS": str(config.threads),
            "ATLAS_VIEWER_CACHE_DIR": tempfile.mkdtemp(prefix="picture-cache-", dir=work_dir),
            "ATLAS_VIEWER_LOG_LEVEL": "WARNING",
            "ATLAS_VIEWER_PROXY_COUNT": "1",
            **limits,
        }
        redis_server = RedisServer().start() if config.redis else None
        if redis_server is not None:
            env["ATLAS_VIEWER_REDIS_URL"] = redis_server.url
        try:
            with GunicornServer(env, python=config.python) as server:
                echo(f"{phase}: {config.users} users for {config.duration_s:g} s, limits "
                     f"{'off' if limits else 'at their defaults'} ...")
                result[phase] = load_phase(scenario, server, None, config.users, config.duration_s,
                                           config.max_requests, config.seed, False, False, config.timeout_s,
                                           config.think_s)
        finally:
            if redis_server is not None:
                redis_server.close()
            shutil.rmtree(env["ATLAS_VIEWER_CACHE_DIR"], ignore_errors=True)
    result["passed"] = result["after"]["errors"] == 0
    return result


def format_phase(name: str, load: dict) -> list[str]:
    """Lines of one load phase: interactive pictures, errors, refusals, throughput, exports, memory."""
    inter = load["interactive"]
    lines = [
        f"{name}: interactive pictures n={inter['n']} p50 {inter['p50_ms']} ms, p95 {inter['p95_ms']} ms, "
        f"p99 {inter['p99_ms']} ms",
        f"  errors {load['errors']} (5xx other than the limits' 429/503, or no answer); refused by the limits: "
        f"{load.get('refused') or 'none'}",
        f"  throughput {load['throughput_rps']} req/s ({load['ok_rps']} answered 200/s), {load['requests']} "
        f"requests in {load['elapsed_s']} s",
    ]
    for action, figures in load["by_action"].items():
        lines.append(f"  {action:18s} n={figures['n']:6d} ok={figures.get('ok', 0):6d}  p50 {figures['p50_ms']:8.1f} "
                     f"ms  p95 {figures['p95_ms']:8.1f} ms")
    rss = load.get("rss")
    if rss:
        per_worker = ", ".join(f"{pid}: {rss['start_mb'].get(pid, '-')} -> {mb} MB (max {rss['max_mb'].get(pid)})"
                               for pid, mb in rss["end_mb"].items())
        lines.append(f"  worker RSS: all workers {rss['total_start_mb']} -> {rss['total_end_mb']} MB (max "
                     f"{rss['total_max_mb']} MB); {per_worker}")
    for example in load["error_examples"]:
        lines.append(f"  error: {example}")
    return lines


def format_comparison(result: dict) -> str:
    """A plain-text report of :func:`run_comparison`."""
    config = result["config"]
    lines = [f"config: {config['users']} users, think {config['think_s']} s, {config['workers']} workers x "
             f"{config['threads']} threads, {config['duration_s']} s each phase"]
    lines += format_phase("before (export slots, rates and picture budget off)", result["before"])
    lines += format_phase("after (defaults)", result["after"])
    lines.append("PASSED" if result["passed"] else "FAILED")
    return "\n".join(lines)


def format_report(result: dict) -> str:
    """A short plain-text report of :func:`run_load_test`'s figures."""
    load, config = result["load"], result["config"]
    lines = [
        f"config: {config['users']} users, think {config['think_s']} s, {config['workers']} workers x "
        f"{config['threads']} threads, {config['duration_s']} s",
        f"load: {load['requests']} requests in {load['elapsed_s']} s ({load['throughput_rps']} req/s), "
        f"p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms",
        f"interactive pictures: p50 {load['interactive']['p50_ms']} ms, p95 {load['interactive']['p95_ms']} ms; "
        f"refused by the limits: {load.get('refused') or 'none'}",
        f"errors: {load['errors']}; lost with the killed worker: {load['lost_with_killed_worker']}",
    ]
    for action, figures in load["by_action"].items():
        lines.append(f"  {action:8s} n={figures['n']:6d}  p50 {figures['p50_ms']:8.1f} ms  "
                     f"p95 {figures['p95_ms']:8.1f} ms")
    kill = load["faults"].get("kill")
    if kill:
        lines.append(f"worker {kill['pid']} killed at {kill['t_s']} s: respawned={kill['respawned']} in "
                     f"{kill['respawn_s']} s; served after: {load['served_after_fault'].get('kill')}")
    if "redis_stop" in load["faults"]:
        lines.append(f"redis stopped at {load['faults']['redis_stop']['t_s']} s; served after: "
                     f"{load['served_after_fault'].get('redis_stop')}; outage warnings logged: "
                     f"{result.get('cache_warnings')}")
    memory = result.get("memory")
    if memory:
        first, last = memory["samples"][0], memory["samples"][-1]
        per_worker = ", ".join(
            f"{pid}: RSS {first['rss_mb'].get(pid, math.nan):.0f} -> {mb:.0f} MB (private "
            f"{first['uss_mb'].get(pid, math.nan):.0f} -> {last['uss_mb'].get(pid, math.nan):.0f} MB)"
            for pid, mb in last["rss_mb"].items())
        lines.append(f"memory over {memory['renders']} renders (p50 {memory['p50_ms']} ms, p95 {memory['p95_ms']} "
                     f"ms, errors {memory['errors']}): {per_worker}")
        lines.append(f"  growth after the first tenth: RSS {memory['growth_mb']} MB, private "
                     f"{memory['growth_uss_mb']} MB")
    for example in load["error_examples"]:
        lines.append(f"  error: {example}")
    lines.append("PASSED" if result["passed"] else "FAILED")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="concurrent simulated users (default 20)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="stop the load after this many")
    parser.add_argument("--renders", type=int, default=1000, help="distinct renders of the memory phase")
    parser.add_argument("--store", type=Path, default=None, help="prepared store (default: build the demo)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the demo store and cache go")
    parser.add_argument("--no-redis", action="store_true", help="filesystem cache instead of Redis")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds a user looks before the next action (default 1; 0: back to back)")
    parser.add_argument("--compare", action="store_true",
                        help="run the load twice without faults: limits off ('before'), then at their defaults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("users", "workers", "threads", "max_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600] seconds")
    if not 0 <= args.think <= 60:
        parser.error("--think must be in [0, 60] seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = LoadTestConfig(
        users=args.users, duration_s=args.duration, workers=args.workers, threads=args.threads,
        max_requests=args.max_requests, renders=args.renders, store=args.store, work_dir=args.work_dir,
        redis=not args.no_redis, kill_worker=not args.no_kill, stop_redis=not args.no_redis, seed=args.seed,
        think_s=args.think, compare=args.compare,
    )
    if config.compare:
        result = run_comparison(config)
        print(format_comparison(result))
    else:
        result = run_load_test(config)
        print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
