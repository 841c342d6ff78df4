"""Download ABC Atlas release files into a local cache: manifest driven, resumable, MD5-verified.

The cache this writes is the one the official ``abc_atlas_access`` package writes (ABC_LAYOUT.md, section 1):
``releases/<version>/manifest.json``, every file at ``<cache>/<relative_path>``, ``_manifest_last_used.txt``
holding ``releases/<version>/manifest.json`` and ``_downloaded_data.json`` holding the JSON list of the absolute
(resolved) paths of the files downloaded and verified. Both tools can therefore share one cache.

How a file is fetched: bytes stream into ``<file>.part``; an interrupted transfer is resumed with an HTTP
``Range`` request (on the next attempt or the next run); the MD5 of the whole file is checked against the
manifest's ``file_hash`` and only then is ``.part`` renamed to the final name. A ``.part`` whose bytes proved
wrong (MD5 mismatch, too long) is deleted, because resuming it would keep the bad bytes; a ``.part`` left by a
network failure is kept so the next run resumes it. Transient failures (connection errors, time-outs, HTTP 5xx and
429, early end of the body) are retried with exponential back-off; HTTP 4xx errors are not.

The newest release ("latest") is found as the official package finds it: by listing the bucket's keys under
``releases/`` (the S3 ``ListObjectsV2`` API, over plain https) and taking the greatest
``releases/<version>/manifest.json``. When the bucket cannot be reached, the newest manifest already in the cache
is used, with a warning.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterable, Sequence

import requests
from tqdm.auto import tqdm

from data_layer.manifest import BUCKET_URL, KINDS, Manifest, ManifestError, ManifestFile, list_releases

log = logging.getLogger(__name__)

DEFAULT_KINDS = ("metadata", "image_volumes")
DOWNLOADED_DATA = "_downloaded_data.json"
MANIFEST_LAST_USED = "_manifest_last_used.txt"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
_RELEASE_KEY_RE = re.compile(r"^releases/([^/]+)/manifest\.json$")
_SAFE_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(Exception):
    """A download cannot start or did not finish, with a message naming the file, URL or release."""


class _Transient(Exception):
    """A failure worth retrying (network, server 5xx, body ended early)."""


class _BadBytes(Exception):
    """The bytes received are wrong (MD5 mismatch, longer than the manifest says): refetch from scratch."""


@dataclass
class DownloadSummary:
    """What one ``run_download`` did.

    ``failed`` holds ``(relative_path, reason)`` pairs. Byte counts are bytes received over the network
    (``bytes_fetched``) and bytes of the files found already present and verified (``bytes_skipped``).
    """

    release: str
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_fetched: int = 0
    bytes_skipped: int = 0

    def text(self) -> str:
        """One line for the terminal."""
        return (f"release {self.release}: fetched {len(self.fetched)} file(s) ({format_size(self.bytes_fetched)}), "
                f"skipped {len(self.skipped)} already present and verified ({format_size(self.bytes_skipped)}), "
                f"failed {len(self.failed)}")


# ----------------------------------------------------------------------------------------------- small helpers

def format_size(n_bytes: int | float) -> str:
    """Human-readable decimal size, as the ABC release notes give them: ``996 MB``, ``1.3 GB``."""
    n = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def safe_local_path(cache_dir: str | Path, relative_path: str) -> Path:
    """Local path ``<cache>/<relative_path>``, refusing any path that would leave the cache.

    Raises
    ------
    DownloadError
        ``relative_path`` is empty, absolute (POSIX or Windows), contains ``..`` or a backslash, or resolves
        (through a symbolic link) outside the cache.
    """
    rel = relative_path or ""
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if (not rel.strip() or posix.is_absolute() or windows.is_absolute() or windows.drive or "\\" in rel
            or ".." in posix.parts or rel.startswith("~")):
        raise DownloadError(f"manifest path {relative_path!r} is not a plain relative path inside the cache; refused")
    root = Path(cache_dir).resolve()
    target = (root / posix).resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"manifest path {relative_path!r} resolves to {target}, outside the cache {root}; refused")
    return root / posix


def _check_version(version: str) -> str:
    if not _SAFE_VERSION_RE.match(version or "") or ".." in version:
        raise DownloadError(f"release {version!r} is not a release version (e.g. 20250531)")
    return version


def _base(base_url: str | None) -> str:
    url = base_url or BUCKET_URL
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"base URL {url!r} is not an http(s) address")
    return url if url.endswith("/") else url + "/"


def file_url(f: ManifestFile, base_url: str | None) -> str:
    """URL to fetch ``f`` from: the manifest's URL, with its bucket prefix replaced by ``base_url`` if given.

    The bucket prefix is the part of the manifest URL before ``relative_path`` (so a mirror or a test server
    serves the same keys). A file with no URL, or a URL that does not end in its relative path, is fetched at
    ``<base>/<relative_path>``.
    """
    url = f.url
    if base_url is not None or not url:
        if url and not url.endswith(f.relative_path):
            log.debug("%s: manifest URL %s does not end in the relative path", f.relative_path, url)
        return _base(base_url) + f.relative_path
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"manifest URL {url!r} of {f.relative_path} is not an http(s) address")
    return url


def file_md5(path: str | Path, chunk_bytes: int = 8 * CHUNK_BYTES) -> str:
    """MD5 hex digest of a whole file (the manifest's ``file_hash``)."""
    hasher = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            hasher.update(chunk)
    return hasher.hexdigest()


def _describe(exc: BaseException) -> str:
    """A short reason for a requests error, without urllib3's object reprs."""
    text = str(exc)
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>: ", "", text)
    m = re.search(r"\(Caused by \w+\('?(.*?)'?\)\)", text)
    return f"{type(exc).__name__}: {m.group(1) if m else text}"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------- the official tool's bookkeeping files

def read_downloaded(cache_dir: str | Path) -> set[str]:
    """Absolute paths recorded in ``_downloaded_data.json`` (empty when absent or unreadable)."""
    path = Path(cache_dir) / DOWNLOADED_DATA
    if not path.is_file():
        return set()
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("%s is not valid JSON (%s); treating it as empty", path, exc)
        return set()
    if not isinstance(data, list):
        log.warning("%s does not hold a JSON list; treating it as empty", path)
        return set()
    return {str(p) for p in data}


def _write_downloaded(cache_dir: Path, paths: set[str]) -> None:
    # Same content as abc_atlas_access's CloudCacheBase._update_list_of_downloads: a JSON list of
    # str(local_path.resolve()), indent 2 (sorted here, so the file is stable).
    _atomic_write_text(cache_dir / DOWNLOADED_DATA, json.dumps(sorted(paths), indent=2, sort_keys=True))


def _record(cache_dir: Path, local_path: Path, present: bool) -> None:
    paths = read_downloaded(cache_dir)
    key = str(local_path.resolve())
    if present and key not in paths:
        paths.add(key)
    elif not present and key in paths:
        paths.discard(key)
    else:
        return
    _write_downloaded(cache_dir, paths)


def write_manifest_last_used(cache_dir: str | Path, version: str) -> None:
    """Write ``_manifest_last_used.txt`` as the official package does (``releases/<v>/manifest.json``, no newline)."""
    _atomic_write_text(Path(cache_dir) / MANIFEST_LAST_USED, f"releases/{version}/manifest.json")


# ------------------------------------------------------------------------------------------------ the manifest

def remote_releases(base_url: str | None = None, session: requests.Session | None = None,
                    timeout_s: float | tuple[float, float] = (10, 60)) -> list[str]:
    """Release versions with a manifest in the bucket, oldest first.

    Lists the keys under ``releases/`` with the S3 ``ListObjectsV2`` call over https (as the official package
    does through boto3), following continuation tokens.

    Raises
    ------
    requests.RequestException
        The bucket cannot be reached or answers with an HTTP error.
    ValueError
        The answer is not an S3 listing.
    """
    session = session or _session()
    base = _base(base_url)
    versions: set[str] = set()
    params = {"list-type": "2", "prefix": "releases/"}
    while True:
        resp = session.get(base, params=params, timeout=timeout_s)
        resp.raise_for_status()
        try:
            root = ET.fromstring(resp.content)
        except ET.ParseError as exc:
            raise ValueError(f"{resp.url} did not answer with an S3 listing ({exc})") from None
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        if root.tag != f"{ns}ListBucketResult":
            raise ValueError(f"{resp.url} did not answer with an S3 listing (root element {root.tag!r})")
        for key in root.iter(f"{ns}Key"):
            m = _RELEASE_KEY_RE.match(key.text or "")
            if m and _SAFE_VERSION_RE.match(m.group(1)):
                versions.add(m.group(1))
        token = root.findtext(f"{ns}NextContinuationToken")
        if (root.findtext(f"{ns}IsTruncated") or "").lower() != "true" or not token:
            break
        params = {"list-type": "2", "prefix": "releases/", "continuation-token": token}
    return sorted(versions)


def fetch_manifest(cache_dir: str | Path, version: str, base_url: str | None = None,
                   session: requests.Session | None = None,
                   timeout_s: float | tuple[float, float] = (10, 60)) -> Path:
    """Download ``releases/<version>/manifest.json`` into the cache (atomically) and return its path.

    Raises
    ------
    DownloadError
        HTTP error (404: no such release), unreadable JSON, or a manifest declaring another version.
    requests.RequestException
        The bucket cannot be reached.
    """
    _check_version(version)
    session = session or _session()
    url = _base(base_url) + f"releases/{version}/manifest.json"
    resp = session.get(url, timeout=timeout_s)
    if resp.status_code == 404:
        raise DownloadError(f"release {version} not found: {url} answered HTTP 404")
    if resp.status_code >= 400:
        raise DownloadError(f"manifest of release {version}: {url} answered HTTP {resp.status_code} {resp.reason}")
    try:
        manifest = Manifest(json.loads(resp.content), source=url)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{url} is not a JSON manifest ({exc})") from None
    except ManifestError as exc:
        raise DownloadError(str(exc)) from None
    if manifest.version != version:
        raise DownloadError(f"{url} declares version {manifest.version}, not {version}")
    dest = Path(cache_dir) / "releases" / version / "manifest.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + PART_SUFFIX)
    tmp.write_bytes(resp.content)
    os.replace(tmp, dest)
    log.info("fetched manifest of release %s from %s", version, url)
    return dest


def resolve_manifest(cache_dir: str | Path, release: str | None = "latest", base_url: str | None = None,
                     session: requests.Session | None = None,
                     timeout_s: float | tuple[float, float] = (10, 60)) -> Manifest:
    """The manifest of ``release`` (``latest``/``None``: the newest in the bucket), from the cache or the bucket.

    A named release already in the cache is read without touching the network. For ``latest`` the bucket is
    listed; if that fails, the newest manifest in the cache is used and a warning logged.

    Raises
    ------
    DownloadError
        No manifest can be had (release unknown, network down and none cached, manifest unreadable).
    """
    cache_dir = Path(cache_dir)
    session = session or _session()
    cached = list_releases(cache_dir)
    if release in (None, "latest"):
        try:
            remote = remote_releases(base_url, session, timeout_s)
            if not remote:
                raise ValueError("no releases/<version>/manifest.json key in the listing")
            version = remote[-1]
            log.info("newest release in the bucket: %s", version)
        except (requests.RequestException, ValueError) as exc:
            if not cached:
                raise DownloadError(
                    f"cannot list the releases at {_base(base_url)} ({_describe(exc)}) and "
                    f"{cache_dir} holds no release "
                    f"manifest; check the network or --base-url, or name a release with --release") from None
            version = cached[-1]
            log.warning("cannot list the releases at %s (%s); using the newest manifest in the cache: release %s",
                        _base(base_url), _describe(exc), version)
    else:
        version = _check_version(str(release))
    path = cache_dir / "releases" / version / "manifest.json"
    if version not in cached:
        try:
            path = fetch_manifest(cache_dir, version, base_url, session, timeout_s)
        except requests.RequestException as exc:
            have = f"; the cache has: {', '.join(cached)}" if cached else ""
            raise DownloadError(f"cannot fetch the manifest of release {version} from {_base(base_url)} "
                                f"({_describe(exc)}){have}") from None
    try:
        manifest = Manifest.from_file(path)
    except ManifestError as exc:
        raise DownloadError(str(exc)) from None
    if manifest.version != version:
        raise DownloadError(f"{path} declares version {manifest.version}, but lies in releases/{version}")
    return manifest


# ---------------------------------------------------------------------------------------------- choosing files

def select_files(manifest: Manifest, datasets: Sequence[str] | None = None,
                 kinds: Sequence[str] | None = None) -> list[ManifestFile]:
    """Files of the release for ``datasets`` (default: all) x ``kinds`` (default: metadata and image volumes).

    Raises
    ------
    DownloadError
        A dataset or kind the release does not have (the message names close matches).
    """
    known = manifest.datasets()
    for name in datasets or ():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; it has: {', '.join(known)}"
            raise DownloadError(f"release {manifest.version} has no dataset {name!r}{hint}")
    for kind in kinds or ():
        if kind not in KINDS:
            raise DownloadError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    wanted_kinds = tuple(kinds) if kinds else DEFAULT_KINDS
    wanted_sets = set(datasets) if datasets else set(known)
    return [f for f in manifest.files() if f.dataset in wanted_sets and f.kind in wanted_kinds]


def _raw_entries(manifest: Manifest) -> Iterable[tuple[str, str, int]]:
    """(dataset, kind, size) of every file entry of the raw manifest, kinds this tool does not fetch included."""

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("files"), dict):
                for info in node["files"].values():
                    yield int(info.get("size", 0))
            else:
                for child in node.values():
                    yield from walk(child)

    for dataset, kinds in manifest.data["file_listing"].items():
        for kind, node in kinds.items():
            for size in walk(node):
                yield dataset, kind, size


