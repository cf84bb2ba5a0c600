"""``sweep`` (cube engine for ASH, Evaluator for the rest) and ``ash-explore sweep``."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cube_helpers import assert_sweep_frames_close

from ash_core.bundle import load_bundle
from ash_core.cli import main
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError
from ash_core.maths.metrics import METRIC_NAMES
from ash_core.methods import get_method, list_methods
from ash_core.setting import Setting
from ash_core.sweep import parse_grid, sweep


def _sizes(bundle) -> tuple[int, dict[str, int]]:
    return len(bundle.id_split), {s.name: len(s) for s in bundle.ood_splits}


def per_point(bundle, methods, grid, threshold="local", score="energy", convention="id",
              seed=0) -> pd.DataFrame:
    """The pre-cube sweep: one Evaluator.evaluate per (method, p)."""
    ev = Evaluator(bundle)
    rows = []
    for m in methods:
        spec = get_method(m)
        mode = threshold if threshold in spec.threshold_modes else "local"
        for p in (grid if spec.has_p else [None]):
            r = ev.evaluate(Setting(m, {} if p is None else {"p": p}, mode, score, convention, seed))
            row = {"method": m, "p": np.nan if p is None else p,
                   "id_acc": r.id_accuracy["shaped"], "id_acc_unshaped": r.id_accuracy["unshaped"]}
            for name, metrics in r.ood.items():
                row.update({f"{name}/{k}": metrics[k] for k in METRIC_NAMES})
            row.update({f"average/{k}": v for k, v in r.average.items()})
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("threshold", ["local", "global"])
@pytest.mark.parametrize("score", ["energy", "msp", "maxlogit"])
def test_sweep_equals_per_point_evaluation(synthetic_bundle: Path, tmp_path: Path,
                                           threshold: str, score: str) -> None:
    bundle = load_bundle(synthetic_bundle)
    methods = list_methods()  # every registered method: cube or fallback
    grid = [10.0, 65.0, 90.0]
    got = sweep(bundle, methods, grid, threshold, score, seed=3, cache_dir=tmp_path)
    want = per_point(bundle, methods, grid, threshold, score, seed=3)
    assert list(got.columns) == list(want.columns)
    assert got["method"].tolist() == want["method"].tolist()
    np.testing.assert_array_equal(got["p"].to_numpy(), want["p"].to_numpy())
    assert_sweep_frames_close(got, want, *_sizes(bundle))


def test_sweep_reuses_cached_cubes_and_reports_progress(synthetic_bundle: Path,
                                                        tmp_path: Path) -> None:
    bundle = load_bundle(synthetic_bundle)
    calls: list[tuple[int, int]] = []
    first = sweep(bundle, ["ash-p", "ash-s", "none"], parse_grid("60:90:10"),
                  cache_dir=tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (9, 9)  # 2 methods x 4 p + none
    assert any(t > 9 for _, t in calls)  # the cube build reports feature rows first
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = sweep(bundle, ["ash-p", "ash-s", "none"], parse_grid("60:90:10"), cache_dir=tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    pd.testing.assert_frame_equal(first, again)


def test_sweep_selected_ood_and_errors(synthetic_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(synthetic_bundle)
    frame = sweep(bundle, ["ash-b"], [80.0], ood=["far"], cache_dir=tmp_path)
    assert [c for c in frame.columns if c.startswith("near/")] == []
    assert frame["average/auroc"].tolist() == frame["far/auroc"].tolist()
    with pytest.raises(ParameterError):
        sweep(bundle, ["ash-b"], [80.0], score="nope", cache_dir=tmp_path)
    with pytest.raises(ParameterError):
        sweep(bundle, ["ash-b"], [80.0], convention="nope", cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="unknown method"):
        sweep(bundle, ["ash-q"], [80.0], cache_dir=tmp_path)


def test_sweep_torch_backend_matches_native(synthetic_bundle: Path) -> None:
    bundle = load_bundle(synthetic_bundle)
    # sweep() still names the cube backend ``engine`` (ash_core.sweep is not this branch's)
    a = sweep(bundle, ["ash-s", "ash-rand"], [50.0, 95.0], use_cache=False, engine="native")
    b = sweep(bundle, ["ash-s", "ash-rand"], [50.0, 95.0], use_cache=False, engine="torch")
    assert_sweep_frames_close(a, b, *_sizes(bundle))


def test_cli_sweep_with_cache_options(synthetic_bundle: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    cache = tmp_path / "cubes"
    with redirect_stdout(out):
        rc = main(["sweep", str(synthetic_bundle), "--methods", "ash-p,ash-s,react", "--p",
                   "60:80:10", "--format", "csv", "--cache-dir", str(cache)])
    assert rc == 0
    frame = pd.read_csv(io.StringIO(out.getvalue()))
    assert frame["method"].tolist() == ["ash-p"] * 3 + ["ash-s"] * 3 + ["react"] * 3
    assert len(list(cache.rglob("*.safetensors"))) == 3  # react has a cube too
    out2 = io.StringIO()
    with redirect_stdout(out2):
        rc = main(["sweep", str(synthetic_bundle), "--methods", "ash-b", "--p", "70",
                   "--no-cache", "--engine", "torch", "--threshold", "global"])
    assert rc == 0
    assert "ash-b" in out2.getvalue()
    assert len(list(cache.rglob("*.safetensors"))) == 3  # react has a cube too
