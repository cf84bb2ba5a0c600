"""``ash-explore methods``: list the registry (what every other tool enumerates)."""

from __future__ import annotations

import argparse

from ash_core.features import list_feature_scores
from ash_core.maths.scores import list_scores
from ash_core.methods import get_method, list_methods


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the shaping methods and every parameter",
                       description="Every registered method with each parameter's range, "
                                   "default, the paper's recommended values and OpenOOD's "
                                   "search grid. Set a parameter with --param NAME=VALUE.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in list_methods():
        spec = get_method(name)
        print(f"{name:10s} {spec.description}")
        traits = [f"thresholds: {'/'.join(spec.threshold_modes)}", f"grid: {spec.grid}"]
        if spec.fit_on:
            when = ("always" if spec.fit in ("always", None)
                    else f"under {spec.fit} thresholds")
            traits.append(f"fitted on {', '.join(sorted(spec.fit_on))} ({when})")
        if spec.stochastic:
            traits.append("stochastic (--seed)")
        if spec.feature_score:
            traits.append(f"a score on features: combine as --score {name}")
        if spec.reference:
            traits.append(spec.reference)
        print(f"{'':10s} {'; '.join(traits)}")
        for q in spec.params:
            main = " [main]" if q.name == spec.main_param else ""
            print(f"{'':10s}   {q.describe()}{main}")
        if not spec.params:
            print(f"{'':10s}   no parameters")
    print("\n  scores (--score): on logits " + ", ".join(list_scores()) + "; on features, "
          "fitted on id_fit: " + ", ".join(list_feature_scores()) + ". Any shaping method "
          "combines with any of them; a method that is a score (gen, knn, ...) is its own.")
    return 0
