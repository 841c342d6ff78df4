"""Build a release ``manifest.json`` for files on disk, as the ABC release's manifest builder does.

For every ``<kind>/<dataset>/<version>/`` folder of a cache: a ``directory_listing`` entry (version,
relative path, bucket URL, browse link, total size) and one ``file_listing`` entry per file (``*`` and
``*/*`` so ``views/`` files are included) with its true size and MD5. Tags are file names without the
extension; ``-log2.h5ad``/``-raw.h5ad`` files are grouped under their tag by normalisation. Output is
deterministic (sorted), so the same files give the same manifest bytes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

BUCKET_URL = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"
RESOURCE_URI = "s3://allen-brain-cell-atlas/"
KINDS = ("expression_matrices", "image_volumes", "metadata")


def file_md5(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """MD5 hex digest of a whole file (the manifest's ``file_hash``)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def _entry(cache: Path, path: Path, version: str, bucket_url: str) -> dict:
    rel = path.relative_to(cache).as_posix()
    return {"version": version, "relative_path": rel, "url": bucket_url + rel, "size": path.stat().st_size,
            "file_hash": file_md5(path)}


def build_manifest(cache: Path, version: str, bucket_url: str = BUCKET_URL,
                   datasets: set[str] | None = None) -> dict:
    """The manifest dict of every ``<kind>/<dataset>/<version>/`` folder under ``cache``.

    Parameters
    ----------
    cache : Path
        Cache root.
    version : str
        Release version (``YYYYMMDD``) written as the manifest's ``version``.
    bucket_url : str
        https prefix of the bucket; ``url`` of a file = prefix + relative path.
    datasets : set of str, optional
        Only these datasets (default: every dataset folder found).
    """
    cache = Path(cache)
    directories: dict[str, dict] = {}
    files: dict[str, dict] = {}
    for kind in KINDS:
        for ds_dir in sorted(p for p in (cache / kind).glob("*") if p.is_dir()):
            if datasets is not None and ds_dir.name not in datasets:
                continue
            versions = sorted(p.name for p in ds_dir.iterdir() if p.is_dir() and p.name.isdigit())
            if not versions:
                continue
            ver = versions[-1]
            data_dir = ds_dir / ver
            rel_dir = f"{kind}/{ds_dir.name}/{ver}"
            listing: dict[str, dict] = {}
            total = 0
            paths = sorted(p for p in data_dir.glob("*") if p.is_file()) + \
                sorted(p for p in data_dir.glob("*/*") if p.is_file())
            for path in paths:
                entry = _entry(cache, path, ver, bucket_url)
                total += entry["size"]
                name = path.name
                if name.endswith(".h5ad"):
                    norm = "raw" if name.endswith("-raw.h5ad") else "log2" if name.endswith("-log2.h5ad") else None
                    if norm is None:
                        raise ValueError(f"{path}: expression files must end in -log2.h5ad or -raw.h5ad")
                    tag = name[: -len(f"-{norm}.h5ad")]
                    listing.setdefault(tag, {})[norm] = {"files": {"h5ad": entry}}
                elif name.endswith(".nii.gz"):
                    listing[name[: -len(".nii.gz")]] = {"files": {"nii.gz": entry}}
                else:
                    stem, ext = name.rsplit(".", 1)
                    listing[stem] = {"files": {ext: entry}}
            directories.setdefault(ds_dir.name, {"directories": {}})["directories"][kind] = {
                "version": ver, "relative_path": rel_dir, "url": f"{bucket_url}{rel_dir}/",
                "view_link": f"{bucket_url}index.html#{rel_dir}/", "total_size": total,
            }
            files.setdefault(ds_dir.name, {})[kind] = listing
    return {
        "version": version,
        "resource_uri": RESOURCE_URI,
        "directory_listing": {k: directories[k] for k in sorted(directories)},
        "file_listing": {k: files[k] for k in sorted(files)},
    }


def write_manifest(cache: Path, version: str, bucket_url: str = BUCKET_URL,
                   datasets: set[str] | None = None) -> tuple[Path, dict]:
    """Write ``releases/<version>/manifest.json`` and ``_manifest_last_used.txt``.

    Returns
    -------
    (Path, dict)
        The manifest's path and content.
    """
    cache = Path(cache)
    manifest = build_manifest(cache, version, bucket_url, datasets)
    path = cache / "releases" / version / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=4))
    (cache / "_manifest_last_used.txt").write_text(f"releases/{version}/manifest.json")
    return path, manifest


def manifest_files(manifest: dict) -> list[dict]:
    """Every file entry (``version, relative_path, url, size, file_hash``) of a manifest."""
    out = []
    for kinds in manifest["file_listing"].values():
        for tags in kinds.values():
            for entry in tags.values():
                for sub in (entry.values() if "files" not in entry else [entry]):
                    out.extend(sub["files"].values())
    return out


def write_downloaded_record(cache: Path, manifest: dict) -> Path:
    """Write ``_downloaded_data.json`` as the official access package keeps it (absolute paths, sorted).

    With it, ``AbcProjectCache`` treats the files as already downloaded instead of warning that the cache
    holds files it has no record of. It names absolute paths, so it is the one file that depends on where
    the cache was written.
    """
    cache = Path(cache)
    paths = [str((cache / info["relative_path"]).resolve()) for info in manifest_files(manifest)]
    out = cache / "_downloaded_data.json"
    out.write_text(json.dumps(sorted(paths), indent=2, sort_keys=True))
    return out
