"""``ash-explore search``: choose a method's parameters on the validation splits, report test."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ash_core.bundle import load_bundle
from ash_core.cli.common import (
    add_setting_args,
    method_help,
    parse_named,
    score_of,
    split_list,
)
from ash_core.errors import ParameterError
from ash_core.methods import list_methods
from ash_core.policy import ENGINES
from ash_core.reports.tables import dumps_json, render_frame
from ash_core.search.grid import (
    SEARCH_METRICS,
    SearchResult,
    parse_grid_assignment,
    search,
    search_points,
)
from ash_core.search.many import search_many
from ash_core.setting import Setting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="choose parameters on the validation splits (OpenOOD's rule), report test metrics",
        description="Evaluate every grid point of METHOD on BUNDLE's validation splits (id_val "
                    "vs the pooled ood_val splits), keep the first best point (a later one "
                    "replaces it only when strictly better, as OpenOOD), and report the test "
                    "metrics there, the test-optimal point of the same grid and the gap. The "
                    "default grid is each parameter's declared search grid (OpenOOD's: ASH "
                    "p = 65..95 step 5).",
    )
    p.add_argument("bundle", help="bundle directory with id_val and ood_val splits")
    p.add_argument("--method", default="ash-s", choices=list_methods(), help=method_help())
    p.add_argument("--grid", action="append", default=[], metavar="NAME=START:STOP:STEP",
                   help="the grid of one parameter (STOP inclusive, or a comma list), "
                        "repeatable; other parameters take their declared search grid")
    p.add_argument("--all-methods", action="store_true",
                   help="search every method with a declared search grid (each on its own "
                        "grid; methods whose grid this bundle cannot serve are left out with "
                        "a warning); JSON: one list. Results are cached beside the cubes")
    p.add_argument("--metric", choices=list(SEARCH_METRICS), default="auroc",
                   help="validation metric the choice maximises (auroc) or minimises "
                        "(fpr95); default auroc, as OpenOOD")
    add_setting_args(p)
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--engine", choices=list(ENGINES), default="auto",
                   help="cube: one score cube over test and validation splits (ASH family, "
                        "ReAct, SCALE); exact: one evaluation per point; auto: cube where "
                        "the method has one")
    p.add_argument("--cache-dir", default=None, help="where score cubes are cached")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cubes")
    p.set_defaults(func=run)


def grid_of(assignments: list[str]) -> dict[str, list[float]]:
    """The ``--grid`` list as ``{name: values}``; a name given twice is an error."""
    return parse_named(assignments, parse_grid_assignment, "--grid")


def _label(params: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in params.items()) or "(no parameters)"


def search_frame(result: SearchResult) -> pd.DataFrame:
    """One row per grid point: validation and test metric, the two choices marked."""
    m = result.metric.upper()
    marks = ["selected" if i == result.selected_index else "" for i in range(len(result.points))]
    marks = [(t + " test-optimal").strip() if i == result.optimal_index else t
             for i, t in enumerate(marks)]
    return pd.DataFrame({"params": [_label(p) for p in result.points],
                         f"validation {m}": result.validation,
                         f"test {m} (average)": result.test_values, "choice": marks})


def print_table(result: SearchResult) -> None:
    m, s = result.metric.upper(), result.setting
    caption = (f"{result.bundle}: {s.label(detail=True)}; chosen on "
               f"{result.validated_on.describe()} by {m}, {result.validated_on.to_dict()['rule']}"
               "; values in %")
    sys.stdout.write(render_frame(search_frame(result), "table", caption=caption,
                                  raw_cols=("params", "choice")))
    for name, r, params in (("validated", result.test, result.selected),
                            ("test-optimal", result.test_optimal, result.optimal)):
        groups = "".join(f"; {g}: AUROC {100 * a['auroc']:.2f}%, FPR95 {100 * a['fpr95']:.2f}%"
                         for g, a in r.group_averages.items())
        print(f"{name} {_label(params)}: test AUROC {100 * r.average['auroc']:.2f}%, "
              f"FPR95 {100 * r.average['fpr95']:.2f}%{groups}")
    print(f"gap (test {m} lost by validating): {100 * result.gap:.2f} points")


def summary_frame(results: dict[str, SearchResult]) -> pd.DataFrame:
    """One row per method: the validated and the test-optimal parameters, test metric, gap."""
    m = next(iter(results.values())).metric.upper() if results else "AUROC"
    groups = dict.fromkeys(g for r in results.values() for g in r.test.group_averages)
    return pd.DataFrame({
        "method": list(results),
        "validated": [_label(r.selected) for r in results.values()],
        f"test {m} (average)": [r.test_values[r.selected_index] for r in results.values()],
        **{f"test {m} ({g})": [r.test.group_averages.get(g, {}).get(
            r.metric, float("nan")) for r in results.values()] for g in groups},
        "test-optimal": [_label(r.optimal) for r in results.values()],
        f"gap ({m} points)": [r.gap for r in results.values()],
    })


def run_all(args: argparse.Namespace) -> int:
    if args.grid:
        raise ParameterError("--grid names one method's parameters; with --all-methods each "
                             "method takes its declared search grid (drop --grid).")
    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    results = search_many(bundle, None, args.metric, threshold_mode=args.threshold_mode,
                          score=args.score or "energy", convention=args.fpr_convention,
                          seed=args.seed,
                          ood=split_list(args.ood), engine=args.engine,
                          cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if args.format == "json":
        print(dumps_json([r.to_dict() for r in results.values()]))
    else:
        sys.stdout.write(render_frame(summary_frame(results), "table",
                                      caption=f"{bundle.name}: validated parameters per "
                                              "method; values in %",
                                      raw_cols=("method", "validated", "test-optimal")))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.all_methods:
        return run_all(args)
    base = Setting(args.method, {}, args.threshold_mode, score_of(args, args.method),
                   args.fpr_convention, args.seed).validated()
    grid = grid_of(args.grid)
    search_points(base.method, grid)  # bad input is reported before the bundle is read
    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    result = search(bundle, base, grid, args.metric, ood=split_list(args.ood),
                    engine=args.engine, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if args.format == "json":
        print(dumps_json(result.to_dict()))
    else:
        print_table(result)
    return 0
