"""A small S3-like bucket served over real HTTP on 127.0.0.1, for the download tests.

``BucketServer(root)`` serves the files under ``root`` at ``/<key>`` with HTTP Range support, answers the S3
``ListObjectsV2`` call (``GET /?list-type=2&prefix=...``, paginated by ``page_size``) and records every request.
Faults can be queued per key (served once each, in order) or set for good:

* ``"drop"``: send the headers and half the body, then close the connection;
* ``"corrupt"``: send the right number of bytes, but wrong ones;
* ``"ignore_range"``: answer a Range request with the whole file (HTTP 200);
* ``"404"``, ``"500"``: answer with that status.

``build_bucket`` writes files and a release manifest in the real ABC schema (true MD5s and sizes).
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class BucketServer:
    """Serve ``root`` as a bucket on a free loopback port; use as a context manager (always shuts down)."""

    def __init__(self, root: str | Path, page_size: int = 1000):
        self.root = Path(root)
        self.page_size = page_size
        self.requests: list[dict] = []
        self.queued_faults: dict[str, list[str]] = {}
        self.faults: dict[str, str] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def __enter__(self) -> "BucketServer":
        server = self

        class Handler(_Handler):
            bucket = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bucket-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    # -- faults and records
    def queue_fault(self, key: str, *faults: str) -> None:
        with self._lock:
            self.queued_faults.setdefault(key, []).extend(faults)

    def _take_fault(self, key: str) -> str | None:
        with self._lock:
            queue = self.queued_faults.get(key)
            if queue:
                return queue.pop(0)
            return self.faults.get(key)

    def _log(self, **entry) -> None:
        with self._lock:
            self.requests.append(entry)

    def requests_for(self, key: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["key"] == key]

    def file_requests(self) -> list[dict]:
        """Requests for data files (not the listing, not manifests)."""
        with self._lock:
            return [r for r in self.requests if r["key"] and not r["key"].startswith("releases/")]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bucket: BucketServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _plain(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        key = unquote(parts.path.lstrip("/"))
        query = parse_qs(parts.query)
        rng = self.headers.get("Range")
        if not key and query.get("list-type") == ["2"]:
            self.bucket._log(key="", range=None, status=200, fault=None, query=parts.query)
            return self._listing(query)
        fault = self.bucket._take_fault(key)
        path = (self.bucket.root / key).resolve()
        if fault in ("404", "500") or self.bucket.root.resolve() not in path.parents or not path.is_file():
            status = int(fault) if fault in ("404", "500") else 404
            self.bucket._log(key=key, range=rng, status=status, fault=fault)
            return self._plain(status, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        data = path.read_bytes()
        size = len(data)
        start, end, status = 0, size - 1, 200
        m = _RANGE_RE.match(rng or "")
        if m and fault != "ignore_range":
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size:
                self.bucket._log(key=key, range=rng, status=416, fault=fault)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        if fault == "corrupt":
            body = bytes(b ^ 0x5A for b in body)
        self.bucket._log(key=key, range=rng, status=status, fault=fault)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)

    def _listing(self, query: dict) -> None:
        prefix = query.get("prefix", [""])[0]
        keys = sorted(p.relative_to(self.bucket.root).as_posix() for p in self.bucket.root.rglob("*") if p.is_file())
        keys = [k for k in keys if k.startswith(prefix)]
        first = int(query.get("continuation-token", ["0"])[0])
        page = keys[first: first + self.bucket.page_size]
        truncated = first + len(page) < len(keys)
        items = "".join(f"<Contents><Key>{escape(k)}</Key><Size>{(self.bucket.root / k).stat().st_size}</Size>"
                        f"</Contents>" for k in page)
        more = f"<NextContinuationToken>{first + len(page)}</NextContinuationToken>" if truncated else ""
        body = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{S3_NS}"><Name>test-bucket</Name>'
                f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>"
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{more}{items}</ListBucketResult>")
        self._plain(200, body.encode(), "application/xml")


# ----------------------------------------------------------------------------------------- building a bucket

def _entry(rel: str, data: bytes, url_prefix: str) -> tuple[str, str, str, str | None, str, dict]:
    """(dataset, kind, tag, variant, fmt, info) of one file from its ABC relative path."""
    kind, dataset, version, *rest = rel.split("/")
    name = rest[-1]
    fmt = "nii.gz" if name.endswith(".nii.gz") else name.rsplit(".", 1)[-1]
    tag = name[: -len(fmt) - 1]
    variant = None
    if kind == "expression_matrices":
        tag, variant = tag.rsplit("-", 1)
    info = {"version": version, "relative_path": rel, "url": url_prefix + rel, "size": len(data),
            "file_hash": hashlib.md5(data).hexdigest()}
    return dataset, kind, tag, variant, fmt, info


def manifest_for(files: dict[str, bytes], version: str, url_prefix: str) -> dict:
    """A release manifest in the real ABC schema for ``files`` (relative path -> bytes)."""
    file_listing: dict = {}
    directories: dict = {}
    for rel, data in files.items():
        dataset, kind, tag, variant, fmt, info = _entry(rel, data, url_prefix)
        by_tag = file_listing.setdefault(dataset, {}).setdefault(kind, {})
        if variant:
            by_tag.setdefault(tag, {})[variant] = {"files": {fmt: info}}
        else:
            by_tag[tag] = {"files": {fmt: info}}
        d_rel = "/".join(rel.split("/")[:3])
        d = directories.setdefault(dataset, {"directories": {}})["directories"].setdefault(
            kind, {"version": info["version"], "relative_path": d_rel, "url": url_prefix + d_rel + "/",
                   "view_link": url_prefix + "index.html#" + d_rel + "/", "total_size": 0})
        d["total_size"] += len(data)
    return {"version": version, "resource_uri": "s3://allen-brain-cell-atlas/",
            "directory_listing": directories, "file_listing": file_listing}


def build_bucket(root: str | Path, files: dict[str, bytes], version: str, url_prefix: str) -> dict:
    """Write ``files`` under ``root`` and ``root/releases/<version>/manifest.json``; return the manifest."""
    root = Path(root)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    manifest = manifest_for(files, version, url_prefix)
    m = root / "releases" / version / "manifest.json"
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(json.dumps(manifest, indent=1))
    return manifest


def bucket_from_cache(cache_dir: str | Path, root: str | Path, url_prefix: str) -> str:
    """Serve an ABC cache (e.g. the demo) as a bucket: copy its files and its own manifest to ``root``, with every
    file URL rewritten to ``url_prefix + relative_path``. Returns the release version."""
    from data_layer.manifest import LocalCache

    cache = LocalCache(cache_dir)
    root = Path(root)
    for f in cache.manifest.files():
        dest = root / f.relative_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.local_path(cache.root).read_bytes())

    def rewrite(node):
        if isinstance(node, dict):
            if "relative_path" in node and "url" in node:
                node["url"] = url_prefix + node["relative_path"] + ("/" if node["url"].endswith("/") else "")
            for child in node.values():
                rewrite(child)

    data = json.loads(json.dumps(cache.manifest.data))
    rewrite(data)
    m = root / "releases" / cache.version / "manifest.json"
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(json.dumps(data, indent=1))
    return cache.version
