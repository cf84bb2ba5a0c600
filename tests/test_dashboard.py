"""Dashboard logic without a running app: URL state, arguments, exports, the CLI launcher."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from ash_core import Evaluator, list_methods, load_bundle
from ash_core.cli import build_parser
from ash_core.cli import dashboard as cli_dashboard
from ash_core.report import evaluation_frame
from dashboard import export, figures, services
from dashboard.state import VIEWS, State


def test_state_round_trips_through_the_url():
    s = State(bundle="b", ood=("x", "y"), method="ash-b", p=72, threshold="global",
              score="msp", convention="ood", view="curves", iset="x", idx=4, imode="fp",
              step=10, cmode="bundle", bmethod="react", bp=95, bthreshold="local",
              bbundle="c")
    q = s.to_query()
    assert all(isinstance(v, str) for v in q.values())
    back, notes = State.from_query(q)
    assert back == s and notes == []
    short = State(bundle="b", p=80).to_query()
    assert set(short) == {"bundle", "method", "p", "view"}
    assert State.from_query(short)[0] == State(bundle="b", p=80)
    assert len(State(bundle="b").to_query(compact=False)) == len(fields(State)) - 1  # no ood


def test_state_rejects_bad_values_with_notes():
    s, notes = State.from_query({"method": "bogus", "p": "250", "threshold": "nope",
                                 "view": "x", "ood": "a,zz"}, ood_options=["a", "b"],
                                default_bundle="demo")
    assert s.method in list_methods() and s.p == 65 and s.view == "overview"
    assert s.bundle == "demo" and s.ood == ("a",)
    assert len(notes) == 5 and any("zz" in n for n in notes)


@pytest.mark.parametrize("bad", ["inf", "-inf", "1e999", "nan", "x"])
def test_state_ignores_non_finite_integers_in_the_url(bad):
    # regression: int(float("inf")) raised OverflowError, so ?p=inf crashed the page
    s, notes = State.from_query({"p": bad, "idx": bad, "bp": bad, "method": "ash-b"})
    assert (s.p, s.idx, s.bp) == (65, 0, 90)
    assert len(notes) == 3 and all(bad in n for n in notes)


def test_state_threshold_follows_the_method():
    s, _ = State.from_query({"method": "react", "threshold": "global"})
    assert s.threshold == "local"  # react has no global mode
    assert State(method="none").p_value is None and State(method="ash-p", p=3).p_value == 3.0
    assert State(method="ash-s", p=90).setting_label() == "ash-s p=90 local"
    assert set(VIEWS) >= {"overview", "distributions", "curves", "tradeoff", "inspector",
                          "compare", "export"}


def test_app_args_from_argv_and_env(tmp_path):
    a = services.parse_app_args(["b1", "b2", "--data-root", "/d"], env={})
    assert a.bundles == ("b1", "b2") and a.data_root == "/d"
    e = services.parse_app_args([], env={services.ENV_BUNDLES: "x:y",
                                         services.ENV_DATA_ROOT: "/r"})
    assert e.bundles == ("x", "y") and e.data_root == "/r"


def test_discover_bundles_lists_cached_features(tmp_path, monkeypatch, synthetic_bundle):
    import shutil

    (tmp_path / "cached_features").mkdir()
    shutil.copytree(synthetic_bundle, tmp_path / "cached_features" / "syn")
    (tmp_path / "cached_features" / "not_a_bundle").mkdir()
    monkeypatch.chdir(tmp_path)
    found = services.discover_bundles(["given"])
    assert found[0] == "given" and "cached_features/syn" in found
    assert not any("not_a_bundle" in f for f in found)


def test_report_is_self_contained(synthetic_bundle):
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    r = ev.evaluate("ash-s", 80)
    frame = evaluation_frame(r.to_dict(), ev.evaluate("none").to_dict())
    fig = figures.overview_figure(frame, {}, "ash-s p=80", "id")
    html = export.build_report("Report <x>", {"method": "ash-s", "p": 80},
                               {"model": {"name": "synthetic"}}, {"Metrics": frame},
                               {"Overview": fig, "Again": fig}, link="?p=80")
    assert html.startswith("<!DOCTYPE html>") and "Report &lt;x&gt;" in html
    assert "<script src=\"http" not in html and "<script src=\"https" not in html
    assert html.count("Plotly.newPlot") == 2
    assert len(html) > 1_000_000  # plotly.js is embedded (once)
    assert f"{100 * r.average['auroc']:.2f}" in html
    assert "synthetic" in html and "?p=80" in html


def test_table_exports_reuse_the_cli_renderer():
    df = pd.DataFrame({"ood_set": ["a", "Average"], "auroc": [0.91234, 0.8], "fpr95": [0.1, 0.2]})
    csv = export.table_text(df, "csv")
    assert "0.91234" in csv
    md = export.table_text(df, "markdown", caption="cap")
    assert "| 91.23 |" in md and md.startswith("cap")
    tex = export.table_text(df, "latex")
    assert "\\begin{tabular}" in tex and "91.23" in tex
    with pytest.raises(ValueError):
        export.table_text(df, "xlsx")


def test_figure_bytes_falls_back_to_html():
    data, mime, ext = export.figure_bytes(figures.compare_figure(
        pd.DataFrame({"ood_set": ["a"], "auroc": [0.5], "fpr95": [0.5]}),
        pd.DataFrame({"ood_set": ["a"], "auroc": [0.6], "fpr95": [0.4]}), "A", "B", "id"),
        "png")
    if export.renderer_available():
        assert ext in ("png", "html")
    else:
        assert (mime, ext) == ("text/html", "html") and b"<html>" in data


def test_cli_dashboard_builds_the_streamlit_command():
    args = build_parser().parse_args(["dashboard", "b1", "b2", "--data-root", "/d",
                                      "--port", "8765"])
    assert args.func is cli_dashboard.run
    cmd = cli_dashboard.command(args)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboard/app.py")
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--") + 1:] == ["b1", "b2", "--data-root", "/d"]
    default = cli_dashboard.command(argparse.Namespace(bundles=[], data_root=None, port=1,
                                                       address="127.0.0.1"))
    assert default[-1] == cli_dashboard.DEFAULT_BUNDLE


def test_ash_core_does_not_import_the_dashboard():
    src = Path(cli_dashboard.__file__).read_text()
    assert not re.search(r"^\s*(from|import) dashboard", src, re.M)


def test_torch_threads_env_is_parsed_and_a_bad_value_ignored():
    # regression: a non-integer ASH_TORCH_THREADS crashed the dashboard at import
    assert services.torch_threads_from_env({}) is None
    assert services.torch_threads_from_env({"ASH_TORCH_THREADS": " 3 "}) == 3
    assert services.torch_threads_from_env({"ASH_TORCH_THREADS": "0"}) == 1
    with pytest.warns(UserWarning, match="ignoring ASH_TORCH_THREADS='four'"):
        assert services.torch_threads_from_env({"ASH_TORCH_THREADS": "four"}) is None
