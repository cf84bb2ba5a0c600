#!/usr/bin/env python
"""Rebuild the committed demo bundles in cached_features/ from ../shared/data.

    python scripts/build_demo_bundles.py              # all five (same as `make bundles`)
    python scripts/build_demo_bundles.py mnist_cnn    # just one
    python scripts/build_demo_bundles.py --check      # rebuild into a temp dir and verify the
                                                      # committed features are reproduced bit
                                                      # for bit

Each bundle is described by a recipe in configs/ (model, weights, every split). Extraction is
deterministic (sorted file lists, seeded noise, eval mode, fixed batches), so rebuilding gives
identical feature files; only the date/wall time in the manifest change.

cifar10_vit_hybrid's weights are trained here, not downloaded, and not committed: when its
recipe's weights file is absent, scripts/train_vit_cifar.py trains it first (27 CPU-minutes,
about 50 minutes wall on the shared 2 cores under load; see docs/extraction.md), and a
retrained network gives close, not identical, features (scripts/compare_bundles.py measures
how close).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMOS = ("cifar10_resnet20", "cifar10_resnet56", "mnist_cnn", "tinyimagenet_mobilenetv2",
         "tinyimagenet_efficientnet_lite0", "cifar10_vit_hybrid")
#: demos whose weights are trained by a script of this folder when the weights file is absent
TRAINED = {"cifar10_vit_hybrid": "train_vit_cifar.py"}


def train_if_missing(name: str, weights: str | None, data_root: str | None) -> None:
    """Run the demo's training script when its recipe's weights file does not exist."""
    if name not in TRAINED or weights is None or Path(weights).is_file():
        return
    import importlib.util

    script = Path(__file__).resolve().parent / TRAINED[name]
    print(f"== {name}: {weights} is absent; training it with scripts/{script.name}", flush=True)
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--out", weights] + (["--data-root", data_root] if data_root else [])
    if module.main(args) != 0:
        raise SystemExit(f"training {name} failed")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from ash_core.extract import ExtractConfig, extract

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=list(DEMOS), help=f"bundles ({', '.join(DEMOS)})")
    ap.add_argument("--data-root", default=None,
                    help="the shared data folder (default: the recipe's, ../shared/data)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary folder and compare with the committed bundle")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    bad = [n for n in args.names if n not in DEMOS]
    if bad:
        ap.error(f"unknown demo bundle(s) {bad}; choose from {DEMOS}")
    failures = 0
    import os

    os.chdir(REPO)  # recipes use paths relative to the repository root
    for name in args.names:
        overrides = {"data_root": args.data_root, "workers": args.workers, "overwrite": True,
                     "progress": sys.stderr.isatty()}
        if args.check:
            tmp = Path(tempfile.mkdtemp(prefix=f"check-{name}-"))
            overrides["out"] = str(tmp / name)
        cfg = ExtractConfig.from_json(REPO / "configs" / f"{name}.json", **overrides)
        train_if_missing(name, cfg.weights, cfg.data_root)
        print(f"== {name} -> {cfg.out}", flush=True)
        path = extract(cfg, log=lambda s: print(f"   {s}", flush=True))
        if args.check and path is not None:
            new = json.loads((Path(path) / "manifest.json").read_text())["files"]
            old = json.loads((REPO / "cached_features" / name / "manifest.json").read_text())[
                "files"]
            diff = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
            if diff:
                failures += 1
                print(f"   MISMATCH with the committed bundle: {diff}")
            else:
                print(f"   identical to cached_features/{name} ({len(new)} files)")
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
