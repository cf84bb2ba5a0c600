"""Present: the current view as a stand-alone HTML or PDF report; tables and figures as files.

Reports and figure files are built only when their button is clicked (deferred
download data), so moving p on this page costs no rendering.
"""

from __future__ import annotations

import os
from urllib.parse import urlencode

import streamlit as st

from ash_core.reports.tables import best_settings, evaluation_frame, headline, tradeoff_sentence
from dashboard import cache, export, figures, figures_methods, offer, plotdata, replay, validation
from dashboard.param_marks import add_param_marks
from dashboard.views import leaderboard
from dashboard.views.common import Context

#: a public address of the dashboard, for the link in reports (never a local one)
PUBLIC_URL_ENV = "ASH_PUBLIC_URL"


def report_parts(ctx: Context):
    """Settings, the metrics frame and the figures of the current setting (light theme,
    for paper and files)."""
    s = ctx.state
    result, base = ctx.result(), ctx.baseline()
    frame = cache.metrics_frame(result, base)
    acc = result.id_accuracy
    settings = {
        "bundle": ctx.bundle.name, "content hash": ctx.bundle.content_hash,
        "ID split": f"{ctx.bundle.id_split.name} ({len(ctx.bundle.id_split)} samples)",
        "OOD sets": ", ".join(ctx.ood), "method": s.method,
        "p (pruning percentile)": "-" if s.p_value is None else f"{s.p_value:g}",
        "threshold": result.threshold_mode, "score": s.score, "numbers": ctx.replay().label,
        "FPR convention": f"{s.convention} ({figures.convention_label(s.convention)})",
        "ID accuracy shaped": "-" if acc["shaped"] is None else f"{100 * acc['shaped']:.2f}%",
        "ID accuracy unshaped": "-" if acc["unshaped"] is None
        else f"{100 * acc['unshaped']:.2f}%",
        **validation.export_rows(ctx.marks()),
    }
    hb, ha, thr_b, thr_a = plotdata.histograms(ctx.bundle, result, base)
    mets = {n: (base.ood[n], result.ood[n]) for n in ctx.ood}
    figs = {
        "Overview": figures.overview_figure(frame, ctx.colors, ctx.setting, s.convention,
                                            theme="light"),
        "Score distributions": figures.distributions_figure(
            hb, ha, ctx.bundle.id_split.name, thr_b, thr_a, ctx.colors, ctx.setting, s.score,
            theme="light"),
        **{f"{k.upper()} curves": figures.curves_figure(
            plotdata.curves(ctx.bundle, result, base, k), k,
            ctx.colors, ctx.setting, s.convention, metrics=mets, theme="light")
           for k in ("roc", "pr")},
    }
    return settings, frame, figs


def _tradeoff_section(ctx: Context) -> export.Section:
    s = ctx.state
    try:
        df = plotdata.sweep_frame(ctx.bundle, ctx.ood, plotdata.grid_for(s.step), s.threshold,
                                  s.board_score, s.convention, offer.sweepable_for(ctx.bundle))
    except Exception as exc:  # noqa: BLE001 - the rest of the report still stands
        return export.Section("Trade-off over p", f"The sweep failed: "
                                                  f"{cache.error_text(exc)}")
    front = plotdata.pareto(df, "average/auroc")
    return export.Section(
        "Trade-off over p",
        tradeoff_sentence(df) + f" Every method at p = 0, {s.step}, {2 * s.step}, ... < 100.",
        {"Best p per method (by average AUROC)": best_settings(df)},
        {"Trade-off": add_param_marks(
            figures.tradeoff_figure(df, s.p_value, s.convention, theme="light"),
            ctx.marks(), method=s.method),
         "Pareto view": figures.pareto_figure(df, front, "average/auroc", s.convention,
                                              theme="light")})


