"""The report's content for the current state: summary, settings, figures and sections.

Every figure is stamped with the bundle, the method and the setting (``stamp``), so a
page of the PDF or a figure file read alone says what it shows. No widgets here: the
Export view's buttons call ``build_html``.
"""

from __future__ import annotations

from ash_core.reports.gains import gain_sentences, groups_text
from ash_core.reports.tables import best_settings, evaluation_frame, headline, tradeoff_sentence
from dashboard import cache, export, figures, figures_methods, offer, plotdata, replay, validation
from dashboard.figure_style import stamped
from dashboard.param_marks import add_param_marks
from dashboard.views import across as across_view
from dashboard.views import leaderboard
from dashboard.views.common import Context
from dashboard.views.figure_io import stamp


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
        "OOD sets": ", ".join(ctx.ood),
        **({"OOD groups": groups_text(ctx.bundle.groups)} if ctx.bundle.groups else {}),
        "method": s.method,
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
    return settings, frame, {name: stamp(ctx, fig) for name, fig in figs.items()}


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
        {"Trade-off": stamp(ctx, add_param_marks(
            figures.tradeoff_figure(df, s.p_value, s.convention, theme="light"),
            ctx.marks(), method=s.method), f"every method over p (current: {ctx.setting})"),
         "Pareto view": stamp(ctx, figures.pareto_figure(
             df, front, "average/auroc", s.convention, theme="light"),
             f"every method over p (current: {ctx.setting})")})


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
        {"A vs B": stamp(ctx, figures.compare_figure(fa, fb, label_a, label_b, s.convention,
                                                     theme="light"),
                         f"A = {label_a}; B = {label_b}")})


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
    fig = stamp(ctx, figures_methods.figure1(data, ctx.state.convention, theme="light"),
                f"every method at its parameters (current: {ctx.setting})")
    return export.Section("Leaderboard", intro,
                          {"Every method (averages, ID accuracy, per OOD set)":
                           board.frame(seconds=False)},
                          {"Figure 1: ID accuracy vs average OOD performance": fig})


def across_section(ctx: Context) -> export.Section:
    """Every shaping method on every bundle the dashboard serves: the heatmaps, the gains
    against no shaping per bundle and group, and the table behind them."""
    try:
        data = across_view.compute(ctx)
    except Exception as exc:  # noqa: BLE001 - the rest of the report still stands
        return export.Section("Across bundles", f"The comparison across bundles failed: "
                                                f"{cache.error_text(exc)}")
    if data.frame.empty:
        return export.Section("Across bundles", "No bundle could be evaluated.")
    heat, gains = across_view.figures(data, "light")
    left = "; ".join(f"{k}: {v}" for k, v in data.left_out.items())
    names = ", ".join(data.bundles)
    return export.Section(
        "Across bundles",
        f"Bundles: {names}. {across_view.PARAMS_NOTE}" + (f" Left out: {left}." if left
                                                           else ""),
        {"Every method, bundle and group (AUROC, FPR95, ID accuracy)": data.frame},
        {"Near-OOD and far-OOD AUROC and ID accuracy": stamped(heat, f"{names}; every "
                                                                     "method at its defaults"),
         "Gain or loss against no shaping": stamped(gains, f"{names}; shaping methods vs "
                                                           "none")})


def build_html(ctx: Context, link: str | None, with_board: bool = False,
               with_across: bool = False) -> str:
    """The whole report for the current state (summary, results, trade-off, comparison,
    the leaderboard when ``with_board``, the comparison across bundles when
    ``with_across``)."""
    s = ctx.state
    settings, frame, figs = report_parts(ctx)
    result = ctx.result()
    what = (f"This report compares {ctx.setting} with no shaping on the bundle "
            f"{ctx.bundle.name} (ID: {ctx.bundle.id_split.name}; OOD: {', '.join(ctx.ood)}), "
            f"scoring with {s.score}.")
    trade = _tradeoff_section(ctx)
    summary = [what, headline(frame, result.id_accuracy, ctx.setting, s.convention),
               *gain_sentences(result, ctx.baseline(), ctx.setting)]
    if not trade.intro.startswith("The sweep failed"):
        summary.append(trade.intro.split(" Every method")[0])
    return export.build_report(
        f"ASH Explorer: {ctx.bundle.name}, {ctx.setting}", settings,
        cache.provenance(ctx.bundle),
        {"Metrics per OOD set (Δ against no shaping)": frame}, figs, link=link,
        summary=summary, convention=s.convention,
        sections=[trade, _compare_section(ctx),
                  *([leaderboard_section(ctx)] if with_board else []),
                  *([across_section(ctx)] if with_across else [])],
        version=export.app_version())
