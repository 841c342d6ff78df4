"""The prepared store on disk: layout, catalog, atomic commit and source signatures.

Layout (see docs/atlas_api.md, "Store layout")::

    STORE/
      catalog.json           # the only mutable file; replaced atomically (os.replace) at the end of a prepare
      units/<unit-folder>/   # one immutable folder per prepared dataset or taxonomy, named <slug>-<signature>-<n>
      .tmp-<pid>/            # a prepare in progress builds its new units here
      .work/<slug>-<sig>/    # a dataset's expression conversion in progress: kept when a prepare is killed, so
                             # the next prepare of the same sources resumes it; removed once the catalog is in place
      .prepare.lock          # held (flock) while a prepare runs

A prepare writes new unit folders into ``.tmp-<pid>``, moves them into ``units/`` and only then replaces
``catalog.json``, so a crash or Ctrl-C at any moment leaves the previous catalog pointing at complete folders.
Unchanged datasets keep their folder (no copy, same inodes). Folders no catalog references are deleted after
the new catalog is in place (and by the next prepare after a crash), except those a running viewer still holds
(a shared ``flock`` on each unit folder it opened, :func:`hold_units`): a viewer started before a re-prepare keeps
serving its complete, unchanged version until it sees the new catalog (:func:`catalog_stamp`) and lets go of the
old one; then it (:func:`remove_unused`) or a later prepare removes the old folders.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

#: Bump when the store layout changes: every unit is then re-prepared.
FORMAT_VERSION = 1
CATALOG = "catalog.json"
UNITS = "units"
LOCK = ".prepare.lock"
TMP_PREFIX = ".tmp-"
WORK = ".work"


class StoreError(Exception):
    """A folder is not a usable store (no catalog, another format version, a unit missing)."""


class DatasetDamaged(StoreError):
    """A dataset's files are missing, truncated or unreadable; the store's other datasets still serve.

    ``dataset`` names the dataset, ``problems`` says which files (one line each)."""

    def __init__(self, dataset: str, problems: list[str]):
        self.dataset = dataset
        self.problems = list(problems)
        super().__init__(f"dataset {dataset} is damaged in the store ({'; '.join(self.problems[:3])}"
                         f"{f'; and {len(self.problems) - 3} more' if len(self.problems) > 3 else ''}); "
                         f"run `atlas-viewer verify STORE`, then `atlas-viewer prepare` again")


# ----------------------------------------------------------------------------------------------------- catalog
def read_catalog(store_dir: str | Path) -> dict:
    """The store's catalog; ``StoreError`` explaining what to do when it is absent or unreadable."""
    path = Path(store_dir) / CATALOG
    try:
        catalog = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{store_dir} is not a prepared store (no {CATALOG}); "
                         f"run `atlas-viewer prepare CACHE_DIR {store_dir}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: unreadable catalog ({exc}); re-run `atlas-viewer prepare`") from None
    if catalog.get("format") != FORMAT_VERSION:
        raise StoreError(f"{store_dir}: store format {catalog.get('format')!r}, this version reads "
                         f"{FORMAT_VERSION}; re-run `atlas-viewer prepare`")
    return catalog


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never a partial one."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------------------------------- units
def slug(name: str) -> str:
    """A file-system-safe short form of a dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def is_store(folder: Path) -> bool:
    return (folder / CATALOG).is_file()


@contextlib.contextmanager
def prepare_lock(store_dir: Path) -> Iterator[None]:
    """Hold the store's prepare lock; ``StoreError`` if another prepare holds it."""
    store_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(store_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"another `atlas-viewer prepare` is writing {store_dir}; wait for it to end") from None
            raise
        yield
    finally:
        os.close(fd)


