"""Arguments shared by several subcommands, declared once from the registries."""

from __future__ import annotations

import argparse

from ..metrics import CONVENTIONS
from ..registry import THRESHOLD_MODES, list_methods
from ..scores import list_scores


def add_setting_args(parser: argparse.ArgumentParser) -> None:
    """--threshold, --score, --fpr-convention, --ood, --seed."""
    parser.add_argument("--threshold", choices=list(THRESHOLD_MODES), default="local",
                        help="local: per-sample percentile (default); global: one threshold "
                             "fitted on the id_fit split (paper ablation)")
    parser.add_argument("--score", choices=list_scores(), default="energy",
                        help="OOD score computed from the logits (default: energy)")
    parser.add_argument("--fpr-convention", choices=list(CONVENTIONS), default="id",
                        help="id: ID is positive (ASH paper, default); ood: OOD is positive "
                             "(OpenOOD)")
    parser.add_argument("--ood", default=None,
                        help="comma-separated OOD split names (default: all in the bundle)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ash-rand (default 0)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the sha256 check of the bundle files (faster on huge bundles)")


def method_help() -> str:
    return "shaping method: " + ", ".join(list_methods())


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]
