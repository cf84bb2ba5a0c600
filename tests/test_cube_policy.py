"""The engine policy: exact or cube for a setting, the reason, and serving it without fallback."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from cube_helpers import assert_metrics_close, assert_scores_close

from ash_core import Setting
from ash_core import policy as policy_mod
from ash_core.bundle import load_bundle
from ash_core.bundle.safetensors_io import read_header
from ash_core.cube import get_cube
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError
from ash_core.policy import choose_engine, evaluate_setting

GRID = (50.0, 65.0, 90.0)


@pytest.fixture
def ev(synthetic_bundle: Path) -> Evaluator:
    return Evaluator(load_bundle(synthetic_bundle))


def test_auto_is_exact_where_one_evaluation_is_cheap(ev: Evaluator) -> None:
    choice = choose_engine(ev, "ash-s", p=90.0)
    assert choice.engine == "exact" and "cheap" in choice.reason


def test_auto_is_the_cube_where_exact_is_expensive(ev: Evaluator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_mod, "EXACT_MAX_WORK", 0)
    choice = choose_engine(ev, "ash-s", "global", p=90.0)
    assert choice.engine == "cube" and "MB" in choice.reason
    assert choose_engine(ev, "react", p=90.0).engine == "cube"   # the "clip" grid
    assert choose_engine(ev, "scale", p=85.0).engine == "cube"   # the "row-scale" grid
    for method, p, why in (("none", None, "none has no score cube"),
                           ("ash-s", 12.5, "not a point of the cube grid")):
        choice = choose_engine(ev, method, p=p)
        assert choice.engine == "exact" and why in choice.reason, choice
    monkeypatch.setenv("ASH_CUBE_MAX_MB", "0.001")
    choice = choose_engine(ev, "ash-s", p=90.0)
    assert choice.engine == "exact" and "ASH_CUBE_MAX_MB" in choice.reason


def test_requested_engines(ev: Evaluator) -> None:
    assert choose_engine(ev, "ash-s", requested="exact", p=90.0).engine == "exact"
    assert choose_engine(ev, "ash-s", requested="cube", p=90.0).engine == "cube"
    with pytest.raises(ParameterError, match="cannot serve this setting: none has no"):
        choose_engine(ev, "none", requested="cube")
    with pytest.raises(ParameterError, match="unknown engine"):
        choose_engine(ev, "ash-s", requested="fast", p=90.0)
    with pytest.raises(ParameterError, match="unknown method"):
        choose_engine(ev, "ash-q", p=90.0)


def test_memory_estimate_is_the_real_cube_layout(ev: Evaluator, tmp_path: Path) -> None:
    """Not 16 bytes per row and point: every stored tensor (fields x dtypes x grid x rows,
    unshaped scores, labels, grid, global thresholds), as on disk."""
    for threshold in ("local", "global"):
        cube = get_cube(ev, "ash-b", GRID, threshold, cache_dir=tmp_path)
        tensors, _ = read_header(cube.meta["path"])
        on_disk = sum(t.nbytes for t in tensors.values())
        assert policy_mod.cube_nbytes(ev, "ash-b", threshold, GRID) == on_disk
        rows = sum(len(ev.bundle.split(n)) for n in ev.split_names)
        assert on_disk != rows * len(GRID) * 16


@pytest.mark.parametrize("score", ["energy", "msp"])
def test_evaluate_setting_serves_both_engines_and_says_which(ev: Evaluator, score: str) -> None:
    exact = evaluate_setting(ev, Setting("ash-s", {"p": 90.0}, "local", score), engine="exact")
    cube = evaluate_setting(ev, Setting("ash-s", {"p": 90.0}, "local", score), engine="cube", grid=GRID, use_cache=False)
    assert (exact.engine, cube.engine) == ("exact", "cube")
    assert cube.id_accuracy == exact.id_accuracy
    assert_scores_close(cube.id_scores, exact.id_scores)
    n_ood = {n: len(ev.bundle.split(n)) for n in ev.ood_names}
    assert_metrics_close(cube.to_dict()["ood"], exact.to_dict()["ood"],
                         len(ev.bundle.id_split), n_ood, "id")
    assert evaluate_setting(ev, Setting("ash-s", {"p": 90.0}, "local", score)).engine == "exact"  # auto, cheap
    assert evaluate_setting(ev, Setting("none"), engine="auto").engine == "exact"


def test_evaluate_setting_never_falls_back_silently(ev: Evaluator) -> None:
    def broken(method: str, threshold: str, seed: int):
        raise RuntimeError("cube store is down")

    with pytest.raises(RuntimeError, match="cube store is down"):
        evaluate_setting(ev, Setting("ash-s", {"p": 90.0}), engine="cube", cube_provider=broken)
    other_grid = get_cube(ev, "ash-s", [10.0], use_cache=False)
    with pytest.raises(ParameterError, match="not in the cube grid"):
        evaluate_setting(ev, Setting("ash-s", {"p": 90.0}), engine="cube", cube_provider=lambda m, t, s: other_grid)


def test_evaluate_setting_uses_the_provided_cube(ev: Evaluator) -> None:
    cube = get_cube(ev, "ash-p", GRID, use_cache=False)
    calls = []
    result = evaluate_setting(ev, Setting("ash-p", {"p": 65.0}), engine="cube", ood=["far"], cube_provider=lambda m, t, s: calls.append((m, t, s)) or cube)
    assert calls == [("ash-p", "local", 0)]
    assert list(result.ood) == ["far"] and math.isfinite(result.average["auroc"])


def test_the_policy_needs_no_streamlit() -> None:
    code = "import sys, ash_core.policy; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
