"""Smoke test of benchmarks/bench_sweep.py's core at tiny sizes (no timing assertions)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sweep.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sweep", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sweep"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_bench_core_reports_ratios_and_is_exact(bench, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    sizes = {"id": 60, "ood": [30, 25, 20, 10], "fit": 40}
    path = bench.make_bundle(tmp_path / "tiny", sizes)
    res = bench.run(path, "tiny", official_ps=[90.0], exact_rows=40, memory=True, extras=True)
    out = capsys.readouterr().out
    for text in ("cube/dense =", "speed-up of the cube =", "lookup + all metrics",
                 "max rel energy error", "global/dense =", "RAND/P =", "(goal <= 1.5x)"):
        assert text in out, text
    for key in ("cube_over_dense", "cube_over_dense_cpu", "speedup", "speedup_cpu",
                "lookup_ms", "global_over_dense_cpu", "rand_over_p_cpu", "mem_ratio"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    assert res["rows"] == 60 + 85 + 0  # id + ood (id_fit is not scored)
    assert res["dim"] == 2048 and res["classes"] == 1000
    assert res["max_rel_energy_err"] <= 1e-4
    assert res["pred_mismatch"] == 0 and res["pred_checked"] > 0
    assert res["grid_methods"] == ["react", "scale"]
    for method in res["grid_methods"]:  # ReAct and SCALE preparation next to the dense pass
        assert f"cube {method}" in out
        assert math.isfinite(res[f"{method}_native_over_dense_cpu"]), method
        assert res[f"{method}_err"] <= 1e-4 and res[f"{method}_mismatch"] == 0, method
        assert res[f"{method}_checked"] > 0, method


def test_synthetic_features_look_post_relu(bench) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = bench.synthetic_features(300, rng, np.ones(bench.DIM, np.float32), 0.0)
    assert x.shape == (300, bench.DIM) and x.dtype == np.float32
    assert x.min() == 0.0 and 0.02 < (x == 0).mean() < 0.08
