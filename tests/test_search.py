"""``ash_core.search.grid`` and ``ash-explore search``: parameters chosen on validation splits.

The choice is checked against an independent computation (tests/reference.py shaping and
metrics in float64, numpy's first-occurrence argmax for OpenOOD's tie rule); the test
metrics against ``evaluate`` at the chosen parameters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref

from ash_core import Evaluator, SplitData, evaluate, load_bundle, write_bundle
from ash_core.cli import main
from ash_core.cube import get_cube
from ash_core.errors import BundleError, ParameterError
from ash_core.methods.recommended import benchmark_family, recommended_params
from ash_core.search.grid import (
    param_marks,
    parse_grid_assignment,
    search,
    search_points,
    select_first_best,
    validation_statement,
    validation_value,
)
from ash_core.setting import Setting

CLASSES, DIM = 4, 16


def make_val_bundle(path: Path, seed: int = 0, val: bool = True, **manifest) -> Path:
    """A small post-ReLU bundle with id_val and two ood_val splits (``val=False``: none)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=CLASSES).astype(np.float32)

    def feats(n: int, shift: float) -> np.ndarray:
        scale = rng.gamma(2.0, 0.5, size=(n, 1))  # per-sample scale: shaping matters
        return (np.maximum(rng.normal(shift, 1.0, size=(n, DIM)), 0) * scale).astype(np.float32)

    def labelled(n: int) -> np.ndarray:
        return rng.integers(0, CLASSES, n)

    id_feats = feats(120, 0.6)
    splits = [SplitData("id_test", "id", id_feats, (id_feats @ weight.T).argmax(1)),
              SplitData("id_train", "id_fit", feats(100, 0.6), labelled(100)),
              SplitData("far", "ood", feats(80, 0.0)), SplitData("near", "ood", feats(70, 0.4))]
    if val:
        splits += [SplitData("id_v", "id_val", feats(60, 0.6), labelled(60)),
                   SplitData("ov_a", "ood_val", feats(40, 0.2)),
                   SplitData("ov_b", "ood_val", feats(30, 0.3))]
    return write_bundle(path, weight, bias, [f"class{i}" for i in range(CLASSES)], splits,
                        {"model": {"name": "synthetic"}, **manifest})


@pytest.fixture(scope="module")
def val_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_val_bundle(tmp_path_factory.mktemp("search") / "val_bundle")


def reference_validation(bundle, method: str, p: float, metric: str,
                         threshold: str = "local") -> float:
    """The validation metric recomputed independently: reference shaping, float64 head,
    reference energy, id_val against the pooled ood_val splits, reference metrics."""
    w, b = bundle.head_weight.numpy().astype(np.float64), bundle.head_bias.numpy()
    fit = bundle.id_fit.features.astype(np.float32)

    def energies(split) -> np.ndarray:
        x = ref.shape(method, split.features.astype(np.float32), p, threshold, fit)
        return ref.energy(x @ w.T + b)

    pooled = np.concatenate([energies(s) for s in bundle.ood_val_splits])
    return ref.ood_metrics(energies(bundle.id_val), pooled)[metric]


def first_best(values: list[float], metric: str) -> int:
    """OpenOOD's rule, written differently: the first index holding the best value."""
    arr = np.asarray(values)
    best = arr.max() if metric == "auroc" else arr.min()
    return int(np.flatnonzero(arr == best)[0])


# --------------------------------------------------------------------------- the grid and the rule


def test_default_grid_is_the_declared_search_grid():
    assert search_points("ash-s") == [{"p": float(p)} for p in range(65, 100, 5)]
    assert search_points("ash-b", {"p": [80, 70, 80]}) == [{"p": 80.0}, {"p": 70.0}]
    assert search_points("none") == [{}]


def test_multi_parameter_grid_enumerates_like_openood():
    # OpenOOD's recursive_generator: the first declared parameter varies fastest
    points = search_points("gen", {"gamma": [0.1, 1.0], "M": [2, 5, 7]})
    assert points == [{"gamma": g, "M": m} for m in (2.0, 5.0, 7.0) for g in (0.1, 1.0)]
    assert len(search_points("gen")) == 7 * 6


