"""``ash-explore evaluate``: metrics of one setting on one bundle."""

from __future__ import annotations

import argparse
import sys

from ash_core.bundle import load_bundle
from ash_core.cli.common import (
    add_ci_args,
    add_device_arg,
    add_param_arg,
    add_setting_args,
    ci_options,
    method_help,
    parse_params,
    score_of,
    split_list,
)
from ash_core.cli.layer_args import add_layer_arg
from ash_core.device import resolve_device
from ash_core.layers import layer_evaluator
from ash_core.methods import list_methods
from ash_core.params import merge_p
from ash_core.reports.intervals import bracketed, ci_caption, ci_frame, result_ci, with_ci
from ash_core.reports.tables import dumps_json, evaluation_frame, render_frame, tie_warnings
from ash_core.setting import Setting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of one shaping setting on a bundle",
        description="Shape the cached features of BUNDLE with one method and its parameters, "
                    "score them and print FPR95/AUROC/AUPR-In/AUPR-Out per OOD set, their "
                    "average, and ID accuracy with and without shaping. Text formats show "
                    "percentages; csv and json show fractions in [0, 1].",
    )
    p.add_argument("bundle", help="bundle directory (e.g. cached_features/cifar10_resnet20)")
    p.add_argument("--method", default="ash-s", choices=list_methods(), help=method_help())
    p.add_argument("--p", type=float, default=None,
                   help="shorthand for --param p=VALUE: the pruning percentile in [0, 100) "
                        "(default: the method's default)")
    add_param_arg(p)
    add_setting_args(p)
    add_device_arg(p)
    add_layer_arg(p)
    add_ci_args(p)
    p.add_argument("--format", choices=["table", "json", "csv", "markdown", "latex"],
                   default="table")
    p.set_defaults(func=run)


def setting_of(args: argparse.Namespace) -> Setting:
    """The validated setting the command line asks for."""
    params = merge_p(parse_params(args.param), args.p)
    return Setting(args.method, params, args.threshold_mode, score_of(args, args.method),
                   args.fpr_convention, args.seed).validated()


def run(args: argparse.Namespace) -> int:
    setting = setting_of(args)  # bad parameters are reported before the bundle is read
    ci_opts = ci_options(args)
    device = resolve_device(args.device)  # --device cuda without CUDA: before the bundle
    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    ev = layer_evaluator(bundle, args.layer, split_list(args.ood), device=device)
    evaluated = ev.evaluate(setting)
    result = evaluated.to_dict()
    ci = None if ci_opts is None else result_ci(evaluated, *ci_opts)
    if args.format == "json":
        print(dumps_json(result if ci is None else with_ci(result, ci, evaluated.groups)))
        return 0
    frame = evaluation_frame(result)
    if ci is not None:
        frame = ci_frame(frame, ci, evaluated.groups)
    if args.format == "csv":  # the data alone on stdout; the warning beside it
        sys.stdout.write(render_frame(frame, "csv"))
        for line in tie_warnings(result.get("ties")):
            print(line, file=sys.stderr)
        return 0
    caption = f"{bundle.name}: {setting.label(detail=True)}; values in %"
    if ci is not None:
        frame = bracketed(frame)
        caption += f"; {ci_caption(ci.resamples, ci.seed)}"
    sys.stdout.write(render_frame(frame, args.format, caption=caption,
                                  raw_cols=("p", "n_id", "n_ood")))
    acc = result["id_accuracy"]
    if acc["shaped"] is not None:
        # a LaTeX comment in latex output, so that the whole output pastes into a paper
        print(("% " if args.format == "latex" else "")
              + f"ID accuracy: shaped {100 * acc['shaped']:.2f}%  "
              f"unshaped {100 * acc['unshaped']:.2f}%")
    for line in tie_warnings(result.get("ties"), "% " if args.format == "latex" else ""):
        print(line)
    return 0
