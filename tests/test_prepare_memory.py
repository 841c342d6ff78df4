"""``--memory-limit`` bounds the whole prepare (cell tables, the conversion and its worker processes) at 4 M cells."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from abc_builders import WMB, build_umap_cache

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, sys
    # Everything prepare imports, so the baseline is taken after imports.
    import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, pyarrow.compute, pyarrow.ipc, h5py, scipy
    import anndata, anndata.io, tqdm, tqdm.contrib.logging, numcodecs
    from data_layer.prepare import prepare_store
    from bench.width_bench import TreeMemory

    if __name__ == "__main__":  # the worker processes import this file
        with TreeMemory(0.005) as memory:  # this process and its workers, sampled every 5 ms
            report = prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=int(sys.argv[3]), workers=2)
        print(json.dumps({"growth": memory.peak - memory.base, "datasets": report.datasets}))
""")


@pytest.mark.slow
def test_prepare_and_its_workers_stay_under_the_memory_limit_at_four_million_cells(tmp_path):
    limit = 2 << 30
    build_umap_cache(tmp_path / "cache", n_cells=4_000_000, n_genes=50, per_row=2)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / "store"), str(limit)],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["datasets"] == {WMB: "prepared"}
    assert 0 < result["growth"] < limit, f"grew {result['growth'] >> 20} MB; limit {limit >> 20} MB"
