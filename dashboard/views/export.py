"""Present: the current view as a self-contained HTML report; tables and figures as files."""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from dashboard import export, figures, services
from dashboard.views.common import Context


def report_parts(ctx: Context):
    """Settings, tables and figures of the current view (shared by the page and tests)."""
    s = ctx.state
    result, base = ctx.result(), ctx.baseline()
    frame = services.metrics_frame(result, base)
    acc = result.id_accuracy
    settings = {
        "bundle": ctx.bundle.name, "bundle path": str(ctx.bundle.root),
        "content hash": ctx.bundle.content_hash, "ID split": ctx.bundle.id_split.name,
        "OOD sets": ", ".join(ctx.ood), "method": s.method,
        "p": "-" if s.p_value is None else f"{s.p_value:g}", "threshold": result.threshold,
        "score": s.score, "numbers": s.engine,
        "FPR convention": f"{s.convention} ({figures.convention_label(s.convention)})",
        "ID accuracy shaped": "-" if acc["shaped"] is None else f"{100 * acc['shaped']:.2f}%",
        "ID accuracy unshaped": "-" if acc["unshaped"] is None
        else f"{100 * acc['unshaped']:.2f}%",
    }
    hb, ha, thr_b, thr_a = services.distribution_data(ctx.bundle, ctx.ood, s.method, s.p_value,
                                                    s.threshold, s.score, s.convention,
                                                    engine=s.engine)
    figs = {
        "Overview": figures.overview_figure(frame, ctx.colors, ctx.setting, s.convention),
        "Score distributions": figures.distributions_figure(
            hb, ha, ctx.bundle.id_split.name, thr_b, thr_a, ctx.colors, ctx.setting, s.score),
        **{f"{k.upper()} curves": figures.curves_figure(
            services.curve_data(result, base, ctx.bundle, ctx.ood, k, engine=s.engine), k,
            ctx.colors, ctx.setting, s.convention) for k in ("roc", "pr")},
    }
    return settings, frame, figs


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader("Export the current view")
    settings, frame, figs = report_parts(ctx)
    query = urlencode(s.to_query(), safe=",/")
    try:
        base = (st.context.url or "").split("?")[0]
    except Exception:  # noqa: BLE001 - no browser context (tests, bare mode)
        base = ""
    link = f"{base}?{query}"
    st.markdown("**Link to this view** (opens exactly this state):")
    st.code(link, language=None)
    caption = (f"{ctx.bundle.name}: {ctx.setting}, score={s.score}, FPR convention="
               f"{s.convention}; values in %")
    html = export.build_report(f"ASH Explorer: {ctx.bundle.name}, {ctx.setting}", settings,
                               services.provenance(ctx.bundle),
                               {"Metrics per OOD set (deltas against no shaping)": frame},
                               figs, notes=caption, link=link)
    st.download_button("Download HTML report", html, file_name="ash_report.html",
                       mime="text/html", key="dl_report", type="primary")
    st.markdown("**Tables** (CSV keeps fractions; LaTeX and Markdown show %)")
    cols = st.columns(len(export.TABLE_FORMATS))
    for col, (fmt, (mime, ext)) in zip(cols, export.TABLE_FORMATS.items(), strict=True):
        col.download_button(export.TABLE_LABELS[fmt],
                            export.table_text(frame, fmt, caption), file_name=f"ash_metrics.{ext}",
                            mime=mime, key=f"dl_{fmt}")
    tab_fmt = st.radio("Preview", list(export.TABLE_FORMATS), key="export_preview",
                       horizontal=True, index=2, format_func=export.TABLE_LABELS.get)
    st.code(export.table_text(frame, tab_fmt, caption), language=None)
    st.markdown("**Figures**")
    if export.renderer_available():
        fmt = st.radio("Figure format", ["png", "svg"], key="fig_format", horizontal=True)
    else:
        fmt = "html"
        st.info("No static image renderer (kaleido) is installed, so figures download as "
                "interactive HTML; `pip install kaleido` enables PNG/SVG.", icon=":material/info:")
    cols = st.columns(len(figs))
    for i, (col, (name, fig)) in enumerate(zip(cols, figs.items(), strict=True)):
        data, mime, ext = export.figure_bytes(fig, fmt)
        col.download_button(name, data, file_name=f"ash_{name.lower().replace(' ', '_')}.{ext}",
                            mime=mime, key=f"dl_fig_{i}")
