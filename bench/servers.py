"""Real servers on loopback for the load test and the tests: ``redis-server`` and the viewer under gunicorn.

Both are started as child processes bound to 127.0.0.1 on a free port, waited for by reading their own log lines
(never by sleeping), and stopped (SIGTERM, then SIGKILL after a grace period) when the ``with`` block ends.
"""
from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


class ServerError(RuntimeError):
    """A server did not start or stop in time; the message holds its last log lines."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _LineWatcher:
    """Reads a child's output stream on a thread, keeps the last lines and wakes waiters when a line matches."""

    def __init__(self, stream: IO[str], name: str, keep: int = 400, on_line: Callable[[str], None] | None = None):
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._all_count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, args=(stream,), name=f"watch-{name}", daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if self._on_line is not None:
                self._on_line(line)
            with self._cond:
                self.lines.append(line)
                self._all_count += 1
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout_s: float) -> bool:
        """Block until ``predicate(lines kept so far)`` is true, the stream closes, or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(list(self.lines)):
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return predicate(list(self.lines))
                self._cond.wait(remaining)
            return True

    def tail(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(list(self.lines)[-n:])


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


class RedisServer:
    """A throw-away ``redis-server`` on 127.0.0.1 without persistence (``--save "" --appendonly no``).

    Parameters
    ----------
    port : int, optional
        default: a free port. Restarting keeps the port, so clients can reconnect.
    binary : str
        path of ``redis-server``.
    """

    def __init__(self, port: int | None = None, binary: str = REDIS_BINARY):
        self.port = port or free_port()
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="atlas-redis-")
        self._watcher: _LineWatcher | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 15.0) -> "RedisServer":
        """Start the server and return when it logs that it accepts connections."""
        if not Path(self.binary).exists():
            raise ServerError(f"{self.binary} not found: install the Debian package redis-server")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir, "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self._dir,
        )
        self._watcher = _LineWatcher(self.proc.stdout, "redis")  # type: ignore[arg-type]
        ready = self._watcher.wait_for(lambda lines: any("Ready to accept connections" in ln for ln in lines),
                                       timeout_s)
        if not ready:
            tail = self._watcher.tail()
            self.stop()
            raise ServerError(f"redis-server on port {self.port} did not start:\n{tail}")
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM; SIGKILL after 10 s)."""
        if self.proc is not None:
            _stop(self.proc)

    def close(self) -> None:
        """Stop the server and remove its working folder."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start() if not self.running else self

    def __exit__(self, *exc) -> None:
        self.close()


_BOOT_RE = re.compile(r"Booting worker with pid: (\d+)")


class GunicornServer:
    """The viewer under a real gunicorn (``app:server -c gunicorn.conf.py``) on 127.0.0.1.

    Parameters
    ----------
    env : mapping
        ``ATLAS_VIEWER_*`` variables for the app (store, workers, threads, cache...); host and port are set here.
    python : str
        the interpreter whose gunicorn runs the app.
    access_log : callable, optional
        called with every JSON request-log line the app writes (on gunicorn's stdout).
    """

    def __init__(self, env: Mapping[str, str], python: str = sys.executable,
                 access_log: Callable[[str], None] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.python = python
        self.env = {**os.environ, **env, "ATLAS_VIEWER_HOST": "127.0.0.1", "ATLAS_VIEWER_PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1"}
        self.workers = int(self.env.get("ATLAS_VIEWER_WORKERS", "2"))
        self.proc: subprocess.Popen | None = None
        self._errors: _LineWatcher | None = None
        self._access: _LineWatcher | None = None
        self._access_cb = access_log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def booted_pids(self) -> list[int]:
        """Pids of every worker gunicorn has booted so far (including killed ones), in boot order."""
        if self._errors is None:
            return []
        return [int(m.group(1)) for ln in list(self._errors.lines) for m in [_BOOT_RE.search(ln)] if m]

    def start(self, timeout_s: float = 120.0) -> "GunicornServer":
        """Start gunicorn and return once every worker has booted."""
        self.proc = subprocess.Popen(
            [self.python, "-m", "gunicorn", "app:server", "-c", "gunicorn.conf.py"],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._errors = _LineWatcher(self.proc.stderr, "gunicorn", keep=2000)  # type: ignore[arg-type]
        self._access = _LineWatcher(self.proc.stdout, "access", keep=50, on_line=self._access_cb)  # type: ignore
        if not self.wait_for_workers(self.workers, timeout_s):
            tail = self._errors.tail(40)
            self.stop()
            raise ServerError(f"gunicorn did not boot {self.workers} workers in {timeout_s:.0f} s:\n{tail}")
        return self

    def wait_for_workers(self, count: int, timeout_s: float) -> bool:
        """Block until gunicorn has booted ``count`` workers in total (respawns count too)."""
        assert self._errors is not None
        return self._errors.wait_for(lambda lines: sum(bool(_BOOT_RE.search(ln)) for ln in lines) >= count,
                                     timeout_s)

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (children of the master)."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker (gunicorn's master notices and boots a new one)."""
        if pid not in self.worker_pids():
            raise ServerError(f"{pid} is not a worker of this gunicorn")
        os.kill(pid, signal.SIGKILL)

    def log_tail(self, n: int = 30) -> str:
        return self._errors.tail(n) if self._errors else ""

    def stop(self) -> None:
        """Stop gunicorn gracefully (SIGTERM; SIGKILL after 10 s)."""
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> "GunicornServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def demo_store(work_dir: Path, seed: int = 0) -> Path:
    """Build (once) the demo cache and its prepared store under ``work_dir``; return the store folder."""
    from data_layer.demo import write_demo_cache
    from data_layer.prepare import prepare_store

    work_dir = Path(work_dir)
    cache, store = work_dir / "cache", work_dir / "store"
    if not store.exists():
        if not (cache / "releases").exists():
            write_demo_cache(cache, seed=seed, scale="demo")
        prepare_store(cache, store)
    return store


def _memory_mb(pids: Iterable[int], private: bool) -> dict[int, float]:
    import psutil

    out = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            out[pid] = (process.memory_full_info().uss if private else process.memory_info().rss) / 1e6
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def rss_mb(pids: Iterable[int]) -> dict[int, float]:
    """Resident memory (MB) of each live pid (pages shared with the master after fork count in each)."""
    return _memory_mb(pids, private=False)


def uss_mb(pids: Iterable[int]) -> dict[int, float]:
    """Memory (MB) private to each live pid (freed if it exited): what a worker adds beyond shared pages."""
    return _memory_mb(pids, private=True)
