"""The dashboard's intervals, counts, operating point and ASH-RAND spread, through AppTest
on a small synthetic bundle: the numbers are the library's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_synthetic_bundle
from test_dashboard_app import ok, run_app, texts

from ash_core import Setting, evaluate, load_bundle
from ash_core.maths.bootstrap import paired_bootstrap
from ash_core.maths.operating import threshold_at_id_kept
from ash_core.reports.intervals import bracket, result_ci
from dashboard import uncertainty


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci_bundles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_BUNDLE_ROOTS", str(root))
        yield make_synthetic_bundle(root / "main")


def shaped(bundle, method="ash-s", p=90.0):
    return evaluate(load_bundle(bundle), Setting(method, {"p": p}))


def test_overview_shows_intervals_and_counts(bundle):
    at = ok(run_app(bundle, method="ash-s", p=90))
    ci = result_ci(shaped(bundle), uncertainty.RESAMPLES, uncertainty.SEED)
    text = texts(at, "caption")
    assert f"AUROC {bracket(*ci.average['auroc'])}" in text
    assert f"FPR95 {bracket(*ci.average['fpr95'])}" in text
    assert "ID 400 images, OOD 600 images over 2 set(s)" in text
    helps = [m.proto.help for m in at.metric if m.label == "avg AUROC"]
    assert f"95% interval {bracket(*ci.average['auroc'])}" in helps[0]
    table = at.dataframe[0].value.set_index("ood_set")
    assert table.loc["near", "auroc_ci"] == bracket(*ci.ood["near"]["auroc"])
    assert table.loc["near", "n_ood"] == 300 and table.loc["Average", "n_ood"] == 600
    assert (table["n_id"] == 400).all()


def test_distributions_show_the_operating_point_and_its_counts(bundle):
    at = ok(run_app(bundle, method="ash-s", p=90, view="distributions"))
    result = shaped(bundle)
    t = threshold_at_id_kept(result.id_scores, 0.95)
    assert f"threshold {t:.4g}" in texts(at, "markdown")
    rows = at.dataframe[-1].value.set_index("split")
    for name, s in result.ood_scores.items():
        assert rows.loc[name, "kept"] == np.count_nonzero(s >= t)
        assert rows.loc[name, "fpr"] == pytest.approx(100 * result.ood[name].fpr95)
    assert rows.loc["id_test", "kept"] == np.count_nonzero(result.id_scores >= t)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(s["x0"] == pytest.approx(t) and s["line"]["dash"] == "solid"
               for s in spec["layout"]["shapes"])
    # a threshold on the score axis instead: the readout and the URL follow
    at.radio(key="op_mode").set_value("score").run()
    higher = round(t + 1.0, 2)
    at.number_input(key="op_score").set_value(higher).run()
    ok(at)
    rows = at.dataframe[-1].value.set_index("split")
    assert rows.loc["far", "kept"] == np.count_nonzero(result.ood_scores["far"] >= higher)
    assert at.query_params["op"] == f"score:{higher:g}"


def test_roc_marks_the_operating_point(bundle):
    at = ok(run_app(bundle, method="ash-s", p=90, view="curves", op="kept:95"))
    result = shaped(bundle)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    marks = [d for d in spec["data"] if d.get("legendgroup") == "opp"]
    assert len(marks) == 2
    assert sorted(d["x"][0] for d in marks) == pytest.approx(
        sorted(100 * m.fpr95 for m in result.ood.values()))
    assert at.get("download_button")


def test_ash_rand_shows_its_spread_over_seeds(bundle):
    at = ok(run_app(bundle, method="ash-rand", p=80))
    at.toggle(key="rand_spread").set_value(True).run()
    ok(at)
    table = at.dataframe[-1].value.set_index("metric")
    aurocs = [evaluate(load_bundle(bundle), Setting("ash-rand", {"p": 80.0}, seed=s))
              .average["auroc"] for s in range(10)]
    assert table.loc["avg AUROC", "mean"] == pytest.approx(100 * np.mean(aurocs))
    assert table.loc["avg AUROC", "max"] == pytest.approx(100 * np.max(aurocs))


def test_compare_gives_a_minus_b_with_its_paired_interval(bundle):
    at = ok(run_app(bundle, method="ash-s", p=90, view="compare", bmethod="none"))
    a, b = shaped(bundle), evaluate(load_bundle(bundle), Setting("none"))
    pair = paired_bootstrap(a.id_scores, a.ood_scores, b.id_scores, b.ood_scores,
                            uncertainty.RESAMPLES, uncertainty.SEED)
    text = texts(at, "markdown")
    assert (f"AUROC {100 * pair.average['auroc']:+.2f} pp "
            f"{bracket(*pair.average_ci['auroc'])} ({pair.verdict('auroc')})") in text
    # the same setting on both sides: no difference, and an interval of zero width
    at = ok(run_app(bundle, method="ash-s", p=90, view="compare", bmethod="ash-s", bp=90))
    assert "AUROC +0.00 pp [0.00, 0.00] (no clear difference)" in texts(at, "markdown")


def test_a_linked_share_below_the_control_range_starts_at_its_lowest(bundle):
    at = ok(run_app(bundle, method="ash-s", p=90, view="distributions", op="kept:0.05"))
    assert at.number_input(key="op_kept").value == 0.1