@pytest.mark.parametrize("values, metric, expected", [
    ([0.5, 0.7, 0.7, 0.6], "auroc", 1),        # a tie keeps the first
    ([0.7, 0.5, 0.7], "auroc", 0),
    ([0.3, 0.2, 0.2, 0.25], "fpr95", 1),       # lower is better for FPR95
    ([float("nan"), 0.4, 0.6], "auroc", 2),   # NaN is never the best
])
def test_first_best_rule(values, metric, expected):
    assert select_first_best(values, metric) == expected == \
        (expected if np.isnan(values).any() else first_best(values, metric))


@pytest.mark.parametrize("text, error", [
    ("p", "NAME=START:STOP:STEP"), ("=1:2:1", "NAME=START:STOP:STEP"),
    ("p=9:1:1", "cannot parse the grid of p"), ("p=1:9:0", "cannot parse the grid of p"),
    ("p=a,b", "cannot parse the grid of p"), ("p=", "cannot parse the grid of p"),
])
def test_bad_grid_text_is_a_clear_error(text, error):
    with pytest.raises(ParameterError, match=error):
        parse_grid_assignment(text)


def test_grid_values_are_validated_by_the_registry():
    assert parse_grid_assignment("p=65:95:10") == ("p", [65.0, 75.0, 85.0, 95.0])
    with pytest.raises(ParameterError, match=r"ash-s: p must be in \[0, 100\)"):
        search_points("ash-s", {"p": [90, 100]})
    with pytest.raises(ParameterError, match="unknown parameter 'q'"):
        search_points("ash-s", {"q": [1]})


# --------------------------------------------------------------------------- the search


@pytest.mark.parametrize("engine", ["exact", "cube"])
@pytest.mark.parametrize("method, metric", [("ash-s", "auroc"), ("ash-b", "fpr95"),
                                            ("ash-p", "auroc")])
def test_choice_equals_an_independent_argmax(val_bundle, tmp_path, engine, method, metric):
    bundle = load_bundle(val_bundle)
    result = search(bundle, method, metric=metric, engine=engine, cache_dir=tmp_path)
    values = [reference_validation(bundle, method, pt["p"], metric) for pt in result.points]
    assert result.validation == pytest.approx(values, abs=1e-12)
    assert result.selected == result.points[first_best(values, metric)]
    assert result.engine == engine
    assert result.validated_on.to_dict()["ood_val"] == ["ov_a", "ov_b"]


@pytest.mark.parametrize("engine", ["exact", "cube"])
def test_global_thresholds_are_fitted_on_id_fit_for_validation_too(val_bundle, tmp_path,
                                                                     engine):
    bundle = load_bundle(val_bundle)
    result = search(bundle, Setting("ash-b", {}, "global"), {"p": [50, 70, 90]},
                    engine=engine, cache_dir=tmp_path)
    values = [reference_validation(bundle, "ash-b", pt["p"], "auroc", "global")
              for pt in result.points]
    assert result.validation == pytest.approx(values, abs=1e-12)
    assert result.selected == result.points[first_best(values, "auroc")]


def test_ties_keep_the_first_point_in_grid_order(val_bundle):
    # D = 16: p = 0 and p = 1 both keep every unit (k = 16), so they tie exactly
    bundle = load_bundle(val_bundle)
    for grid, first in (([0.0, 1.0], 0.0), ([1.0, 0.0], 1.0)):
        result = search(bundle, "ash-p", {"p": grid}, engine="exact")
        assert result.validation[0] == result.validation[1]
        assert result.selected == {"p": first} and result.optimal == {"p": first}


