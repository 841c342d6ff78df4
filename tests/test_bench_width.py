"""The real-width bench: its source, its measurements side by side and the extrapolation rows."""
from __future__ import annotations

import numpy as np
import pytest

from bench import width_bench


@pytest.mark.slow
def test_the_width_bench_measures_both_converters_on_the_same_source_and_extrapolates(tmp_path):
    res = width_bench.run(tmp_path, n_cells=400, per_row=60, n_files=2, memory_limit_bytes=512 << 20, workers=1,
                          n_lookups=5)
    assert res["n_genes"] == width_bench.N_GENES and 400 * 40 < res["nnz"] <= 400 * 60
    after, before = res["after"], res["before"]
    assert after["nnz"] == res["nnz"] and after["seconds"] > 0 and before["seconds"] > 0
    whats = [r["what"] for r in res["rows"]]
    assert any(w.startswith("inflate") for w in whats) and any(w.startswith("scipy") for w in whats)
    extrapolated = [r for r in res["rows"] if r["what"].startswith("extrapolated")]
    assert len(extrapolated) == 2
    wmb = extrapolated[0]
    rate = res["nnz"] / after["seconds"]
    assert wmb["hours"] == pytest.approx(width_bench.WMB_NNZ / rate / 3600)
    assert np.isfinite(wmb["store_gb"]) and wmb["store_gb"] > 0
    # the exact store and the previous float16 one hold the same genes; the exact one the source's values
    from data_layer.expression import GeneMatrix

    exact, old = GeneMatrix(tmp_path / "after", 400), GeneMatrix(tmp_path / "before", 400)
    g = int(np.argmax(np.diff(exact.indptr)))
    np.testing.assert_allclose(exact.values(g), old.values(g), rtol=2e-3)
    assert "p50_ms" in res["lookup_after"] and "p50_ms" in res["lookup_before"]