def _compare_section(ctx: Context) -> export.Section:
    """The Compare view's pair (B minus A), as set there; a failure becomes a note."""
    s = ctx.state
    res_a = ctx.result()
    label_a = f"{ctx.bundle.name}: {ctx.setting}"
    try:
        if s.cmode == "bundle" and s.bbundle:
            bundle_b = cache.get_bundle(s.bbundle, ctx.policy)
            ood_b = [n for n in ctx.ood if n in cache.nonempty_ood(bundle_b)[0]]
            res_b = replay.replay(bundle_b, ood_b, s.setting(), s.engine).result
            label_b = f"{bundle_b.name}: {ctx.setting}"
        else:
            res_b = replay.replay(ctx.bundle, ctx.ood, s.b_setting(), s.engine).result
            label_b = f"{ctx.bundle.name}: {s.setting_label(s.bmethod, s.bp_value, s.bthreshold)}"
        fa, fb = evaluation_frame(res_a.to_dict()), evaluation_frame(res_b.to_dict())
        try:
            diff = evaluation_frame(res_b.to_dict(), res_a.to_dict())
        except Exception:  # noqa: BLE001 - different OOD sets: no per-set difference
            diff = fb
    except Exception as exc:  # noqa: BLE001
        return export.Section("Comparison", f"The comparison failed: "
                                            f"{cache.error_text(exc)}")
    return export.Section(
        "Comparison", f"A = {label_a}; B = {label_b}. Differences are B minus A.",
        {"A": fa, "B (Δ = B minus A)": diff},
        {"A vs B": figures.compare_figure(fa, fb, label_a, label_b, s.convention,
                                          theme="light")})


def leaderboard_section(ctx: Context) -> export.Section:
    """Every method side by side, which parameters were validated on what, and Figure 1
    (computed here when the Leaderboard view has not computed it yet)."""
    try:
        board = leaderboard.cached_board(ctx) or leaderboard.get_board(ctx)
        metric = ctx.state.pareto.split("/")[-1]
        data = leaderboard.figure1_data(ctx, board, metric)
    except Exception as exc:  # noqa: BLE001 - the rest of the report still stands
        return export.Section("Leaderboard", f"The leaderboard failed: "
                                             f"{cache.error_text(exc)}")
    missing = "; ".join(f"{m}: {why}" for m, why in board.unavailable.items())
    intro = leaderboard.caption(ctx, board) + (f" Not ranked: {missing}." if missing else "")
    fig = figures_methods.figure1(data, ctx.state.convention, theme="light")
    return export.Section("Leaderboard", intro,
                          {"Every method (averages, ID accuracy, per OOD set)":
                           board.frame(seconds=False)},
                          {"Figure 1: ID accuracy vs average OOD performance": fig})


def build_html(ctx: Context, link: str | None, with_board: bool = False) -> str:
    """The whole report for the current state (summary, results, trade-off, comparison,
    and the leaderboard when ``with_board``)."""
    s = ctx.state
    settings, frame, figs = report_parts(ctx)
    result = ctx.result()
    what = (f"This report compares {ctx.setting} with no shaping on the bundle "
            f"{ctx.bundle.name} (ID: {ctx.bundle.id_split.name}; OOD: {', '.join(ctx.ood)}), "
            f"scoring with {s.score}.")
    trade = _tradeoff_section(ctx)
    summary = [what, headline(frame, result.id_accuracy, ctx.setting, s.convention)]
    if not trade.intro.startswith("The sweep failed"):
        summary.append(trade.intro.split(" Every method")[0])
    return export.build_report(
        f"ASH Explorer: {ctx.bundle.name}, {ctx.setting}", settings,
        cache.provenance(ctx.bundle),
        {"Metrics per OOD set (Δ against no shaping)": frame}, figs, link=link,
        summary=summary, convention=s.convention,
        sections=[trade, _compare_section(ctx),
                  *([leaderboard_section(ctx)] if with_board else [])],
        version=export.app_version())


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader("Export the current view")
    query = urlencode(s.to_query(), safe=",/")
    try:
        here = (st.context.url or "").split("?")[0]
    except Exception:  # noqa: BLE001 - no browser context (tests, bare mode)
        here = ""
    st.markdown("**Link to this view** (opens exactly this state):")
    st.code(f"{here}?{query}", language=None)
    _report_buttons(ctx, query)
    _table_buttons(ctx)
    _figure_buttons(ctx)


