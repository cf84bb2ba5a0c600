"""The Leaderboard view, Figure 1, Compare's "methods" mode and their exports (AppTest).

Synthetic bundles (fast) for every control; the demo bundle ``mnist_cnn`` (no id_fit) for
"methods that cannot run are listed with the reason, nothing crashes". Numbers are
checked against ``ash_core.reports.leaderboard`` / ``evaluate``, computed independently here.
"""

from __future__ import annotations

import pytest
from test_dashboard_app import DEMO, _make_bundles, ok, texts
from test_dashboard_app import run_app as run
from test_groups import GROUPS
from test_groups import _bundle as groups_bundle
from test_search import make_val_bundle

from ash_core import Setting, evaluate, get_method, list_methods, load_bundle
from ash_core.reports.leaderboard import leaderboard
from ash_core.reports.tables import column_label
from dashboard import cache, figures
from dashboard.config import AppArgs
from dashboard.paths import BundlePolicy
from dashboard.state import State
from dashboard.views.common import Context
from dashboard.views.export import build_html

MNIST = DEMO.parent / "mnist_cnn"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("board_bundles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_BUNDLE_ROOTS", f"{root}:{DEMO.parent}")
        made = _make_bundles(root)
        made["val"] = make_val_bundle(root / "val")
        made["groups"] = groups_bundle(root / "groups")
        yield made


def board_table(at):
    (table,) = [d.value for d in at.dataframe if "parameters" in d.value.columns]
    return table


def test_leaderboard_lists_every_method_with_the_evaluate_numbers(bundles):
    at = ok(run(bundles["main"], view="leaderboard", step=10))
    df = board_table(at)
    assert sorted(df["method"]) == sorted(list_methods())  # main has id_fit: all ranked
    bundle = load_bundle(bundles["main"])
    for method in ("ash-s", "knn", "gen"):
        row = df[df["method"] == method].iloc[0]
        ref = evaluate(bundle, Setting(method))
        assert row["average/auroc"] == pytest.approx(100 * ref.average["auroc"], abs=1e-9)
        assert row["id_acc"] == pytest.approx(100 * ref.id_accuracy["shaped"], abs=1e-9)
        assert row["parameters"] == "default"
    assert len(at.get("plotly_chart")) == 1
    assert "Pareto front" in texts(at, "caption")
    keys = [b.key for b in at.get("download_button")]
    assert keys == ["dl_board_csv", "dl_board_latex", "dl_board_markdown",
                    "figure1_chart_dl_png", "figure1_chart_dl_svg", "figure1_chart_dl_csv"]


@pytest.mark.parametrize("engine", ["exact", "cube"])
def test_overview_and_leaderboard_show_the_group_averages(bundles, engine):
    """Near/far rows in the overview's table (with deltas) and columns in the leaderboard,
    each the mean of its group's sets."""
    at = ok(run(bundles["groups"], method="ash-p", p=80, engine=engine))
    table = at.dataframe[0].value.set_index("ood_set")
    for group, members in GROUPS.items():
        row = table.loc[f"Average ({group})"]
        for m in ("auroc", "fpr95", "auroc_delta"):
            assert row[m] == pytest.approx(table.loc[list(members), m].mean(), abs=1e-9)
    at = ok(run(bundles["groups"], view="leaderboard", step=20))
    df = board_table(at)
    for group, members in GROUPS.items():
        want = df[[f"{n}/auroc" for n in members]].mean(axis=1)
        assert df[f"average ({group})/auroc"].to_numpy() == pytest.approx(want.to_numpy())


def test_headers_have_units():
    assert column_label("average/auroc") == "avg AUROC (%)"
    assert column_label("far/fpr95") == "far FPR95 (%)"


def test_validated_toggle_switches_the_board_to_validated_parameters(bundles):
    at = ok(run(bundles["val"], view="leaderboard", val=1, method="ash-s"))
    df = board_table(at)
    row = df[df["method"] == "ash-s"].iloc[0]
    want = leaderboard(load_bundle(bundles["val"]), validated=True, methods=["ash-s"])
    assert row["params"] == want.frame()["params"].iloc[0]
    assert row["parameters"].startswith("validated on id_val 'id_v'")
    assert "were chosen on id_val 'id_v' vs ood_val 'ov_a', 'ov_b'" in texts(at, "caption")
    at.toggle(key="val").set_value(False).run()
    ok(at)
    assert set(board_table(at)["parameters"]) == {"default"}


def test_toggle_is_offered_in_the_view_for_a_method_without_p(bundles):
    at = ok(run(bundles["val"], view="leaderboard", method="none", val=1))
    assert at.toggle(key="val").value is True
    assert "validated on" in " ".join(board_table(at)["parameters"])


def test_bundle_without_id_fit_lists_unavailable_methods_with_the_reason(bundles):
    at = ok(run(bundles["nofit"], view="leaderboard", val=1))
    ranked = set(board_table(at)["method"])
    assert "knn" not in ranked and "ash-s" in ranked
    info = " ".join(i.value for i in at.info).replace("\\", "")
    assert "knn: knn is fitted on ID training features (an id_fit split)" in info
    assert "Nothing validated" in texts(at, "caption")


