"""``--layer`` for ``evaluate`` and ``sweep``: shape at a cached inner layer (docs/where.md)."""

from __future__ import annotations

import argparse

from ash_core.errors import ParameterError


def add_layer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="shape at this cached layer and replay the network's tail (bundles "
                        "extracted with --layers, e.g. layer1; default: penultimate)")


def check_layer_setting(args: argparse.Namespace) -> None:
    """Inner layers replay the energy score with per-sample thresholds only."""
    if getattr(args, "threshold_mode", "local") != "local" or (getattr(args, "score", None) or "energy") \
            != "energy" or getattr(args, "param", None):
        raise ParameterError(f"--layer {args.layer}: the layer sweep uses the energy score, "
                             "local thresholds and each method's p only; drop --threshold, "
                             "--score and --param (or use evaluate --layer).")
