"""Synthetic Allen Brain Cell Atlas cache in the exact release layout (``atlas-viewer demo``).

``write_demo_cache(cache_dir, seed=0)`` writes, in well under a minute, the datasets the viewer shows:

* the three basal ganglia spatial datasets (MERSCOPE human and macaque, Xenium marmoset): two coronal
  slab planes each, 2-3 sections per plane, anatomically laid out (caudate, putamen, internal capsule with
  striatal cell bridges, GPe/GPi, accumbens, ventral pallidum, STH, SN, ventricle, claustrum, insula, white
  matter; each species its own proportions and size, the marmoset's a whole hemisphere), region GeoJSON,
  panels of ~300 genes with log2 CPM values and detection rates like the release's, and the release's quirks;
* the basal ganglia taxonomy ``HMBA-BG-taxonomy-CCN20250428`` with the aligned 10X nuclei
  (``HMBA-10xMultiome-BG-Aligned``) and their continuous, branching UMAP;
* the whole mouse brain taxonomy ``WMB-taxonomy`` with ``WMB-10X`` cells and regional ``WMB-10Xv3``
  expression files;
* the consensus mouse taxonomy ``Consensus-WMB-integrated-taxonomy`` with its UMAP over a sample of the WMB-10X
  cells and new Macosko cells, whose expression the ``Consensus-WMB-AIBS-10X`` and ``-Macosko-10X`` cell tables
  name (:mod:`.consensus`);

``scale="atlas"`` writes the same layout at real size (see :data:`scale.ATLAS`), streaming the big tables and
matrices in chunks of cells so memory stays bounded. Always written: ``releases/<version>/manifest.json`` (true
sizes and MD5s, the release schema), ``_manifest_last_used.txt`` and ``_downloaded_data.json``. The same seed gives byte-identical files
(``_downloaded_data.json`` aside: it records absolute paths). Nothing here imports Dash.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .bgmodel import build_bg_model
from .manifest_writer import manifest_files, write_downloaded_record, write_manifest
from .scale import SCALES, DemoScale, get_scale
from .spatial import SPATIAL_SPECS, SPATIAL_VERSION, write_spatial_dataset
from .tenx import ALIGNED, ALIGNED_VERSION, TAXONOMY_VERSION, write_tenx_and_taxonomy
from .taxonomy_bg import TAXONOMY as BG_TAXONOMY
from . import consensus, wmb

log = logging.getLogger(__name__)

#: Release version written into the demo manifest.
RELEASE = "20251031"

#: (kind, dataset, version) folders the demo writes; nothing else in a cache is touched.
DEMO_FOLDERS = (
    [("metadata", s.dataset, SPATIAL_VERSION) for s in SPATIAL_SPECS]
    + [("expression_matrices", s.dataset, SPATIAL_VERSION) for s in SPATIAL_SPECS]
    + [("image_volumes", s.dataset, SPATIAL_VERSION) for s in SPATIAL_SPECS]
    + [("metadata", BG_TAXONOMY, TAXONOMY_VERSION), ("metadata", ALIGNED, ALIGNED_VERSION),
       ("expression_matrices", ALIGNED, ALIGNED_VERSION),
       ("metadata", wmb.TAXONOMY, wmb.TAXONOMY_VERSION), ("metadata", wmb.CELLS, wmb.CELLS_VERSION),
       ("expression_matrices", wmb.MATRICES, wmb.MATRICES_VERSION),
       ("metadata", consensus.TAXONOMY, consensus.VERSION), ("metadata", consensus.AIBS, consensus.VERSION),
       ("metadata", consensus.MACOSKO, consensus.VERSION),
       ("expression_matrices", consensus.MACOSKO, consensus.VERSION)]
)

__all__ = ["DemoScale", "DemoSummary", "RELEASE", "SCALES", "write_demo_cache"]


@dataclass
class DemoSummary:
    """What :func:`write_demo_cache` wrote: cells per dataset, bytes, seconds, the manifest path."""

    cache_dir: Path
    manifest: Path
    seconds: float
    total_bytes: int
    cells: dict[str, int] = field(default_factory=dict)
    details: dict[str, dict] = field(default_factory=dict)


def write_demo_cache(cache_dir: str | Path, seed: int = 0, scale: str | DemoScale = "demo",
                     progress: bool = False) -> DemoSummary:
    """Write the synthetic ABC cache into ``cache_dir``.

    Parameters
    ----------
    cache_dir : str or Path
        Cache root (created if needed). The demo's own ``<kind>/<dataset>/<version>`` folders are
        replaced; other files in the cache are left alone and not listed in the demo manifest.
    seed : int
        Random seed; the same seed gives the same bytes.
    scale : str or DemoScale
        ``"demo"`` (about 0.5 M cells), ``"atlas"`` (real size: a 4 M-cell ``WMB-10X`` with the 5,322-cluster
        mouse taxonomy, a 1 M-cell human MERSCOPE dataset; streamed in chunks, bounded memory) or a
        :class:`DemoScale`.
    progress : bool
        Show one tqdm progress bar per dataset.

    Returns
    -------
    DemoSummary
    """
    sizes = get_scale(scale)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for kind, dataset, version in DEMO_FOLDERS:
        folder = cache / kind / dataset / version
        if folder.exists():
            shutil.rmtree(folder)

    def bar(desc: str, total: int):
        return tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=True)

    summary_details: dict[str, dict] = {}
    with bar("BG model (taxonomy, genes, profiles)", 1) as b:
        model = build_bg_model(seed, sizes.tenx_genes)
        b.update(1)
    for spec in SPATIAL_SPECS:
        with bar(spec.dataset, 5) as b:
            summary_details[spec.dataset] = write_spatial_dataset(cache, spec, model, sizes, seed, bar=b)
    with bar(f"{ALIGNED} + {BG_TAXONOMY}", 4) as b:
        summary_details[ALIGNED] = write_tenx_and_taxonomy(cache, model, sizes, seed, bar=b)
    with bar(f"{wmb.CELLS} + {wmb.TAXONOMY} + {wmb.MATRICES}", 4) as b:
        summary_details[wmb.CELLS] = wmb.write_wmb(cache, sizes, seed, bar=b)
    with bar(f"{consensus.TAXONOMY} + {consensus.AIBS} + {consensus.MACOSKO}", 3) as b:
        summary_details[consensus.TAXONOMY] = consensus.write_consensus(
            cache, sizes.consensus_aibs_cells, sizes.consensus_macosko_cells, seed, bar=b,
            real_size=sizes.chunk_cells is not None)
    with bar(f"releases/{RELEASE}/manifest.json (MD5 of every file)", 1) as b:
        manifest_path, manifest = write_manifest(cache, RELEASE, datasets={d for _, d, _ in DEMO_FOLDERS})
        write_downloaded_record(cache, manifest)
        b.update(1)

    files = manifest_files(manifest)
    total = sum(info["size"] for info in files)
    seconds = time.perf_counter() - start
    cells = {name: d["cells"] for name, d in summary_details.items()}
    log.info("demo cache %s: %d files, %.1f MB, %s cells, written in %.1f s", cache, len(files),
             total / 1e6, ", ".join(f"{k} {v:,}" for k, v in cells.items()), seconds)
    return DemoSummary(cache, manifest_path, seconds, total, cells, summary_details)
