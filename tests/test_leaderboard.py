"""``ash_core.reports.leaderboard`` and ``ash_core.maths.pareto``: every method side by side, Figure 1.

References are independent: each row against ``evaluate`` at the row's parameters, the
validated parameters against ``search``, the Pareto front against a brute-force O(n^2)
dominance check (on data with ties), Figure 1's curves against ``ash_core.sweep``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from test_search import make_val_bundle

from ash_core import Evaluator, SplitData, evaluate, list_methods, load_bundle, write_bundle
from ash_core.errors import ParameterError
from ash_core.maths.pareto import pareto_mask
from ash_core.methods import _registry as registry_module
from ash_core.reports.leaderboard import curve_methods, figure1, leaderboard
from ash_core.search.grid import search
from ash_core.setting import Setting
from ash_core.sweep import sweep


def brute_front(x, y, max_x=True, max_y=True) -> list[bool]:
    """Point i is on the front iff no j is >= in both and > in one (NaN never counts)."""
    sx, sy = (1 if max_x else -1), (1 if max_y else -1)
    pts = [(sx * a, sy * b) for a, b in zip(x, y, strict=True)]
    out = []
    for i, (a, b) in enumerate(pts):
        if a != a or b != b:
            out.append(False)
            continue
        out.append(not any(c >= a and d >= b and (c > a or d > b)
                           for j, (c, d) in enumerate(pts) if j != i and c == c and d == d))
    return out


# --------------------------------------------------------------------------- Pareto


def test_pareto_ties_duplicates_stay_and_equal_x_with_worse_y_goes():
    x = [1, 1, 1, 2, 2, 0, 3]
    y = [5, 5, 4, 3, 3, 9, 1]
    assert pareto_mask(x, y).tolist() == [True, True, False, True, True, True, True]
    # the same points for minimising y: only the lowest y at each best x survives
    assert pareto_mask(x, y, maximize_y=False).tolist() == brute_front(x, y, max_y=False)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(hs.lists(hs.tuples(hs.integers(0, 4), hs.integers(0, 4) | hs.just(-1)),
                min_size=0, max_size=25),
       hs.booleans(), hs.booleans())
def test_pareto_equals_brute_force(points, max_x, max_y):
    x = [float(a) for a, _ in points]
    y = [float("nan") if b < 0 else float(b) for _, b in points]
    assert pareto_mask(x, y, max_x, max_y).tolist() == brute_front(x, y, max_x, max_y)


def test_pareto_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one length"):
        pareto_mask([1, 2], [1])


# --------------------------------------------------------------------------- the board


@pytest.fixture(scope="module")
def val_bundle(tmp_path_factory):
    return load_bundle(make_val_bundle(tmp_path_factory.mktemp("board") / "vb"))


@pytest.fixture(scope="module")
def default_board(val_bundle):
    return leaderboard(val_bundle)


def test_every_registered_method_is_listed(default_board):
    listed = [r.method for r in default_board.rows] + list(default_board.unavailable)
    assert sorted(listed) == sorted(list_methods())


def test_rows_equal_evaluate_at_their_defaults(val_bundle, default_board):
    assert default_board.rows, default_board.unavailable
    for row in default_board.rows:
        assert row.source == "default" and not row.validated
        ref = evaluate(val_bundle, Setting(row.method, row.params))
        assert row.params == ref.params
        for name in ref.ood:
            assert row.result.ood[name].as_dict() == ref.ood[name].as_dict(), row.method
        assert row.result.id_accuracy == ref.id_accuracy
        assert row.seconds >= 0


def test_frame_has_per_set_average_and_both_accuracies(default_board):
    df = default_board.frame()
    for col in ["method", "params", "parameters", "far/auroc", "near/fpr95",
                "average/auroc", "average/fpr95", "id_acc", "id_acc_unshaped", "seconds"]:
        assert col in df.columns
    row = df[df["method"] == "ash-s"].iloc[0]
    assert row["params"] == "p=65"
    assert row["average/auroc"] == pytest.approx((row["far/auroc"] + row["near/auroc"]) / 2)


def test_validated_rows_use_the_search_choice(val_bundle):
    methods = ["ash-s", "react", "gen", "knn", "temp-scaling"]
    board = leaderboard(val_bundle, validated=True, methods=methods)
    rows = {r.method: r for r in board.rows}
    for m in ("ash-s", "react", "gen"):
        chosen = search(val_bundle, m).selected
        assert rows[m].validated and rows[m].params == chosen, m
        assert "validated on id_val 'id_v' vs ood_val 'ov_a', 'ov_b'" in rows[m].source
        ref = evaluate(val_bundle, Setting(m, chosen))
        assert rows[m].result.average == ref.average
    assert not rows["knn"].validated and "refits on id_fit" in rows["knn"].source
    assert rows["temp-scaling"].source == "default (no search grid)"
    assert "ash-s, react, gen" in board.statement()


def test_validated_without_validation_splits_says_so(tmp_path):
    bundle = load_bundle(make_val_bundle(tmp_path / "noval", val=False))
    board = leaderboard(bundle, validated=True, methods=["ash-s", "none"])
    assert board.validated_on is None and "no id_val" in board.note
    assert all(r.source == "default" for r in board.rows)
    assert board.statement().startswith("Nothing validated")


def test_bundle_without_id_fit_lists_fitted_methods_as_unavailable(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 8)).astype(np.float32)
    feats = np.maximum(rng.normal(0.5, 1, size=(50, 8)), 0).astype(np.float32)
    path = write_bundle(tmp_path / "nofit", w, np.zeros(3, np.float32), ["a", "b", "c"],
                        [SplitData("id", "id", feats, (feats @ w.T).argmax(1)),
                         SplitData("o", "ood", feats[::-1] * 0.5)], {})
    board = leaderboard(load_bundle(path))
    assert {"react", "dice", "knn", "mahalanobis"} <= set(board.unavailable)
    assert "id_fit" in board.unavailable["knn"]
    assert {"none", "ash-s", "scale", "gen"} <= {r.method for r in board.rows}


def test_new_registry_methods_are_picked_up(val_bundle, monkeypatch):
    spec = registry_module.get_method("none")
    monkeypatch.setitem(registry_module._REGISTRY, "none-too",
                        registry_module.MethodSpec(**{**spec.__dict__, "name": "none-too"}))
    board = leaderboard(val_bundle, methods=None)
    assert "none-too" in [r.method for r in board.rows]


def test_progress_counts_every_method(val_bundle):
    seen = []
    leaderboard(val_bundle, methods=["none", "ash-s"], progress=lambda d, t, m: seen.append(
        (d, t, m)))
    assert seen == [(0, 2, "none"), (1, 2, "ash-s"), (2, 2, "")]


def test_bad_metric_is_a_clear_error(val_bundle):
    with pytest.raises(ParameterError, match="unknown metric"):
        leaderboard(val_bundle, metric="accuracy")


# --------------------------------------------------------------------------- Figure 1


@pytest.mark.parametrize("metric", ["auroc", "fpr95"])
def test_figure1_curves_points_and_front(val_bundle, default_board, metric):
    grid = [0.0, 30.0, 60.0, 90.0]
    ash = curve_methods(list_methods())
    df = sweep(val_bundle, ["none", *ash], grid, evaluator=Evaluator(val_bundle))
    fig = figure1(default_board, df, metric)
    assert sorted(set(fig.curves["method"])) == sorted(ash)
    want = df[df["method"].isin(ash)]
    assert fig.curves["value"].tolist() == want[f"average/{metric}"].tolist()
    assert not set(fig.points["method"]) & set(ash)
    assert "knn" in set(fig.points["method"])
    xs = [*fig.curves["id_acc"], *fig.points["id_acc"]]
    ys = [*fig.curves["value"], *fig.points["value"]]
    labels = [*(f"{m} p={p:g}" for m, p in zip(fig.curves["method"], fig.curves["p"],
                                               strict=True)), *fig.points["label"]]
    on = brute_front(xs, ys, True, metric != "fpr95")
    assert sorted(fig.front["label"]) == sorted(lab for lab, o in zip(labels, on, strict=True)
                                                if o)
    assert fig.front["id_acc"].is_monotonic_increasing


def test_figure1_rejects_an_unknown_metric(default_board):
    with pytest.raises(ParameterError, match="Figure 1 metric"):
        figure1(default_board, default_board.frame(), "aupr_in")
