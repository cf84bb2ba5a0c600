"""``ash-explore sweep``: the paper-style table over methods and p."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ash_core.bundle import load_bundle
from ash_core.cli.common import (
    add_ci_args,
    add_device_arg,
    add_param_arg,
    add_setting_args,
    ci_options,
    parse_params,
    score_of,
    split_list,
)
from ash_core.cli.layer_args import add_layer_arg, check_layer_setting
from ash_core.device import resolve_device
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError
from ash_core.features import get_feature_score
from ash_core.layers import PENULTIMATE, layer_sweep_results
from ash_core.layers.sweep import sweep_frame
from ash_core.methods import get_method
from ash_core.reports.intervals import (
    bracketed_columns,
    ci_caption,
    result_ci,
    sweep_ci_frame,
    with_ci,
)
from ash_core.reports.tables import dumps_json, render_frame, sweep_columns, tie_warnings
from ash_core.sweep import parse_grid, sweep_results, sweep_settings, sweep_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="paper-style table: FPR95/AUROC per OOD set for each (method, p)",
        description="Evaluate every (method, p) of a grid on BUNDLE and print FPR95 and AUROC "
                    "per OOD set and their average, one row per (method, p), plus ID accuracy. "
                    "json prints one object per row, as `evaluate --format json` does for "
                    "that row's setting.",
    )
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--methods", default="ash-p,ash-b,ash-s",
                   help="comma-separated methods (default ash-p,ash-b,ash-s)")
    p.add_argument("--p", default="60:95:5",
                   help="grid START:STOP:STEP with STOP inclusive, or a comma list "
                        "(default 60:95:5)")
    add_param_arg(p)
    add_setting_args(p)
    add_device_arg(p)
    add_layer_arg(p)
    add_ci_args(p)
    p.add_argument("--format", choices=["table", "json", "csv", "latex", "markdown"],
                   default="table")
    p.add_argument("--cache-dir", default=None,
                   help="where score cubes are cached (default: BUNDLE/.cube_cache, or "
                        "~/.cache/ash-explorer/cubes when the bundle is read-only)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write cached score cubes (always recompute)")
    p.add_argument("--engine", choices=["auto", "native", "torch"], default="auto",
                   help="score-cube engine: native C kernel (built at first use), pure torch, "
                        "or auto (native when a C compiler is available)")
    p.set_defaults(func=run)


def fixed_params(methods: list[str], fixed: dict[str, float],
                 score: str = "energy") -> dict[str, dict[str, float]]:
    """The --param values per method: each method gets those it declares, and those of a
    score on features (``--score knn --param k=10``) that it combines with; a name none of
    them declares is an error (it would silently do nothing)."""
    declared = {m: get_method(m).param_names + score_param_names(m, score) for m in methods}
    for name in fixed:
        if name == "p":
            raise ParameterError("p is the swept parameter: give its grid with --p, not "
                                 "--param p.")
        if not any(name in names for names in declared.values()):
            raise ParameterError(f"--param {name}: none of {', '.join(methods)} has a parameter "
                                 f"{name!r} (`ash-explore methods` lists them).")
    return {m: {k: v for k, v in fixed.items() if k in declared[m]} for m in methods}


def score_param_names(method: str, score: str) -> tuple[str, ...]:
    """The parameters of ``score`` when ``method`` is combined with it (a score on
    features and a method that is not a score itself), else none."""
    feature = get_feature_score(score)
    if feature is None or score not in get_method(method).scores or method == score:
        return ()
    return tuple(q.name for q in feature.params)


def run(args: argparse.Namespace) -> int:
    ci_opts = ci_options(args)  # bad options are reported before the bundle is read
    device = resolve_device(args.device)
    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    evaluator = Evaluator(bundle, split_list(args.ood), device=device)
    methods = split_list(args.methods) or []
    for m in methods:  # a --score that one of the methods cannot take: refused, not ignored
        score_of(args, m)
    score = args.score or "energy"
    grid = parse_grid(args.p)
    fixed = fixed_params(methods, parse_params(args.param), score)
    bar = tqdm(total=0, desc="sweep", unit="pt", disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        # The cube build reports feature rows, then the lookups report points.
        bar.unit = "pt" if total <= len(methods) * len(grid) else "row"
        bar.total = total
        bar.n = done
        bar.refresh()

    results = None  # each row's EvalResult, where intervals or json need its scores
    if args.layer not in (None, PENULTIMATE):  # ASH inside the network (docs/where.md)
        check_layer_setting(args)
        frame = sweep_frame(bundle, args.layer, methods, grid, args.fpr_convention,
                            split_list(args.ood), args.seed, args.device)
        if ci_opts is not None or args.format == "json":
            results = layer_sweep_results(bundle, args.layer, methods, grid,
                                          args.fpr_convention, split_list(args.ood),
                                          args.seed, args.device)
    else:
        results = sweep_results(bundle, methods, grid, args.threshold_mode, score,
                                args.fpr_convention, split_list(args.ood), args.seed,
                                evaluator=evaluator, progress=progress, params=fixed,
                                cache_dir=args.cache_dir, use_cache=not args.no_cache,
                                engine=args.engine)
        frame = sweep_table(results)
    bar.close()
    cis = None if ci_opts is None else _intervals(results or [], *ci_opts)
    if args.format == "json":
        rows = [r.to_dict() for _, r in results or []]
        if cis is not None:
            rows = [with_ci(row, ci, r.groups)
                    for row, ci, (_, r) in zip(rows, cis, results or [], strict=True)]
        print(dumps_json(rows))
        return 0
    ties = frame.attrs.get("ties", {})
    ood = [c.split("/")[0] for c in frame.columns if c.endswith("/fpr95")]
    groups = [n[len("average ("):-1] for n in dict.fromkeys(ood) if n.startswith("average (")]
    averages = {"average", *(f"average ({g})" for g in groups)}
    ood = [n for n in dict.fromkeys(ood) if n not in averages]
    frame = frame[sweep_columns(ood, groups)]
    if any(get_method(m).param_names not in ((), ("p",)) for m in methods):
        # name the parameters other than p, with the one label of each row's setting
        settings = sweep_settings(methods, grid, args.threshold_mode, score,
                                  args.fpr_convention, args.seed, fixed)
        frame.insert(2, "setting", [s.label() for s in settings])
    caption = (f"{bundle.name}: threshold={args.threshold_mode}, score={score}, "
               f"FPR convention={args.fpr_convention}; values in %")
    raw = ["p"]
    if cis is not None:
        frame = sweep_ci_frame(frame, cis, bundle.groups)
        raw += ["n_id", *(c for c in frame.columns if c.endswith("/n_ood"))]
        if args.format != "csv":
            frame = bracketed_columns(frame)
            caption += f"; {ci_caption(*ci_opts)}"
    sys.stdout.write(render_frame(frame, args.format, caption=caption, raw_cols=raw))
    mark = "% " if args.format == "latex" else ""
    for label, tie in ties.items():  # csv: the data alone on stdout, the warning beside it
        for line in tie_warnings(tie, f"{mark}{label}: "):
            print(line, file=sys.stderr if args.format == "csv" else sys.stdout)
    return 0


def _intervals(results: list, resamples: int, seed: int) -> list:
    """Each row's bootstrap intervals, as ``evaluate --ci`` computes them for its setting."""
    bar = tqdm(results, desc="intervals", unit="row", disable=None, file=sys.stderr)
    return [result_ci(r, resamples, seed) for _, r in bar]
