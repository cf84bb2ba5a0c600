"""Arguments shared by several subcommands, declared once from the registries."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ash_core.device import DEVICES
from ash_core.errors import ParameterError
from ash_core.features import list_feature_scores
from ash_core.maths.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, check_resamples
from ash_core.maths.metrics import CONVENTIONS
from ash_core.maths.scores import list_scores
from ash_core.methods import THRESHOLD_MODES, list_methods
from ash_core.params import parse_assignment
from ash_core.setting import resolve_score


def add_setting_args(parser: argparse.ArgumentParser) -> None:
    """--threshold, --score, --fpr-convention, --ood, --seed."""
    parser.add_argument("--threshold", dest="threshold_mode", choices=list(THRESHOLD_MODES),
                        default="local",
                        help="local: per-sample percentile (default); global: one threshold "
                             "fitted on the id_fit split (paper ablation)")
    parser.add_argument("--score", choices=[*list_scores(), *list_feature_scores()],
                        default=None,
                        help="OOD score: on the (shaped) logits, or on the (shaped) features, "
                             "fitted on id_fit (" + ", ".join(list_feature_scores())
                             + "; their parameters via --param); default: energy, or the "
                             "method's own for a method that scores itself (gen, knn, msp, "
                             "...), which takes no other")
    parser.add_argument("--fpr-convention", choices=list(CONVENTIONS), default="id",
                        help="id: ID is positive (ASH paper, default); ood: OOD is positive "
                             "(OpenOOD)")
    parser.add_argument("--ood", default=None,
                        help="comma-separated OOD split names (default: all in the bundle)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ash-rand (default 0)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the sha256 check of the bundle files (faster on huge bundles)")


def add_param_arg(parser: argparse.ArgumentParser) -> None:
    """--param NAME=VALUE, repeatable."""
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a method parameter, repeatable (e.g. --param p=90); "
                             "`ash-explore methods` lists every parameter and its range")


def parse_named(assignments: list[str], parse: Callable[[str], tuple[str, Any]],
                option: str) -> dict[str, Any]:
    """Repeated ``NAME=...`` options parsed by ``parse`` into a dict; a name given twice
    is an error naming ``option``."""
    out: dict[str, Any] = {}
    for text in assignments:
        name, value = parse(text)
        if name in out:
            raise ParameterError(f"{option} {name} is given twice; give it once.")
        out[name] = value
    return out


def parse_params(assignments: list[str]) -> dict[str, float]:
    """The ``--param NAME=VALUE`` list as a dict; a name given twice is an error."""
    return parse_named(assignments, parse_assignment, "--param")


def score_of(args: argparse.Namespace, method: str) -> str:
    """The score ``--score`` asks for with ``method`` (``setting.resolve_score``: the default
    when not given; a score the method cannot take is a ParameterError, exit 2)."""
    return resolve_score(method, args.score)


def method_help() -> str:
    return "shaping method: " + ", ".join(list_methods())


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """--device auto|cpu|cuda (resolved by ``ash_core.device.resolve_device``)."""
    parser.add_argument("--device", choices=list(DEVICES), default="auto",
                        help="where shaping and the head run: auto (CUDA when a GPU is "
                             "present, default), cpu, or cuda (an error without CUDA)")


def add_ci_args(parser: argparse.ArgumentParser) -> None:
    """--ci, --ci-resamples, --ci-seed: bootstrap intervals beside the metrics."""
    parser.add_argument("--ci", action="store_true",
                        help="add each metric's 95%% bootstrap confidence interval and the "
                             "sample counts (ID and OOD rows): ID and each OOD set resampled "
                             "separately, percentile intervals")
    parser.add_argument("--ci-resamples", type=int, default=None, metavar="B",
                        help=f"bootstrap resamples with --ci (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--ci-seed", type=int, default=None, metavar="SEED",
                        help=f"seed of the bootstrap resampling with --ci (default "
                             f"{DEFAULT_SEED})")


def ci_options(args: argparse.Namespace) -> tuple[int, int] | None:
    """(resamples, seed) with --ci, None without; --ci-resamples or --ci-seed without --ci
    is an error (it would silently do nothing)."""
    if not args.ci:
        given = [f for f, v in (("--ci-resamples", args.ci_resamples),
                                ("--ci-seed", args.ci_seed)) if v is not None]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise ParameterError(f"{' and '.join(given)} only {verb} with --ci; add --ci or "
                                 "leave them out.")
        return None
    resamples = DEFAULT_RESAMPLES if args.ci_resamples is None else args.ci_resamples
    check_resamples(resamples)
    return resamples, DEFAULT_SEED if args.ci_seed is None else args.ci_seed