def _report_buttons(ctx: Context, query: str) -> None:
    st.markdown("**Report** for someone who never saw the app: summary, tables, figures, "
                "trade-off, comparison, definitions")
    public = st.text_input("Public address of this dashboard (optional)",
                           os.environ.get(PUBLIC_URL_ENV, ""), key="export_public_url",
                           help="the report links to this view only at a public address; "
                                "a local one (localhost, private network) is left out")
    link = f"{public.rstrip('/')}/?{query}" if public else None
    if link and not export.is_public_link(link):
        st.caption("That address is local or private: the report will not link to it.")
    board = st.checkbox("Include the leaderboard (every method and Figure 1)", key="export_lb",
                        value=leaderboard.cached_board(ctx) is not None,
                        help="computed when the report is built if the Leaderboard view "
                             "has not computed it yet (about a minute with KNN on the demo "
                             "bundles)")
    c1, c2 = st.columns(2)
    c1.download_button("Download HTML report", lambda: build_html(ctx, link, board),
                       file_name="ash_report.html", mime="text/html", key="dl_report",
                       type="primary", on_click="ignore")
    pdf_ok = export.browser_path() is not None
    c2.download_button("Download PDF report",
                       lambda: export.report_pdf(build_html(ctx, link, board)),
                       file_name="ash_report.pdf", mime="application/pdf", key="dl_report_pdf",
                       disabled=not pdf_ok, on_click="ignore",
                       help=None if pdf_ok else "needs Chromium (set BROWSER_PATH)")


def _table_buttons(ctx: Context) -> None:
    s = ctx.state
    frame = cache.metrics_frame(ctx.result(), ctx.baseline())
    caption = (f"{ctx.bundle.name}: {ctx.setting}, score={s.score}, FPR convention="
               f"{s.convention}; values in %, Δ in pp against no shaping. "
               + " ".join(f"{k}: {v}" for k, v in validation.export_rows(ctx.marks()).items()))
    st.markdown("**Tables** (CSV keeps fractions and column names; LaTeX and Markdown show "
                "%, with units in the headers)")
    cols = st.columns(len(export.TABLE_FORMATS))
    for col, (fmt, (mime, ext)) in zip(cols, export.TABLE_FORMATS.items(), strict=True):
        col.download_button(export.TABLE_LABELS[fmt], export.table_text(frame, fmt, caption),
                            file_name=f"ash_metrics.{ext}", mime=mime, key=f"dl_{fmt}")
    _leaderboard_tables(ctx)
    tab_fmt = st.radio("Preview", list(export.TABLE_FORMATS), key="export_preview",
                       horizontal=True, index=2, format_func=export.TABLE_LABELS.get)
    st.code(export.table_text(frame, tab_fmt, caption), language=None)


def _leaderboard_tables(ctx: Context) -> None:
    """The leaderboard's table files, once the Leaderboard view has computed it."""
    board = leaderboard.cached_board(ctx)
    if board is None:
        st.caption("The leaderboard's tables appear here once the Leaderboard view has "
                   "computed it for this selection.")
        return
    leaderboard.table_downloads(ctx, board, key="dl_lb")


def _figure_buttons(ctx: Context) -> None:
    st.markdown("**Figures** (light theme, 1100 px wide)")
    if export.renderer_available():
        fmt = st.radio("Figure format", list(export.FIGURE_FORMATS), key="fig_format",
                       horizontal=True, format_func=str.upper)
        mime, ext = export.FIGURE_FORMATS[fmt], fmt
    else:
        fmt, mime, ext = "html", "text/html", "html"
        st.info("No static image renderer here (needs kaleido 1.x and Chromium; set "
                "BROWSER_PATH to the browser), so figures download as interactive HTML.",
                icon=":material/info:")
    names = ["Overview", "Score distributions", "ROC curves", "PR curves"]
    cols = st.columns(len(names))
    for i, (col, name) in enumerate(zip(cols, names, strict=True)):
        def data(name=name) -> bytes:
            fig = report_parts(ctx)[2][name]
            if fmt == "html":
                return export.figure_html(fig, full=True).encode()
            return export.static_figure(fig, fmt)
        col.download_button(name, data, file_name=f"ash_{name.lower().replace(' ', '_')}.{ext}",
                            mime=mime, key=f"dl_fig_{i}", on_click="ignore")