def list_release(manifest: Manifest, datasets: Sequence[str] | None = None,
                 kinds: Sequence[str] | None = None) -> list[str]:
    """Lines of a table: per dataset and kind, the file count and total size (human-readable).

    Every kind in the manifest is listed (``mapmycells`` too, which this tool does not fetch) unless ``kinds``
    narrows it; ``datasets`` defaults to all datasets.
    """
    select_files(manifest, datasets, kinds)  # validates the names
    rows: dict[tuple[str, str], list[int]] = {}
    for dataset, kind, size in _raw_entries(manifest):
        if (datasets and dataset not in datasets) or (kinds and kind not in kinds):
            continue
        row = rows.setdefault((dataset, kind), [0, 0])
        row[0] += 1
        row[1] += size
    width = max([len("dataset")] + [len(d) for d, _ in rows])
    kind_width = max([len("expression_matrices")] + [len(k) for _, k in rows])
    n_files = sum(n for n, _ in rows.values())
    lines = [f"release {manifest.version}: {len({d for d, _ in rows})} dataset(s), {n_files} file(s), "
             f"{format_size(sum(b for _, b in rows.values()))}",
             f"{'dataset':<{width}}  {'kind':<{kind_width}}  {'files':>5}  {'size':>9}"]
    order = {k: i for i, k in enumerate(KINDS)}
    previous = None
    for dataset, kind in sorted(rows, key=lambda dk: (manifest.datasets().index(dk[0]), order.get(dk[1], 99), dk[1])):
        n, size = rows[(dataset, kind)]
        shown = dataset if dataset != previous else ""
        lines.append(f"{shown:<{width}}  {kind:<{kind_width}}  {n:>5}  {format_size(size):>9}")
        previous = dataset
    others = sorted({k for _, k in rows} - set(KINDS))
    if others:
        lines.append(f"(kinds {', '.join(others)} are listed only: this tool fetches {', '.join(KINDS)})")
    return lines


