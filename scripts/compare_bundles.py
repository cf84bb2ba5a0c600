#!/usr/bin/env python
"""Compare a freshly extracted demo bundle with the committed one: how close a rebuild comes.

    python scripts/compare_bundles.py cifar10_vit_hybrid            # extract into a temp dir
    python scripts/compare_bundles.py cifar10_vit_hybrid --new DIR  # an already built bundle
    python scripts/compare_bundles.py NAME --json OUT.json          # the numbers as JSON too
    python scripts/compare_bundles.py NAME --every 4                # every 4th row of each split

For a bundle whose weights are trained here (cifar10_vit_hybrid), a retrained network gives
other features on another CPU or load than the committed ones, so a bit-for-bit check
(``build_demo_bundles.py --check``) cannot pass; this script says how far apart the two are
where it matters: the ID accuracy, every OOD set's AUROC for energy and the methods of the
README's tables at their recommended parameters (ASH-S@90, ASH-B@65, ReAct, SCALE, ViM, KNN,
GEN), and the features themselves (largest absolute difference and Pearson correlation per
split, and how often the two heads predict the same class on the ID test set).

``--every K`` extracts every K-th row of each split (a quarter of the time at K = 4) and
compares it with the same rows of the committed bundle (both sides evaluated on those rows,
id_fit included, so the comparison stays like for like). It prints Markdown (committed, new,
new - committed; AUROC and accuracy in %).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: (label, method, parameters): the README's columns for the demo bundles
METHODS = (("energy", "none", {}), ("ASH-S@90", "ash-s", {"p": 90}),
           ("ASH-B@65", "ash-b", {"p": 65}), ("ReAct@90", "react", {"p": 90}),
           ("SCALE@85", "scale", {"p": 85}), ("ViM", "vim", {}), ("KNN k=50", "knn", {"k": 50}),
           ("GEN", "gen", {}))


def feature_agreement(old, new) -> dict[str, dict[str, float]]:
    """Per split (matched by name; both bundles must have the same rows): the largest
    absolute feature difference, the Pearson correlation of all values, and the largest
    feature magnitude of the committed split (the scale the difference is read against)."""
    out = {}
    for split in old.splits:
        a = np.asarray(split.features, dtype=np.float64)
        b = np.asarray(new.split(split.name).features, dtype=np.float64)
        if a.shape != b.shape:
            raise SystemExit(f"error: split {split.name!r} has shape {a.shape} in the committed "
                             f"bundle and {b.shape} in the new one; compare bundles of one "
                             "recipe.")
        out[split.name] = {"max_abs_diff": float(np.abs(a - b).max()),
                           "correlation": float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
                           "max_abs": float(np.abs(a).max())}
    return out


def prediction_agreement(old, new) -> float:
    """The share of ID test images on which the two bundles' heads predict the same class."""
    def predict(bundle):
        split = bundle.id_split
        return (split.features_tensor() @ bundle.head_weight.T + bundle.head_bias).argmax(1)

    return float((predict(old) == predict(new)).float().mean())


def method_numbers(bundle) -> dict[str, dict]:
    """label -> {"id_accuracy": shaped, "auroc": {set: ..}, "average": .., "groups": {..}}."""
    from ash_core import Evaluator, Setting

    ev = Evaluator(bundle)
    out = {}
    for label, method, params in METHODS:
        with warnings.catch_warnings():  # "x% of activations are negative": known here
            warnings.simplefilter("ignore", UserWarning)
            d = ev.evaluate(Setting(method, params)).to_dict()
        out[label] = {"id_accuracy": d["id_accuracy"]["shaped"],
                      "auroc": {n: m["auroc"] for n, m in d["ood"].items()},
                      "average": d["average"]["auroc"],
                      "groups": {g: m["auroc"] for g, m in d.get("groups", {}).items()}}
    return out


def compare(old, new) -> dict:
    """Everything the report prints, as plain numbers (fractions)."""
    if [(s.name, s.role, len(s)) for s in old.splits] != \
            [(s.name, s.role, len(s)) for s in new.splits]:
        raise SystemExit("error: the two bundles do not have the same splits and rows; "
                         "compare a bundle with a rebuild of its own recipe.")
    return {"committed": method_numbers(old), "new": method_numbers(new),
            "features": feature_agreement(old, new),
            "id_prediction_agreement": prediction_agreement(old, new),
            "head_max_abs_diff": float((old.head_weight - new.head_weight).abs().max()),
            "weights_sha256": {"committed": old.manifest.get("model", {}).get("weights_sha256"),
                               "new": new.manifest.get("model", {}).get("weights_sha256")}}


def _row(name: str, old: float, new: float) -> str:
    return f"| {name} | {100 * old:.2f} | {100 * new:.2f} | {100 * (new - old):+.2f} |"