@pytest.mark.parametrize("metric", ["auroc", "fpr95"])
def test_exact_ties_at_the_best_value_keep_the_first_point_in_grid_order(val_bundle, tmp_path,
                                                                         metric):
    # D = 16: p values with the same kept count k = 16 - round(16 p / 100) shape alike, so
    # their validation (and test) metrics tie exactly; put three of the best k's p values
    # around other points, in an order that is not the cube's sorted grid
    bundle = load_bundle(val_bundle)
    one_per_k = search(bundle, "ash-s", {"p": [100 * (16 - k) / 16 for k in range(16, 0, -1)]},
                       metric, engine="exact")
    k_best = 16 - round(16 * one_per_k.selected["p"] / 100)
    same_k = [p for p in range(100) if ref.kept_count(DIM, p) == k_best]
    assert len(same_k) >= 3
    others = [p for p in (10, 40, 70, 95) if ref.kept_count(DIM, p) != k_best]
    grid = [others[0], same_k[-1], others[1], same_k[0], same_k[1], *others[2:]]
    for engine in ("exact", "cube"):
        result = search(bundle, "ash-s", {"p": grid}, metric, engine=engine, cache_dir=tmp_path)
        tied = [result.validation[i] for i in (1, 3, 4)]
        assert tied[0] == tied[1] == tied[2]
        assert result.selected == {"p": float(same_k[-1])}, engine  # grid index 1
        assert result.selected_index == first_best(result.validation, metric) == 1
        assert result.optimal_index == first_best(result.test_values, metric)


def test_test_metrics_equal_evaluate_at_the_chosen_parameters(val_bundle, tmp_path):
    bundle = load_bundle(val_bundle)
    for engine in ("exact", "cube"):
        result = search(bundle, Setting("ash-s", {}, "local", "energy", "ood"), engine=engine,
                        cache_dir=tmp_path)
        for got, params in ((result.test, result.selected),
                            (result.test_optimal, result.optimal)):
            want = evaluate(bundle, Setting("ash-s", params, "local", "energy", "ood")).to_dict()
            got = got.to_dict()
            if engine == "exact":
                assert got == want
            else:  # the cube equals exact evaluation up to float32 rounding
                assert got["average"] == pytest.approx(want["average"], abs=1e-6)
                assert got["id_accuracy"] == want["id_accuracy"]


def test_test_optimal_is_the_best_test_average_and_the_gap_is_what_it_loses(val_bundle):
    bundle = load_bundle(val_bundle)
    result = search(bundle, "ash-b", {"p": [10, 40, 65, 80, 90, 95]}, engine="exact")
    tests = [evaluate(bundle, Setting("ash-b", pt)).average["auroc"] for pt in result.points]
    assert result.test_values == tests
    assert result.optimal == result.points[first_best(tests, "auroc")]
    assert result.gap == pytest.approx(max(tests) - tests[result.selected_index])
    assert result.gap >= 0


def test_methods_without_a_cube_and_multi_parameter_grids(val_bundle):
    bundle = load_bundle(val_bundle)
    result = search(bundle, "gen", {"gamma": [0.1, 2.0], "M": [2, 4]})
    assert result.engine == "exact" and len(result.points) == 4
    w, b = bundle.head_weight.numpy().astype(np.float64), bundle.head_bias.numpy()
    values = []
    for pt in result.points:
        def gen(split, pt=pt):
            return ref.gen(split.features.astype(np.float64) @ w.T + b, pt["gamma"], int(pt["M"]))
        pooled = np.concatenate([gen(s) for s in bundle.ood_val_splits])
        values.append(ref.ood_metrics(gen(bundle.id_val), pooled)["auroc"])
    assert result.validation == pytest.approx(values, abs=1e-9)
    assert result.selected == result.points[first_best(values, "auroc")]


def test_cube_search_test_curve_equals_full_results_at_every_point(val_bundle, tmp_path):
    from ash_core.cube import point_result

    bundle = load_bundle(val_bundle)
    for metric in ("auroc", "fpr95"):
        result = search(bundle, "ash-s", {"p": [0, 30, 60, 90, 99]}, metric,
                        cache_dir=tmp_path)
        ev = Evaluator(bundle)
        ev.ood_names = [*ev.ood_names, "id_v", "ov_a", "ov_b"]  # the search's own cube
        cube = get_cube(ev, "ash-s", [0, 30, 60, 90, 99], cache_dir=tmp_path)
        full = [point_result(cube, pt["p"], ood=["far", "near"]).average[metric]
                for pt in result.points]
        assert result.test_values == full  # the lean per-point path, exactly