# --------------------------------------------------------------------------------------------- one file's fetch

def _session() -> requests.Session:
    s = requests.Session()
    # identity: a compressed answer would break byte offsets for Range resumes and the MD5.
    s.headers.update({"Accept-Encoding": "identity", "User-Agent": "abc-atlas-viewer-download"})
    return s


@dataclass
class _Fetch:
    """State of one file's transfer: where the bytes go and the MD5 of the bytes already in ``.part``."""

    f: ManifestFile
    url: str
    final: Path
    part: Path
    hasher: "hashlib._Hash | None" = None
    hashed_bytes: int = 0
    received: int = 0  # bytes that arrived in the current attempt, even if it failed

    def part_size(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def reset(self) -> None:
        self.part.unlink(missing_ok=True)
        self.hasher, self.hashed_bytes = None, 0

    def sync_hasher(self) -> int:
        """Make the hasher cover exactly the bytes in ``.part``; return that size."""
        size = self.part_size()
        if self.hasher is None or self.hashed_bytes != size:
            self.hasher = hashlib.md5()
            if size:
                with open(self.part, "rb") as fh:
                    while chunk := fh.read(8 * CHUNK_BYTES):
                        self.hasher.update(chunk)
            self.hashed_bytes = size
        return size


def _attempt(fetch: _Fetch, session: requests.Session, timeout_s, bar) -> int:
    """One HTTP request for the rest of the file; returns bytes received. Raises _Transient, _BadBytes or
    DownloadError (permanent)."""
    f = fetch.f
    offset = fetch.sync_hasher()
    if f.size and offset > f.size:
        raise _BadBytes(f"{fetch.part.name} holds {offset} bytes, more than the manifest's {f.size}")
    if f.size and offset == f.size:
        return 0  # complete already (e.g. a crash between download and rename): only verify
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    received = 0
    try:
        with session.get(fetch.url, headers=headers, stream=True, timeout=timeout_s) as resp:
            status = resp.status_code
            if status == 416 and offset:
                raise _BadBytes(f"server refused the resume range bytes={offset}- (HTTP 416)")
            if status >= 500 or status == 429:
                raise _Transient(f"HTTP {status} {resp.reason}")
            if status >= 400:
                raise DownloadError(f"{f.relative_path}: {fetch.url} answered HTTP {status} {resp.reason}")
            if status == 206:
                m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    raise _BadBytes(f"server answered the range bytes={offset}- with "
                                    f"Content-Range {resp.headers.get('Content-Range')!r}")
                mode = "ab"
            elif status == 200:
                if offset:
                    log.info("%s: server ignored the Range request; fetching the whole file again", f.relative_path)
                    if bar is not None:
                        bar.total += offset
                        bar.refresh()
                fetch.hasher, fetch.hashed_bytes, offset, mode = hashlib.md5(), 0, 0, "wb"
            else:
                raise _Transient(f"unexpected HTTP {status} {resp.reason}")
            with open(fetch.part, mode) as out:
                for chunk in resp.iter_content(chunk_size=CHUNK_BYTES):
                    if not chunk:
                        continue
                    if f.size and offset + received + len(chunk) > f.size:
                        raise _BadBytes(f"server sent more than the manifest's {f.size} bytes")
                    out.write(chunk)
                    fetch.hasher.update(chunk)
                    fetch.hashed_bytes += len(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
    except requests.RequestException as exc:
        # Connection reset, time-out, body cut short: the .part keeps what arrived and the next attempt resumes.
        raise _Transient(_describe(exc)) from None
    finally:
        fetch.received = received
    total = offset + received
    if f.size and total < f.size:
        raise _Transient(f"connection closed after {total} of {f.size} bytes")
    return received


def download_file(f: ManifestFile, cache_dir: str | Path, url: str, session: requests.Session | None = None,
                  retries: int = 5, backoff_base_s: float = 1.0, max_backoff_s: float = 60.0,
                  timeout_s: float | tuple[float, float] = (10, 60), bar=None,
                  sleep: Callable[[float], None] = time.sleep) -> int:
    """Fetch one manifest file into ``<cache>/<relative_path>``: resume, verify MD5, rename, record.

    Retries: up to ``retries`` consecutive transient failures without progress (an attempt that received bytes
    resets the count) and up to ``retries`` MD5 mismatches, sleeping ``backoff_base_s * 2**(n-1)`` seconds
    (at most ``max_backoff_s``) before retry ``n``.

    Returns
    -------
    int
        Bytes received over the network.

    Raises
    ------
    DownloadError
        HTTP 4xx, a persistent MD5 mismatch (no bad file is left: neither the final name nor ``.part``) or
        persistent network failures (the ``.part`` is kept so a later run resumes it).
    """
    cache_dir = Path(cache_dir)
    final = safe_local_path(cache_dir, f.relative_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fetch = _Fetch(f, url, final, final.with_name(final.name + PART_SUFFIX))
    session = session or _session()
    transient = bad = 0
    received_total = 0
    furthest = fetch.part_size()
    while True:
        fetch.received = 0
        try:
            try:
                _attempt(fetch, session, timeout_s, bar)
            finally:
                received_total += fetch.received
            digest = fetch.hasher.hexdigest() if fetch.hasher is not None else file_md5(fetch.part)
            if f.file_hash and digest != f.file_hash.lower():
                raise _BadBytes(f"MD5 {digest} does not match the manifest's {f.file_hash}")
            if not f.file_hash:
                log.warning("%s: the manifest gives no MD5; accepted on size only", f.relative_path)
            os.replace(fetch.part, final)
            _record(cache_dir, final, present=True)
            return received_total
        except _Transient as exc:
            # Progress (the .part grew past its longest so far) resets the count: a long file over a flaky
            # line gets there; a server that always cuts at the same byte does not loop forever.
            size = fetch.part_size()
            transient = 0 if size > furthest else transient + 1
            furthest = max(furthest, size)
            if transient > retries:
                raise DownloadError(f"{f.relative_path}: gave up after {transient} attempts in a row without "
                                    f"progress at {url} ({exc}); the partial file {fetch.part} is kept and a new "
                                    f"run resumes it") from None
            n = max(transient, 1)
            log.warning("%s: %s; retrying (%d/%d)", f.relative_path, exc, n, retries)
        except _BadBytes as exc:
            fetch.reset()
            furthest = 0
            bad += 1
            if bar is not None and f.size:
                bar.total += f.size  # the file is fetched again from its first byte
                bar.refresh()
            if bad > retries:
                raise DownloadError(f"{f.relative_path}: wrong bytes from {url} {bad} times ({exc}); "
                                    f"nothing was kept") from None
            n = bad
            log.warning("%s: %s; fetching it again (%d/%d)", f.relative_path, exc, n, retries)
        except DownloadError:
            # Permanent (HTTP 4xx): a .part from an earlier run may still be good for another mirror; keep it.
            raise
        delay = min(backoff_base_s * 2 ** (n - 1), max_backoff_s)
        if delay > 0:
            sleep(delay)


# ----------------------------------------------------------------------------------------------- the whole run

def _check_existing(f: ManifestFile, cache_dir: Path, recorded: set[str]) -> str:
    """State of a file already on disk: ``"verified"``, ``"absent"`` (fetch it; maybe resume a ``.part``)."""
    final = safe_local_path(cache_dir, f.relative_path)
    part = final.with_name(final.name + PART_SUFFIX)
    if final.is_dir():
        raise DownloadError(f"{final} is a directory, but the manifest lists it as a file")
    if not final.exists():
        return "absent"
    size = final.stat().st_size
    if str(final.resolve()) in recorded and (not f.size or size == f.size):
        return "verified"  # the official tool trusts this record too
    if f.size and size < f.size and not part.exists():
        # Most likely an interrupted download of the official tool (it writes in place): resume it.
        log.info("%s: %d of %d bytes present and unrecorded; resuming it", f.relative_path, size, f.size)
        os.replace(final, part)
        return "absent"
    if (not f.size or size == f.size) and f.file_hash:
        log.info("%s: present but not recorded in %s; checking its MD5", f.relative_path, DOWNLOADED_DATA)
    if (not f.size or size == f.size) and f.file_hash and file_md5(final) == f.file_hash.lower():
        _record(cache_dir, final, present=True)
        return "verified"
    log.warning("%s: the file present does not match the manifest (size %d, manifest %d, or MD5); removing it",
                f.relative_path, size, f.size)
    final.unlink()
    _record(cache_dir, final, present=False)
    return "absent"


def run_download(cache_dir: str | Path, release: str | None = "latest", datasets: Sequence[str] | None = None,
                 kinds: Sequence[str] | None = None, base_url: str | None = None, list_only: bool = False,
                 progress: bool = True, echo: Callable[[str], None] = log.info, retries: int = 5,
                 backoff_base_s: float = 1.0, timeout_s: float | tuple[float, float] = (10, 60),
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> DownloadSummary | None:
    """Fetch the release manifest, then (unless ``list_only``) the chosen files into ``cache_dir``.

    Parameters
    ----------
    cache_dir : path
        ABC cache directory (created if missing).
    release : str or None
        Release version (``20250531``) or ``latest``.
    datasets, kinds : sequence of str or None
        Selection; default all datasets and kinds ``metadata`` and ``image_volumes`` (expression matrices are
        large: ask for them with ``kinds=[..., "expression_matrices"]``).
    base_url : str or None
        Bucket https address replacing the public bucket (a mirror, a test server).
    list_only : bool
        Only print the release's datasets, kinds, file counts and sizes.
    echo : callable
        Receives the lines for the user (the CLI passes ``click.echo``).
    retries, backoff_base_s, timeout_s, session, sleep
        Retry count, back-off base in seconds, ``requests`` time-out(s), HTTP session, sleep function.

    Returns
    -------
    DownloadSummary or None
        ``None`` for ``list_only``.

    Raises
    ------
    DownloadError
        No manifest, unknown dataset, unsafe manifest path, not enough free disk space (before any download),
        or files that failed (after the others were fetched; the message names each file and why).
    """
    cache_dir = Path(cache_dir)
    session = session or _session()
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = resolve_manifest(cache_dir, release, base_url, session, timeout_s)
    if list_only:
        for line in list_release(manifest, datasets, kinds):
            echo(line)
        return None

    files = select_files(manifest, datasets, kinds)
    for f in files:
        safe_local_path(cache_dir, f.relative_path)  # refuse a bad manifest before touching anything
    write_manifest_last_used(cache_dir, manifest.version)
    if not kinds:
        expr = [f for f in manifest.files(kind="expression_matrices") if f.dataset in (datasets or manifest.datasets())]
        if expr:
            echo(f"expression matrices are not fetched by default ({len(expr)} file(s), "
                 f"{format_size(sum(f.size for f in expr))}); add --kind expression_matrices to get them")
    if not files:
        echo(f"release {manifest.version}: nothing to download for this selection")
        return DownloadSummary(manifest.version)

    summary = DownloadSummary(manifest.version)
    recorded = read_downloaded(cache_dir)
    todo: list[ManifestFile] = []
    for f in files:
        if _check_existing(f, cache_dir, recorded) == "verified":
            summary.skipped.append(f.relative_path)
            summary.bytes_skipped += f.size
        else:
            todo.append(f)

    def remaining(f: ManifestFile) -> int:
        part = safe_local_path(cache_dir, f.relative_path)
        part = part.with_name(part.name + PART_SUFFIX)
        have = part.stat().st_size if part.exists() else 0
        return max(f.size - have, 0) if have <= f.size else f.size

    need = sum(remaining(f) for f in todo)
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        raise DownloadError(f"not enough free disk space in {cache_dir}: the {len(todo)} file(s) to fetch need "
                            f"{format_size(need)}, only {format_size(free)} is free; nothing was downloaded")
    echo(f"release {manifest.version}: {len(todo)} file(s) to fetch ({format_size(need)}), "
         f"{len(summary.skipped)} already present and verified")

    bar = tqdm(total=need, unit="B", unit_scale=True, unit_divisor=1000, desc="download", disable=not progress,
               dynamic_ncols=True) if todo else None
    redirect = _logging_redirect() if progress and todo else nullcontext()
    try:
        with redirect:
            for f in todo:
                if bar is not None:
                    bar.set_postfix_str(PurePosixPath(f.relative_path).name, refresh=False)
                url = file_url(f, base_url)
                try:
                    summary.bytes_fetched += download_file(f, cache_dir, url, session, retries, backoff_base_s,
                                                           timeout_s=timeout_s, bar=bar, sleep=sleep)
                    summary.fetched.append(f.relative_path)
                except DownloadError as exc:
                    log.error("%s", exc)
                    summary.failed.append((f.relative_path, str(exc)))
    finally:
        if bar is not None:
            bar.close()
    echo(summary.text())
    if summary.failed:
        lines = "\n".join(f"  {reason}" for _, reason in summary.failed)
        raise DownloadError(f"{len(summary.failed)} file(s) failed:\n{lines}")
    return summary


def _logging_redirect():
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()