def summary(result: dict) -> list[str]:
    """One row per method: shaped ID accuracy, average AUROC and the largest per-set AUROC
    difference, committed against new."""
    old, new = result["committed"], result["new"]
    lines = ["| method | ID acc. committed | new | avg AUROC committed | new | new - committed "
             "| largest per-set abs difference |", "|---|" + "---:|" * 6]
    for label in old:
        o, n = old[label], new[label]
        worst = max(abs(n["auroc"][s] - o["auroc"][s]) for s in o["auroc"])
        lines.append(f"| {label} | {100 * o['id_accuracy']:.2f} | {100 * n['id_accuracy']:.2f} "
                     f"| {100 * o['average']:.2f} | {100 * n['average']:.2f} "
                     f"| {100 * (n['average'] - o['average']):+.2f} | {100 * worst:.2f} |")
    return lines


def markdown(result: dict) -> str:
    """The report: the summary, the features, then one table per method (ID accuracy, every
    OOD set, the group and overall averages)."""
    old, new = result["committed"], result["new"]
    lines = ["**Summary** (AUROC and accuracy in %)", "", *summary(result), "",
             "**Features** (float16 as stored)", "",
             "| split | max abs difference | largest abs value | correlation |",
             "|---|---:|---:|---:|"]
    lines += [f"| {s} | {f['max_abs_diff']:.4g} | {f['max_abs']:.4g} | {f['correlation']:.4f} |"
              for s, f in result["features"].items()]
    lines += ["", f"Same predicted class on the ID test set: "
                  f"{100 * result['id_prediction_agreement']:.2f}%; head weights: max abs "
                  f"difference {result['head_max_abs_diff']:.4g}; weights sha256 "
                  f"{(result['weights_sha256']['committed'] or '?')[:12]} (committed) vs "
                  f"{(result['weights_sha256']['new'] or '?')[:12]} (new).", ""]
    for label in old:
        o, n = old[label], new[label]
        lines += [f"**{label}**", "", "| | committed | new | new - committed |",
                  "|---|---:|---:|---:|", _row("ID accuracy (shaped)", o["id_accuracy"],
                                               n["id_accuracy"])]
        lines += [_row(s, o["auroc"][s], n["auroc"][s]) for s in o["auroc"]]
        lines += [_row(f"Average ({g})", o["groups"][g], n["groups"][g]) for g in o["groups"]]
        lines += [_row("Average", o["average"], n["average"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def every_row(bundle, k: int):
    """The bundle's every k-th row of each split, as a scratch bundle (``create_bundle``)."""
    from ash_core import create_bundle

    splits = {}
    for s in bundle.splits:
        x = np.asarray(s.features, dtype=np.float32)[::k]
        splits[s.name] = (s.role, x) if s.labels is None else (s.role, x, s.labels[::k])
    return create_bundle(None, (bundle.head_weight, bundle.head_bias), splits,
                         classes=bundle.classes, groups=bundle.groups or None)


def extract_recipe(name: str, out: Path, data_root: str | None, weights: str | None,
                   every: int = 1) -> Path:
    """Extract configs/NAME.json into ``out``, every ``every``-th row of each split (nothing
    is trained here: missing weights are an error of the extraction, which says how to
    provide them)."""
    from ash_core.extract import ExtractConfig, extract

    overrides = {"out": str(out), "overwrite": True, "progress": sys.stderr.isatty()}
    if data_root:
        overrides["data_root"] = data_root
    if weights:
        overrides["weights"] = weights
    cfg = ExtractConfig.from_json(REPO / "configs" / f"{name}.json", **overrides)
    if every > 1:  # ``part`` is applied first, then ``every``: row i here is row i*every there
        for spec in cfg.splits:
            spec.data += f"{'&' if '?' in spec.data else '?'}every={every}"
    print(f"== extracting {name} -> {out}", file=sys.stderr, flush=True)
    return Path(extract(cfg, log=lambda s: print(f"   {s}", file=sys.stderr, flush=True)))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a demo bundle: configs/NAME.json and cached_features/NAME")
    ap.add_argument("--new", help="compare this bundle instead of extracting the recipe")
    ap.add_argument("--keep", help="extract into this folder and keep it (default: a temp dir)")
    ap.add_argument("--data-root", help="the shared data folder (default: the recipe's)")
    ap.add_argument("--weights", help="weights file (default: the recipe's)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--every", type=int, default=1,
                    help="compare every K-th row of each split (default 1: all)")
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.exit(2, f"error: --every {args.every}: give a positive row step (1 = every row).\n")
    committed = REPO / "cached_features" / args.name
    if not (REPO / "configs" / f"{args.name}.json").is_file() or not committed.is_dir():
        ap.exit(2, f"error: no demo bundle {args.name!r} (configs/{args.name}.json and "
                   f"cached_features/{args.name}); name one of the recipes in configs/.\n")
    from ash_core import load_bundle

    os.chdir(REPO)  # recipes use paths relative to the repository root
    tmp = None
    if args.new:
        new_path = Path(args.new)
    elif args.keep:
        new_path = extract_recipe(args.name, Path(args.keep), args.data_root, args.weights,
                                  args.every)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f"compare-{args.name}-"))
        new_path = extract_recipe(args.name, tmp / args.name, args.data_root, args.weights,
                                  args.every)
    try:
        old = load_bundle(committed)
        result = compare(old if args.every == 1 else every_row(old, args.every),
                         load_bundle(new_path))
        result["every"] = args.every
        result["weights_sha256"]["committed"] = old.manifest["model"].get("weights_sha256")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(markdown(result), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