def test_demo_mnist_without_id_fit_renders_board_and_overlay(bundles):
    at = ok(run(MNIST, view="leaderboard"))
    ranked = set(board_table(at)["method"])
    assert {"none", "ash-s", "gen"} <= ranked and "react" not in ranked
    assert "react" in " ".join(i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1
    at = ok(run(MNIST, view="compare", cmode="methods", cmethods="ash-s,knn,gen"))
    assert at.multiselect(key="cmethods").value == ["ash-s", "gen"]
    assert "Left out: knn" in texts(at, "warning")
    assert len(at.get("plotly_chart")) == 2


def test_compare_methods_overlay_equals_evaluate(bundles):
    at = ok(run(bundles["main"], view="compare", cmode="methods", cmethods="none,ash-b,knn",
                engine="exact", p=80, method="ash-b"))
    (table,) = [d.value for d in at.dataframe if "pooled/auroc" in d.value.columns]
    assert list(table["setting"]) == ["none (default)", "ash-b p=80 local (slider)",
                                      "knn k=50 (default)"]
    bundle = load_bundle(bundles["main"])
    for setting, (method, p) in zip(table["setting"], [("none", None), ("ash-b", 80),
                                                       ("knn", None)], strict=True):
        ref = evaluate(bundle, Setting(method, {} if p is None else {"p": p}))
        got = table[table["setting"] == setting].iloc[0]
        assert got["average/auroc"] == pytest.approx(100 * ref.average["auroc"], abs=1e-9)
    assert len(at.get("plotly_chart")) == 2
    at.multiselect(key="cmethods").unselect("knn").run()
    assert ok(at).query_params["cmethods"] == "none,ash-b"


def test_cmethods_in_the_url_are_bounded_and_reported(bundles):
    at = ok(run(bundles["main"], view="compare", cmode="methods",
                cmethods="bogus,none,ash-s,ash-p,ash-b,gen"))
    notes = texts(at, "warning")
    assert "ignored unknown method(s) in cmethods: 'bogus'" in notes
    assert "kept the first 4 of 5 methods" in notes
    assert at.multiselect(key="cmethods").value == ["none", "ash-s", "ash-p", "ash-b"]


def test_export_offers_the_leaderboard_and_the_report_includes_it(bundles):
    at = ok(run(bundles["val"], view="leaderboard", val=1, method="ash-s"))
    at.radio(key="view").set_value("export").run()
    ok(at)
    keys = [b.key for b in at.get("download_button")]
    assert {"dl_lb_csv", "dl_lb_latex", "dl_lb_markdown"} <= set(keys)
    assert at.checkbox(key="export_lb").value is True


def test_report_states_validated_parameters_and_holds_the_leaderboard(bundles):
    args = AppArgs((str(bundles["val"]),), None)
    policy = BundlePolicy.from_args(args)
    bundle = cache.get_bundle(str(bundles["val"]), policy)
    ood = [s.name for s in bundle.ood_splits]
    state = State(bundle=str(bundles["val"]), method="ash-s", p=80, val=1, step=10)
    ctx = Context(state=state, args=args, bundles=[str(bundles["val"])], policy=policy,
                  bundle=bundle, ood=ood, colors=figures.set_colors(ood))
    html = build_html(ctx, None, with_board=True)
    assert "<h2>Leaderboard</h2>" in html and "Figure 1: ID accuracy" in html
    assert "were chosen on id_val &#x27;id_v&#x27; vs ood_val" in html  # the board's statement
    assert "validated parameters" in html  # the settings row of the shown method
    board = leaderboard(bundle, validated=True)
    knn = board.frame()[lambda d: d["method"] == "knn"].iloc[0]
    assert f"{100 * knn['average/auroc']:.2f}" in html
    assert "<h2>Leaderboard</h2>" not in build_html(ctx, None)


def overlay_table(at):
    (table,) = [d.value for d in at.dataframe if "pooled/auroc" in d.value.columns]
    return table


def test_compare_methods_overlay_uses_the_validated_parameters_of_the_board(bundles):
    # regression: the overlay drew every method at its defaults with the toggle on
    methods = ["none", "ash-s", "gen", "ash-b"]
    at = ok(run(bundles["val"], view="compare", cmode="methods", cmethods=",".join(methods),
                engine="exact", method="ash-b", p=80, val=1))
    table = overlay_table(at)
    board = leaderboard(load_bundle(bundles["val"]), validated=True, methods=methods)
    rows = {r.method: r for r in board.rows}
    assert rows["gen"].validated and rows["gen"].params != get_method("gen").defaults
    want = [f"{rows[m].label} ({'validated' if rows[m].validated else 'default'})"
            for m in methods]
    assert list(table["setting"]) == want
    assert list(table["parameters"]) == [rows[m].source for m in methods]
    for m, (_, got) in zip(methods, table.iterrows(), strict=True):
        assert got["average/auroc"] == pytest.approx(100 * rows[m].result.average["auroc"],
                                                     abs=1e-9)
        assert got["id_acc"] == pytest.approx(100 * rows[m].result.id_accuracy["shaped"],
                                              abs=1e-9)
    at.toggle(key="val").set_value(False).run()
    assert list(overlay_table(ok(at))["setting"]) == [
        "none (default)", "ash-s p=65 local (default)", "gen gamma=0.1 M=100 (default)",
        "ash-b p=80 local (slider)"]


def test_compare_methods_without_validation_splits_says_nothing_was_validated(bundles):
    at = ok(run(bundles["main"], view="compare", cmode="methods", cmethods="none,ash-s",
                val=1, method="none"))
    assert at.toggle(key="val").value is True  # offered in the view for a method without p
    assert list(overlay_table(at)["setting"]) == ["none (default)", "ash-s p=65 local (default)"]
    assert "Nothing validated" in " ".join(i.value for i in at.info)
