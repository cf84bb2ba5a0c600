"""The PDF report of a demo bundle, read back with pypdf: what a stakeholder gets.

Every leaderboard column header is on a page (wide tables are wrapped, not cut), no page
is blank or a lone heading, no absolute path of the server shows, and the bundle's name
and content hash do. The report with the leaderboard costs ~25 s on ``mnist_cnn`` and
~2 min on each other demo bundle (exact KNN, cold), so ``mnist_cnn`` runs everywhere and
the others with ``ASH_TEST_FULL=1`` (they are not generated otherwise, not skipped).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from ash_core.reports.tables import column_label
from dashboard import cache, export, figures
from dashboard.config import AppArgs
from dashboard.paths import BundlePolicy
from dashboard.report_html import table_chunks
from dashboard.state import State
from dashboard.views import leaderboard
from dashboard.views.common import Context
from dashboard.views.report import build_html

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p.name for p in (REPO / "cached_features").iterdir()
                 if (p / "manifest.json").is_file())
#: what a page holds at least (characters of text) to count as not blank
MIN_PAGE_TEXT = 40
pytestmark = pytest.mark.slow


def squeeze(text: str) -> str:
    """Text without whitespace: a header wrapped over lines in a narrow cell still matches."""
    return re.sub(r"\s+", "", text)


def pdf_pages(pdf: bytes) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages]


def check_pdf(pages: list[str], columns: list[str], name: str, content_hash: str,
              paths: list[str]) -> None:
    """Every assertion the report must pass; a planted fault fails one of them."""
    text = squeeze(" ".join(pages))
    blank = [i for i, t in enumerate(pages) if len(t.strip()) < MIN_PAGE_TEXT]
    assert not blank, f"blank or lone-heading pages: {blank}"
    missing = [c for c in columns if squeeze(column_label(c)) not in text]
    assert not missing, f"leaderboard columns not in the PDF: {missing}"
    assert squeeze(name) in text and squeeze(content_hash) in text
    for path in paths:
        assert squeeze(path) not in text, f"absolute path {path!r} in the report"
    assert not re.search(r"(?<![\w.])/(?:home|work|tmp|root|usr|mnt|var)/", " ".join(pages))


def _context(path: Path) -> Context:
    args = AppArgs((str(path),), None)
    policy = BundlePolicy.from_args(args)
    bundle = cache.get_bundle(str(path), policy)
    ood = [s.name for s in bundle.ood_splits]
    state = State(bundle=str(path), method="ash-s", p=90)
    return Context(state=state, args=args, bundles=[str(path)], policy=policy, bundle=bundle,
                   ood=ood, colors=figures.set_colors(ood))


@pytest.fixture(scope="module")
def browser():
    if export.browser_path() is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must have Chromium (make browser installs it)")
        pytest.skip("no Chromium (install it with `make browser` or set BROWSER_PATH)")


def test_every_demo_bundle_is_checked():
    assert {"mnist_cnn", "cifar10_resnet20", "cifar10_resnet56", "tinyimagenet_mobilenetv2",
            "tinyimagenet_efficientnet_lite0", "cifar10_vit_hybrid"} <= set(BUNDLES)


@pytest.mark.parametrize("name", BUNDLES)
def test_demo_report_pdf_reads_back_whole(name, browser):
    path = REPO / "cached_features" / name
    ctx = _context(path)
    html = build_html(ctx, link=None, with_board=True)
    board = leaderboard.cached_board(ctx)
    assert board is not None
    columns = list(board.frame(seconds=False).columns)
    pdf = export.report_pdf(html)
    pages = pdf_pages(pdf)
    paths = [str(path.resolve()), str(REPO)]
    check_pdf(pages, columns, ctx.bundle.name, ctx.bundle.content_hash, paths)
    # the summary names the regression an average hides: each group's before and after
    if ctx.bundle.groups:
        assert "By group (AUROC)" in " ".join(pages).replace("\n", " ")
    assert "displayModeBar\":false" in html.replace(" ", "")  # no toolbar drawn or printed
    # every figure's title names the bundle, its content and the setting
    stamp = f"{ctx.bundle.name} (content {ctx.bundle.content_hash[:12]}): "
    assert html.count(stamp) >= html.count("Plotly.newPlot") >= 8
    assert f"{stamp}ash-s p=90 local" in html
    # a planted fault per check: each one makes check_pdf fail
    for planted in (dict(pages=[*pages, ""]), dict(columns=[*columns, "nowhere/auroc"]),
                    dict(content_hash=ctx.bundle.content_hash[::-1]),
                    dict(pages=[*pages, f"saved at {path.resolve()}/x"])):
        args = dict(pages=pages, columns=columns, name=ctx.bundle.name,
                    content_hash=ctx.bundle.content_hash, paths=paths) | planted
        with pytest.raises(AssertionError):
            check_pdf(**args)


def test_wide_tables_are_wrapped_with_every_column():
    import pandas as pd
    df = pd.DataFrame({"method": ["a"], "params": ["p=1"],
                       **{f"s{i}/auroc": [0.5] for i in range(25)}})
    chunks = table_chunks(df, max_columns=12)
    assert len(chunks) == 3 and all(len(c.columns) <= 12 for c in chunks)
    assert all(list(c.columns[:2]) == ["method", "params"] for c in chunks)
    rest = [col for c in chunks for col in c.columns[2:]]
    assert rest == list(df.columns[2:])  # every column once, in order
    assert len(table_chunks(df.iloc[:, :10])) == 1  # a narrow table stays whole


def test_a_wide_table_prints_every_column(browser):
    # the leaderboard of a bundle with many OOD sets: 2 + 2 * 14 columns on A4 landscape
    import pandas as pd
    sets = [f"ood_set_number_{i}" for i in range(14)]
    df = pd.DataFrame({"method": ["ash-s", "react"], "params": ["p=90", "p=90"],
                       **{f"{s}/{m}": [0.91, 0.42] for s in sets for m in ("auroc", "fpr95")}})
    html = export.build_report("wide", {"bundle": "wide"}, {}, {"Every method": df}, {})
    pages = pdf_pages(export.report_pdf(html))
    check_pdf(pages, list(df.columns), "wide", "wide", [str(REPO)])