def cleanup_stale(store_dir: Path, catalog: dict | None) -> None:
    """Remove temp folders of dead prepares and unit folders no catalog references (call under the lock)."""
    for tmp in store_dir.glob(TMP_PREFIX + "*"):
        pid = tmp.name[len(TMP_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            log.info("removing %s left by an interrupted prepare", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    units = store_dir / UNITS
    if not units.is_dir():
        return
    used = referenced_units(catalog) if catalog else set()
    for folder in units.iterdir():
        if folder.name not in used:
            fd = _lock_folder(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if fd is None:
                log.info("keeping unreferenced store folder %s: a running viewer still reads it (removed by a later "
                         "prepare once it is gone)", folder)
                continue
            try:
                log.info("removing unreferenced store folder %s", folder)
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(fd)


def remove_unused(store_dir: Path) -> bool:
    """Remove the unit folders the catalog no longer references and no process holds, as a prepare does after
    its commit; for a running viewer that has just let go of an older version. Does nothing (False) while a
    prepare runs (it collects them itself) or when the store cannot be written."""
    try:
        with prepare_lock(Path(store_dir)):
            cleanup_stale(Path(store_dir), read_catalog(store_dir))
    except (StoreError, OSError) as exc:
        log.info("unused store folders of %s left for a later prepare: %s", store_dir, exc)
        return False
    return True


def catalog_stamp(store_dir: str | Path) -> tuple[int, int, int] | None:
    """``(inode, mtime_ns, size)`` of the store's catalog (one ``stat``): it changes when a prepare commits a new
    catalog (written beside, then renamed over the old). None when there is none."""
    try:
        info = os.stat(Path(store_dir) / CATALOG)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _lock_folder(folder: Path, operation: int) -> int | None:
    """An open descriptor of ``folder`` holding ``flock(operation)``; None if the folder is gone or, with
    ``LOCK_NB``, another process holds a conflicting lock. A symbolic link is locked as its target."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, operation)
    except OSError:
        os.close(fd)
        return None
    return fd


def hold_units(store_dir: Path, units: Iterable[str]) -> list[int]:
    """Take a shared lock on each unit folder a reader uses (``Atlas.open``): a prepare never removes a folder a
    running viewer holds, so a re-prepare switches the catalog atomically while every process that opened the
    previous one keeps reading complete, unchanged folders until it ends. Returns the descriptors to close."""
    fds = []
    for unit in sorted(units):
        fd = _lock_folder(Path(store_dir) / UNITS / unit, fcntl.LOCK_SH)
        if fd is not None:
            fds.append(fd)
    return fds


def release_units(fds: list[int]) -> None:
    """Close the descriptors of :func:`hold_units` (their locks go with the last process holding them)."""
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def referenced_units(catalog: dict) -> set[str]:
    used = set()
    for entry in catalog.get("datasets", {}).values():
        used.add(entry["unit"])
        if entry.get("taxonomy_unit"):
            used.add(entry["taxonomy_unit"])
    for entry in catalog.get("taxonomies", {}).values():
        used.add(entry["unit"])
    return used


def new_unit_name(kind: str, name: str, signature: str) -> str:
    return f"{kind}-{slug(name)}-{signature[:12]}-{time.time_ns() % 10**12:012d}"


def commit(store_dir: Path, tmp_dir: Path, new_units: Iterable[str], catalog: dict) -> None:
    """Move the new unit folders into the store, then atomically replace the catalog, then collect garbage."""
    units = store_dir / UNITS
    units.mkdir(exist_ok=True)
    for name in new_units:
        os.rename(tmp_dir / name, units / name)
    _fsync_dir(units)
    write_json_atomic(store_dir / CATALOG, catalog)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    cleanup_stale(store_dir, catalog)


def work_folder(store_dir: Path, name: str, signature: str) -> Path:
    """The resumable work folder of a dataset's expression conversion (same sources, same folder)."""
    return Path(store_dir) / WORK / f"{slug(name)}-{signature[:16]}"


def remove_work_folders(store_dir: Path, keep: set[str]) -> None:
    """Remove expression work folders except those named in ``keep`` (call under the lock)."""
    root = Path(store_dir) / WORK
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()


# ------------------------------------------------------------------------------------------------ signatures
def file_md5(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def signature(records: Iterable[dict], extra: dict | None = None) -> str:
    """A stable hash of source records (path, size, md5) and the parameters that shape the output."""
    payload = {"format": FORMAT_VERSION, "sources": sorted((r["path"], r["size"], r["md5"]) for r in records),
               "extra": extra or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ unit files
#: Checksum of a store file as recorded in the catalog (fast; it detects damage, it is no security measure).
CHECKSUM = "blake2b-128"


def file_checksum(path: Path, chunk: int = 1 << 20) -> str:
    """The :data:`CHECKSUM` of a file, hex (read through one small buffer: hashing adds no memory to prepare)."""
    h = hashlib.blake2b(digest_size=16)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            h.update(view[:n])
    return h.hexdigest()


def unit_files(folder: Path) -> dict[str, list]:
    """``{relative path: [size, checksum]}`` of every file in a unit folder (written into its catalog entry)."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        out[path.relative_to(folder).as_posix()] = [path.stat().st_size, file_checksum(path)]
    return out


def check_unit(folder: Path, files: dict[str, list] | None, checksums: bool = False) -> list[str]:
    """Problems of a unit folder against its recorded ``files`` (one line each, naming the file; [] = sound).

    Sizes are checked by ``stat`` (cheap, done at every open); ``checksums=True`` also reads every file and
    compares its checksum (``atlas-viewer verify``). Without records (a store prepared before they were kept)
    only the folder's presence is checked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"folder {folder} is missing"]
    problems = []
    for rel, (size, checksum) in (files or {}).items():
        path = folder / rel
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path} is missing")
            continue
        except OSError as exc:
            problems.append(f"{path} cannot be read ({exc.strerror})")
            continue
        if actual != size:
            problems.append(f"{path} has {actual} bytes, the catalog says {size} (truncated or changed)")
        elif checksums:
            try:
                if file_checksum(path) != checksum:
                    problems.append(f"{path}: checksum differs from the catalog's (the file changed)")
            except OSError as exc:
                problems.append(f"{path} cannot be read ({exc.strerror})")
    return problems


def entry_units(catalog: dict, entry: dict) -> list[tuple[str, dict | None]]:
    """``(unit folder name, recorded files or None)`` of a dataset entry: its own unit and its taxonomy's."""
    out = [(entry["unit"], entry.get("files"))]
    if entry.get("taxonomy_unit"):
        tax = next((t for t in catalog.get("taxonomies", {}).values() if t.get("unit") == entry["taxonomy_unit"]),
                   None)
        out.append((entry["taxonomy_unit"], tax.get("files") if tax else None))
    return out


def check_dataset(root: Path, catalog: dict, name: str, checksums: bool = False) -> list[str]:
    """Problems of a dataset's folders (its own and its taxonomy's) in the store ``root``; [] when sound."""
    problems = []
    for unit, files in entry_units(catalog, catalog["datasets"][name]):
        problems += check_unit(Path(root) / UNITS / unit, files, checksums=checksums)
    return problems


def verify_store(store_dir: str | Path, checksums: bool = True) -> list[tuple[str, str, list[str]]]:
    """Check every dataset and taxonomy of a store against its catalog.

    Returns
    -------
    list of ``(kind, name, problems)``
        kind ``"dataset"`` or ``"taxonomy"``; ``problems`` is ``[]`` for a sound unit and ``None`` for a unit
        prepared before sizes and checksums were recorded (its presence checked only: see :func:`check_unit`).
    """
    root = Path(store_dir)
    catalog = read_catalog(root)
    out = []
    for kind, section in (("taxonomy", "taxonomies"), ("dataset", "datasets")):
        for name, entry in catalog.get(section, {}).items():
            files = entry.get("files")
            problems = check_unit(root / UNITS / entry["unit"], files, checksums=checksums)
            out.append((kind, name, problems if files is not None or problems else None))
    return out


# ----------------------------------------------------------------------------------------------- arrays, strings
def save_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def open_npy(path: Path, mmap: bool = True) -> np.ndarray:
    """A stored array, memory-mapped read-only (an empty array is read, since it cannot be mapped)."""
    if mmap:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr
    return np.load(path, allow_pickle=False)


def write_strings(path: Path, values, name: str = "value") -> None:
    """Write a string column as an uncompressed Arrow IPC file (memory-mappable, zero-copy slices)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = pa.array(values if isinstance(values, np.ndarray) else list(values), type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string() and arr.nbytes > 1 << 30:
        arr = arr.cast(pa.large_string())
    table = pa.table({name: arr})
    with pa.OSFile(str(path), "wb") as sink:
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, len(arr)))


def open_strings(path: Path) -> pa.Array:
    """A string column written by :func:`write_strings`, memory-mapped (one contiguous Arrow array)."""
    source = pa.memory_map(str(path), "r")
    table = ipc.open_file(source).read_all()
    col = table.column(0)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
