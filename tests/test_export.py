"""Stakeholder exports: the stand-alone report (HTML and PDF), tables, static figures.

The PDF and static-figure tests need Chromium (/usr/bin/chromium, or BROWSER_PATH);
CI always has it (`make browser`), locally they skip with a reason when it is missing.
Static figures also need kaleido 1.x: where it is missing the test checks the HTML
fallback instead, and that the page says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ash_core import Evaluator, Setting, load_bundle
from ash_core.reports.tables import (
    best_settings,
    column_label,
    evaluation_frame,
    headline,
    render_labelled,
    tradeoff_sentence,
)
from ash_core.sweep import sweep
from dashboard import cache, export, figures
from dashboard.config import AppArgs
from dashboard.paths import BundlePolicy
from dashboard.state import State
from dashboard.views import export as export_view
from dashboard.views.common import Context

REPO = Path(__file__).resolve().parents[1]


def _browser_or_skip() -> str:
    path = export.browser_path()
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must have Chromium (make browser installs it)")
        pytest.skip("no Chromium (install it with `make browser` or set BROWSER_PATH)")
    return path


@pytest.fixture(scope="module")
def ev(synthetic_bundle):
    return Evaluator(load_bundle(synthetic_bundle), warn=False)


@pytest.fixture(scope="module")
def ctx(synthetic_bundle):
    args = AppArgs((str(synthetic_bundle),), None)
    policy = BundlePolicy.from_args(args)
    bundle = cache.get_bundle(str(synthetic_bundle), policy)
    state = State(bundle=str(synthetic_bundle), method="ash-s", p=80, cmode="setting",
                  bmethod="ash-b", bp=70, step=10)
    ood = [s.name for s in bundle.ood_splits]
    return Context(state=state, args=args, bundles=[str(synthetic_bundle)], policy=policy,
                   bundle=bundle, ood=ood, colors=figures.set_colors(ood))


@pytest.fixture(scope="module")
def report(ctx) -> str:
    return export_view.build_html(ctx, link="http://127.0.0.1:8501/?p=80")


def test_column_labels_carry_units():
    assert column_label("auroc") == "AUROC (%)"
    assert column_label("fpr95_delta") == "Δ FPR95 (pp)"
    assert column_label("average/auroc") == "avg AUROC (%)"
    assert column_label("dtd/fpr95") == "dtd FPR95 (%)"
    assert column_label("ood_set") == "OOD set" and column_label("other") == "other"
    df = pd.DataFrame({"ood_set": ["a"], "auroc": [0.91234], "auroc_delta": [-0.0123]})
    md = render_labelled(df, "markdown")
    assert "| OOD set | AUROC (%) | Δ AUROC (pp) |" in md and "| a | 91.23 | -1.23 |" in md
    assert "auroc_delta" in render_labelled(df, "csv")  # CSV keeps machine names
    assert "Δ AUROC (pp)" in export.table_text(df, "latex")


def test_plain_language_sentences(ev):
    r, b = ev.evaluate(Setting("ash-s", {"p": 80})), ev.evaluate(Setting("none"))
    frame = evaluation_frame(r.to_dict(), b.to_dict())
    text = headline(frame, r.id_accuracy, "ash-s p=80")
    avg = frame.iloc[-1]
    assert f"to {100 * avg['auroc']:.2f}%" in text and "Over 2 OOD set(s)" in text
    assert f"({100 * avg['auroc_delta']:+.2f} pp)" in text and "ID accuracy goes" in text
    sw = sweep(ev.bundle, ["none", "ash-p", "ash-s"], [0, 50, 90], evaluator=ev)
    best = best_settings(sw)
    assert list(best["method"]) == ["none", "ash-p", "ash-s"]
    top = best.loc[best["average/auroc"].idxmax()]
    assert f"is {100 * top['average/auroc']:.2f}%" in tradeoff_sentence(sw)


@pytest.mark.parametrize(("link", "public"), [
    ("http://localhost:8501/?p=3", False), ("http://127.0.0.1:8501/", False),
    ("http://192.168.1.20:8501/", False), ("http://10.0.0.2/", False),
    ("http://[::1]:8501/", False), ("http://box.local/", False), ("file:///tmp/x", False),
    ("https://ash.example.org/?p=3", True), ("http://8.8.8.8/", True), ("?p=3", True),
    ("", False), (None, False)])
def test_only_public_links_reach_a_report(link, public):
    assert export.is_public_link(link) is public


def test_report_stands_alone(report, ctx):
    # regression: the report was the overview only, linked to localhost, had
    # no summary, no definitions, raw column names and no version
    text = re.sub(r"<[^>]+>", " ", report)
    for needle in ("Summary", "This report compares ash-s p=80 local with no shaping",
                   "Over 2 OOD set(s)", "Across the sweep, the best avg AUROC",
                   "How to read the numbers", "FPR95, ID as positive (used in this report)",
                   "FPR95, OOD as positive (OpenOOD)", "percentage points (pp)",
                   "Trade-off over p", "Best p per method", "Comparison",
                   "B = synthetic: ash-b p=70 local", "Δ AUROC (pp)", "AUROC (%)",
                   f"ASH Explorer {export.app_version()}", "Bundle provenance"):
        assert needle in text, needle
    assert "127.0.0.1" not in report and "localhost" not in report
    assert "<script src=\"http" not in report  # plotly.js embedded, no network
    assert report.count("Plotly.newPlot") == 4 + 2 + 1  # results, trade-off, comparison
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    if commit:
        assert f"commit {commit}" in text
    public = export_view.build_html(ctx, link="https://ash.example.org/?p=80")
    assert "https://ash.example.org/?p=80" in public


def test_report_pdf_is_printed_with_its_content(report):
    _browser_or_skip()
    pdf = export.report_pdf(report)
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    if shutil.which("pdftotext"):
        out = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                             check=True).stdout.decode()
        for needle in ("Summary", "How to read the numbers", "Trade-off over p",
                       "Comparison", "AUROC (%)"):
            assert needle in out, needle
    else:
        assert pdf.count(b"/Type /Page") >= 2


def test_report_pdf_without_a_browser_says_what_to_do(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert export.browser_path() is None and not export.renderer_available()
    with pytest.raises(export.AshError, match="BROWSER_PATH"):
        export.report_pdf("<html></html>")


def test_static_figures_or_the_html_fallback(ev):
    r = ev.evaluate(Setting("ash-s", {"p": 80}))
    fig = figures.compare_figure(evaluation_frame(r.to_dict()), evaluation_frame(r.to_dict()),
                                 "A", "B", "id", theme="light")
    if not export.renderer_available():
        data, mime, ext = export.figure_bytes(fig, "png")
        assert (mime, ext) == ("text/html", "html") and b"<html>" in data
        return
    magic = {"png": b"\x89PNG", "svg": b"<svg", "pdf": b"%PDF"}
    for fmt, head in magic.items():
        data, mime, ext = export.figure_bytes(fig, fmt)
        assert ext == fmt and mime == export.FIGURE_FORMATS[fmt] and data.startswith(head)
        assert len(data) > 3_000


def test_export_page_says_when_figures_fall_back_to_html(synthetic_bundle, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(synthetic_bundle.parent))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.query_params.update({"bundle": str(synthetic_bundle), "view": "export"})
    at.run()
    assert not at.exception
    assert any("interactive HTML" in i.value for i in at.info)
    pdf = next(b for b in at.get("download_button") if b.key == "dl_report_pdf")
    assert pdf.proto.disabled


def test_every_figure_file_is_stamped_and_its_data_exports(ev):
    # regression: exported PNGs did not name the bundle, the method or the setting
    import plotly.graph_objects as go

    from dashboard.figure_style import stamped
    r = ev.evaluate(Setting("ash-s", {"p": 80}))
    frame = evaluation_frame(r.to_dict(), ev.evaluate(Setting("none")).to_dict())
    fig = figures.overview_figure(frame, {}, "ash-s p=80 local", "id", theme="light")
    out = stamped(fig, "synthetic (content abc): ash-s p=80 local")
    assert out.layout.title.text.startswith("<b>synthetic (content abc): ash-s p=80 local</b>")
    assert fig.layout.title.text in out.layout.title.text  # the figure's own title kept
    grew = out.layout.height - fig.layout.height
    assert grew > 0 and out.layout.margin.t - fig.layout.margin.t == grew  # plot area kept
    assert out.layout.legend.y < fig.layout.legend.y  # the legend moves down with the title
    assert fig.layout.title.text != out.layout.title.text  # the input is not changed
    data = export.figure_frame(fig)
    shaped = data[data["name"] == "ash-s p=80 local"]
    assert list(shaped["x"])[: len(frame)] == list(frame["ood_set"])
    assert shaped["y"].iloc[0] == pytest.approx(100 * frame["auroc"].iloc[0])
    heat = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]], x=["a", "b"], y=["r", "s"]))
    cells = export.figure_frame(heat)
    assert len(cells) == 4 and cells.set_index(["x", "y"]).loc[("b", "s"), "z"] == 4
    assert export.light(heat).layout.template.layout.paper_bgcolor is not None


def test_report_redacts_absolute_paths():
    from dashboard.report_html import redact_paths
    got = redact_paths({"weights": "/home/me/w.pt", "rel": "splits/a.safetensors",
                        "scale": "1/255", "list": ["C:\\data\\x.th", "~/y"]})
    assert got == {"weights": ".../w.pt", "rel": "splits/a.safetensors", "scale": "1/255",
                   "list": [".../x.th", ".../y"]}


def test_report_holds_the_comparison_across_bundles_on_request(ctx, report):
    full = export_view.build_html(ctx, link=None, with_across=True)
    text = re.sub(r"<[^>]+>", " ", full)
    assert "Across bundles" not in re.sub(r"<[^>]+>", " ", report)  # only when asked
    for needle in ("Across bundles", "at its declared defaults", "Gain or loss against no "
                   "shaping", "Near-OOD and far-OOD AUROC and ID accuracy"):
        assert needle in text, needle
    assert full.count("Plotly.newPlot") == report.count("Plotly.newPlot") + 2


def test_report_summary_says_where_the_setting_gains_and_loses(report):
    text = re.sub(r"<[^>]+>", " ", report)
    assert re.search(r"ash-s p=80 local (gains|loses) AUROC on \d+ of 2 OOD set", text)
