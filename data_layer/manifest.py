"""Read ABC release manifests and resolve files of a local ABC cache.

A cache holds ``releases/<version>/manifest.json``; every file's local path is ``<cache>/<relative_path>``
taken verbatim from the manifest (see ABC_LAYOUT.md, sections 1-2). This module only reads; it never
downloads (``data_layer.download``) and never guesses a version.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

KINDS = ("metadata", "expression_matrices", "image_volumes")
BUCKET_URL = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"
_VERSION_RE = re.compile(r"^\d{8}$")


class ManifestError(Exception):
    """A manifest is missing, unreadable or does not hold what was asked, with a message saying which."""


@dataclass(frozen=True)
class ManifestFile:
    """One file of a release.

    ``variant`` is ``"log2"`` or ``"raw"`` for expression matrices, else ``None``; ``fmt`` is the manifest's
    format key (``csv``, ``h5ad``, ``geojson``, ``nii.gz``).
    """

    dataset: str
    kind: str
    tag: str
    variant: str | None
    fmt: str
    version: str
    relative_path: str
    url: str
    size: int
    file_hash: str

    def local_path(self, cache_dir: str | Path) -> Path:
        return Path(cache_dir) / self.relative_path


class Manifest:
    """A parsed ``manifest.json`` of one ABC release."""

    def __init__(self, data: dict, source: str | Path | None = None):
        for key in ("version", "file_listing"):
            if key not in data:
                raise ManifestError(f"{source or 'manifest'}: missing key {key!r}; not an ABC release manifest")
        self.data = data
        self.source = Path(source) if source else None
        self.version: str = str(data["version"])
        self.resource_uri: str = data.get("resource_uri", "")
        self._files = list(self._parse_files())

    @classmethod
    def from_file(cls, path: str | Path) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"manifest not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from None
        return cls(data, source=path)

    def _parse_files(self) -> Iterator[ManifestFile]:
        for dataset, kinds in self.data["file_listing"].items():
            for kind, tags in kinds.items():
                if kind not in KINDS:
                    log.debug("manifest %s: unknown kind %r of %s ignored", self.version, kind, dataset)
                    continue
                for tag, entry in tags.items():
                    if kind == "expression_matrices":
                        for variant, sub in entry.items():
                            for fmt, info in sub.get("files", {}).items():
                                yield self._file(dataset, kind, tag, variant, fmt, info)
                    else:
                        for fmt, info in entry.get("files", {}).items():
                            yield self._file(dataset, kind, tag, None, fmt, info)

    @staticmethod
    def _file(dataset, kind, tag, variant, fmt, info) -> ManifestFile:
        return ManifestFile(
            dataset=dataset, kind=kind, tag=tag, variant=variant, fmt=fmt,
            version=str(info.get("version", "")), relative_path=info["relative_path"],
            url=info.get("url", ""), size=int(info.get("size", 0)), file_hash=info.get("file_hash", ""),
        )

    def datasets(self) -> list[str]:
        """Dataset names in manifest order."""
        return list(self.data["file_listing"])

    def files(self, dataset: str | None = None, kind: str | None = None) -> list[ManifestFile]:
        return [f for f in self._files
                if (dataset is None or f.dataset == dataset) and (kind is None or f.kind == kind)]

    def file(self, dataset: str, kind: str, tag: str, variant: str | None = None) -> ManifestFile:
        """The file (dataset, kind, tag[, variant]); ``KeyError`` naming what exists when absent."""
        matches = [f for f in self.files(dataset, kind) if f.tag == tag and (variant is None or f.variant == variant)]
        if not matches:
            if dataset not in self.data["file_listing"]:
                raise KeyError(f"release {self.version} has no dataset {dataset!r}")
            have = sorted({f.tag for f in self.files(dataset, kind)})
            raise KeyError(f"release {self.version}, dataset {dataset!r}, kind {kind!r} has no {tag!r}"
                           f"{' (' + variant + ')' if variant else ''}; it has: {', '.join(have) or 'nothing'}")
        return matches[0]

    def directories(self, dataset: str) -> dict:
        return self.data.get("directory_listing", {}).get(dataset, {}).get("directories", {})

    def summary(self) -> list[dict]:
        """One row per (dataset, kind): file count and total bytes."""
        rows: dict[tuple[str, str], dict] = {}
        for f in self._files:
            row = rows.setdefault((f.dataset, f.kind), {"dataset": f.dataset, "kind": f.kind, "files": 0, "bytes": 0})
            row["files"] += 1
            row["bytes"] += f.size
        return list(rows.values())


def list_releases(cache_dir: str | Path) -> list[str]:
    """Release versions with a manifest in the cache, oldest first."""
    root = Path(cache_dir) / "releases"
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/manifest.json"))


def find_manifest(cache_dir: str | Path, release: str | None = None) -> Path:
    """Path of the manifest of ``release`` (default: the newest in the cache)."""
    cache_dir = Path(cache_dir)
    releases = list_releases(cache_dir)
    if not releases:
        raise ManifestError(
            f"{cache_dir} holds no release manifest (expected releases/<YYYYMMDD>/manifest.json): it is not an ABC "
            f"cache. Fetch one with `atlas-viewer download {cache_dir}` or write the demo with "
            f"`atlas-viewer demo {cache_dir}`."
        )
    if release in (None, "latest"):
        release = releases[-1]
    if release not in releases:
        raise ManifestError(f"{cache_dir} has no manifest for release {release!r}; it has: {', '.join(releases)}")
    return cache_dir / "releases" / release / "manifest.json"


class LocalCache:
    """An ABC cache directory seen through one release manifest."""

    def __init__(self, cache_dir: str | Path, release: str | None = None):
        self.root = Path(cache_dir)
        self.manifest = Manifest.from_file(find_manifest(self.root, release))
        if self.manifest.source and self.manifest.source.parent.name != self.manifest.version:
            raise ManifestError(f"{self.manifest.source}: declares version {self.manifest.version}, "
                                f"but lies in releases/{self.manifest.source.parent.name}")

    @property
    def version(self) -> str:
        return self.manifest.version

    def path(self, dataset: str, kind: str, tag: str, variant: str | None = None) -> Path:
        """Local path of (dataset, kind, tag[, variant]), whether or not it is downloaded."""
        return self.manifest.file(dataset, kind, tag, variant).local_path(self.root)

    def present(self, dataset: str | None = None, kind: str | None = None) -> list[ManifestFile]:
        """Files of the manifest that exist locally with the manifest's size."""
        out = []
        for f in self.manifest.files(dataset, kind):
            p = f.local_path(self.root)
            if p.is_file() and (not f.size or p.stat().st_size == f.size):
                out.append(f)
        return out

    def datasets_present(self) -> list[str]:
        return sorted({f.dataset for f in self.present()}, key=self.manifest.datasets().index)

    def unknown_files(self, kinds: Iterable[str] = KINDS) -> list[Path]:
        """Files under the cache's data folders that the manifest does not list (reported, then ignored)."""
        known = {f.relative_path for f in self.manifest.files()}
        out = []
        for kind in kinds:
            base = self.root / kind
            if base.is_dir():
                out += [p for p in base.rglob("*") if p.is_file() and
                        p.relative_to(self.root).as_posix() not in known and not p.name.startswith(".")]
        return out