def test_validation_pools_the_ood_val_splits():
    ident = np.array([3.0, 4.0])
    a, b = np.array([1.0, 5.0]), np.array([2.0])
    # pooled: ID beats 1 and 2 always, 5 never: 4 wins of 6 pairs
    assert validation_value(ident, [a, b], "auroc") == pytest.approx(4 / 6)


def test_a_bundle_without_validation_splits_says_how_to_add_them(tmp_path):
    bundle = load_bundle(make_val_bundle(tmp_path / "plain", val=False))
    with pytest.raises(BundleError) as exc:
        search(bundle, "ash-s")
    text = str(exc.value)
    assert "no id_val and no ood_val split" in text
    assert "re-extract" in text and "SplitData(name, 'id_val' | 'ood_val'" in text


def test_unknown_metric_and_engine_are_errors(val_bundle):
    bundle = load_bundle(val_bundle)
    with pytest.raises(ParameterError, match="unknown search metric 'aupr'"):
        search(bundle, "ash-s", metric="aupr")
    with pytest.raises(ParameterError, match="gen has no score cube"):
        search(bundle, "gen", engine="cube")


# --------------------------------------------------------------------------- the CLI


def test_cli_json_shape(val_bundle, tmp_path, capsys):
    code = main(["search", str(val_bundle), "--method", "ash-s", "--grid", "p=60:90:10",
                 "--format", "json", "--cache-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"method", "metric", "selected", "validation", "test", "test_optimal",
            "gap", "validated_on"} <= set(out)
    assert [g["params"] for g in out["validation"]["grid"]] == \
        [{"p": float(p)} for p in (60, 70, 80, 90)]
    assert out["validation"]["value"] == max(g["value"] for g in out["validation"]["grid"])
    assert out["test"]["params"] == out["selected"]
    assert set(out["test_optimal"]) == {"params", "test"}
    assert out["validated_on"]["id_val"] == "id_v"


def test_cli_table_marks_both_choices(val_bundle, tmp_path, capsys):
    assert main(["search", str(val_bundle), "--method", "ash-b", "--metric", "fpr95",
                 "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "selected" in out and "test-optimal" in out and "gap" in out
    assert "id_val 'id_v' vs ood_val 'ov_a', 'ov_b'" in out


def test_cli_bad_input_is_one_error_line(val_bundle, capsys):
    for args, what in (([str(val_bundle), "--grid", "p=1:x"], "cannot parse the grid"),
                       ([str(val_bundle), "--grid", "p=90", "--grid", "p=80"], "given twice"),
                       ([str(val_bundle), "--grid", "T=1"], "unknown parameter 'T'")):
        assert main(["search", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and what in err and err.count("\n") == 1


def test_cli_process_without_validation_splits(tmp_path):
    plain = make_val_bundle(tmp_path / "plain", val=False)
    proc = subprocess.run([sys.executable, "-m", "ash_core.cli", "search", str(plain)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: bundle plain has no id_val and no ood_val split")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- recommended marks


@pytest.mark.parametrize("manifest, name, family", [
    ({}, "cifar10_resnet20", None),                 # 4 classes: the count must agree
    ({"benchmark": "CIFAR-10"}, "anything", "cifar10"),
    ({"benchmark": "ImageNet"}, "x", "imagenet"),
    ({"benchmark": "svhn"}, "cifar10_x", None),      # a declared unknown family: no mark
])
def test_benchmark_family(tmp_path, manifest, name, family):
    bundle = load_bundle(make_val_bundle(tmp_path / name, val=False, **manifest))
    assert benchmark_family(bundle) == family


def test_family_inferred_from_the_class_count_and_a_name(shared_data):
    root = Path(__file__).resolve().parents[1] / "cached_features"
    assert benchmark_family(load_bundle(root / "cifar10_resnet20")) == "cifar10"
    assert benchmark_family(load_bundle(root / "mnist_cnn")) is None


def test_recommended_params_are_the_papers():
    assert recommended_params("ash-s", "imagenet") == {"p": 90.0}
    assert recommended_params("ash-b", "imagenet") == {"p": 65.0}
    assert recommended_params("ash-s", "cifar10") == recommended_params("ash-b", "cifar10") \
        == {"p": 95.0}
    assert recommended_params("ash-s", "cifar100") == {"p": 90.0}
    assert recommended_params("ash-b", "cifar100") == {"p": 85.0}
    assert recommended_params("ash-p", "cifar10") == {} == recommended_params("ash-s", None)


def test_param_marks_for_the_dashboard(val_bundle, tmp_path):
    plain = load_bundle(make_val_bundle(tmp_path / "cifar10_plain", val=False,
                                        benchmark="cifar10"))
    marks = param_marks(plain, Setting("ash-b"))
    assert marks.validated is None and marks.test_optimal is None
    assert marks.recommended == {"p": 95.0} and marks.family == "cifar10"
    assert "no id_val and no ood_val split" in marks.missing
    bundle = load_bundle(val_bundle)
    marks = param_marks(bundle, Setting("ash-s"), cache_dir=tmp_path)
    result = search(bundle, "ash-s", cache_dir=tmp_path)
    assert (marks.validated, marks.test_optimal) == (result.selected, result.optimal)
    assert marks.recommended == {} and marks.missing is None


def test_validation_statement_names_the_choice_and_the_data(val_bundle):
    result = search(load_bundle(val_bundle), "ash-s", {"p": [70, 80]}, engine="exact")
    text = validation_statement(result)
    p = result.selected["p"]
    assert text.startswith(f"ash-s p={p:g} was chosen on id_val 'id_v' vs ood_val 'ov_a', "
                           "'ov_b' by AUROC over 2 grid points")
    assert "the test sets were not used" in text and "Test-optimal" in text


def test_dashboard_marks_are_drawn_on_every_subplot_and_named_once(val_bundle, tmp_path):
    import plotly.graph_objects as go

    from ash_core.sweep import sweep
    from dashboard import figures
    from dashboard.param_marks import add_param_marks, marks_caption

    bundle = load_bundle(make_val_bundle(tmp_path / "b", benchmark="cifar10"))
    marks = param_marks(bundle, Setting("ash-b"), engine="exact")
    df = sweep(bundle, ["ash-b"], [0.0, 50.0, 95.0])
    fig = add_param_marks(figures.tradeoff_figure(df, 50.0, "id"), marks)
    # the trade-off figure's own current-p line is dashed; the marks are the others
    lines = [(s.x0, s.line.dash) for s in fig.layout.shapes if s.line.dash != "dash"]
    want = {(marks.validated["p"], "solid"), (marks.test_optimal["p"], "dashdot"), (95.0, "dot")}
    assert set(lines) == want and len(lines) == 3 * len(want)  # on all three panels
    names = [t.name for t in fig.data if t.name]
    assert f"validated p={marks.validated['p']:g}" in names
    assert "paper's p=95 (CIFAR-10)" in names
    assert "on id_val 'id_v'" in marks_caption(marks)
    plain = param_marks(load_bundle(make_val_bundle(tmp_path / "c", val=False)), Setting("ash-b"))
    assert add_param_marks(go.Figure(), plain).layout.shapes == ()
    assert marks_caption(plain) == "no validated p: this bundle has no id_val/ood_val splits"


def test_dashboard_toggle_shows_the_validated_parameters(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    path = make_val_bundle(tmp_path / "cifar10_val", benchmark="cifar10")
    monkeypatch.setenv("ASH_DASHBOARD_BUNDLES", str(path))
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params.update({"bundle": str(path), "method": "ash-b", "p": "30"})
    at.run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    chosen = search(load_bundle(path), "ash-b").selected["p"]
    caption = "\n".join(c.value for c in at.caption).replace("\\", "")
    assert f"validated p={chosen:g} (on id_val 'id_v' vs ood_val 'ov_a', 'ov_b')" in caption
    assert "paper's p=95 (CIFAR-10)" in caption
    assert "Overview: ash-b p=30" in at.subheader[0].value
    at.toggle(key="val").set_value(True).run()
    assert not at.exception and not at.error
    assert f"Overview: ash-b p={chosen:g}" in at.subheader[0].value
    assert at.query_params["val"] in ("1", ["1"])
    assert "the test sets were not used" in "\n".join(c.value for c in at.caption)
