"""Across bundles: the method x bundle table by near/far group and each shaping method's
gain or loss against no shaping (``ash_core.reports.across``), and its figures."""

from __future__ import annotations

import math

import pytest

from ash_core.engine.result import EvalResult
from ash_core.maths.metrics import OODMetrics
from ash_core.reports.across import (
    ACROSS_METHODS,
    SHAPING,
    across_frame,
    evaluate_across,
    gains_table,
    heat_table,
)
from ash_core.setting import Setting
from dashboard import export, figures_across


def _r(method, aurocs, acc, groups):
    ood = {n: OODMetrics(fpr95=1 - a, auroc=a, aupr_in=a, aupr_out=a) for n, a in aurocs.items()}
    return EvalResult("b", Setting(method).validated(), {"shaped": acc, "unshaped": 0.9}, ood,
                      groups=groups)


@pytest.fixture
def results():
    g1 = {"near": ("tin",), "far": ("noise", "dtd")}
    g2 = {"far": ("noise",)}  # a bundle with no near group
    return {
        "one": {"none": _r("none", {"tin": 0.8, "noise": 0.6, "dtd": 0.7}, 0.9, g1),
                "ash-s": _r("ash-s", {"tin": 0.5, "noise": 0.9, "dtd": 0.8}, 0.88, g1)},
        "two": {"none": _r("none", {"noise": 0.7}, 0.5, g2),
                "ash-s": _r("ash-s", {"noise": 0.75}, 0.45, g2),
                "react": _r("react", {"noise": 0.65}, 0.5, g2)},
    }


def test_the_table_by_bundle_method_and_group(results):
    df = across_frame(results)
    one = df[(df["bundle"] == "one") & (df["method"] == "ash-s")].set_index("group")
    assert list(one.index) == ["near", "far", "all"]
    assert one.loc["far", "auroc"] == pytest.approx(0.85) and one.loc["far", "sets"] == \
        "noise, dtd"
    assert one.loc["all", "auroc"] == pytest.approx((0.5 + 0.9 + 0.8) / 3)
    assert one.loc["near", "id_acc"] == pytest.approx(0.88) and one.loc["near", "params"] == \
        "p=65"
    near = heat_table(df, "near")
    assert list(near.columns) == ["one", "two"] and list(near.index) == ["none", "ash-s",
                                                                         "react"]
    assert near.loc["ash-s", "one"] == pytest.approx(0.5)
    assert math.isnan(near.loc["ash-s", "two"])  # "two" declares no near group
    acc = heat_table(df, None)
    assert acc.loc["react", "two"] == pytest.approx(0.5) and math.isnan(acc.loc["react", "one"])


def test_gains_against_no_shaping_per_bundle_and_group(results):
    g = gains_table(across_frame(results))
    assert list(g.index) == ["ash-s", "react"]  # shaping methods only, registry order
    assert g.loc["ash-s", ("one", "near")] == pytest.approx(-0.3)  # the loss is kept
    assert g.loc["ash-s", ("one", "far")] == pytest.approx(0.85 - 0.65)
    assert g.loc["react", ("two", "far")] == pytest.approx(-0.05)
    assert math.isnan(g.loc["react", ("one", "far")])  # not run on "one"
    assert ("two", "near") not in g.columns


def test_evaluate_across_runs_defaults_and_reports_what_fails():
    seen = []

    def evaluate(setting):
        seen.append(setting)
        if setting.method == "react":
            raise ValueError("react needs an 'id_fit' split\nmore")
        return _r(setting.method, {"x": 0.7}, 0.9, {})
    results, skipped = evaluate_across([("b", evaluate)])
    assert [s.method for s in seen] == list(ACROSS_METHODS)
    assert dict(seen[ACROSS_METHODS.index("ash-s")].params) == {"p": 65.0}
    assert skipped == {"b: react": "react needs an 'id_fit' split"}
    assert set(results["b"]) == set(ACROSS_METHODS) - {"react"}
    assert set(SHAPING) < set(ACROSS_METHODS)


def test_across_figures_carry_every_number(results):
    df = across_frame(results)
    heat = figures_across.across_heatmaps({"near": heat_table(df, "near"),
                                           "far": heat_table(df, "far"),
                                           "ID accuracy": heat_table(df, None)}, theme="light")
    assert len(heat.data) == 3 and heat.data[0].text[1][0] == "50.0"
    gains = figures_across.gains_heatmap(gains_table(df), theme="dark")
    tr = gains.data[0]
    assert tr.zmin == -tr.zmax and tr.text[0][0] == "-30.0"  # symmetric, loss shown
    assert list(tr.x[0][:3]) == ["one"] * 3 and list(tr.x[1][:3]) == ["near", "far", "all"]
    cells = export.figure_frame(gains)
    assert len(cells) == 2 * len(gains_table(df).columns)
