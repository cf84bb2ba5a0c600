"""``ash-explore methods``: list the registry (what every other tool enumerates)."""

from __future__ import annotations

import argparse

from ..registry import get_method, list_methods


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the shaping methods and their parameters")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in list_methods():
        spec = get_method(name)
        params = ", ".join(f"{q.name}={q.default:g} in [{q.low:g}, {q.high:g})"
                           for q in spec.params) or "no parameters"
        print(f"{name:10s} {spec.description}")
        print(f"{'':10s} {params}; thresholds: {'/'.join(spec.thresholds)}"
              + (f"; {spec.reference}" if spec.reference else ""))
    return 0
