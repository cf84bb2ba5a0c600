"""Build the "Where to ASH" demo bundles (``make layers``): for each CIFAR-10 demo recipe in
configs/ with inner layers (the two ResNets: layer1, layer2, layer3; the hybrid ViT: the
token maps of its four blocks, blocks.0 ... blocks.3), a bundle
``cached_features/<name>.layers`` (git-ignored) holding a spread subset of rows of the ID
test set and every OOD set, with the maps and the tails (``ash-explore extract --layers``).
The ViT's weights are trained here and git-ignored: without them its bundle is left out with
a note saying how to train them (the ResNets' weights come with ../shared/data). Rows: every
k-th sample, k chosen so that the ID set keeps about --id-rows and each OOD set about
--ood-rows (the subset keeps the maps small: ResNet-20's layer1 map is 32 KiB per image).
id_fit / validation splits are left out (inner layers replay with per-sample thresholds only).

    python scripts/build_layer_bundles.py [--id-rows 1000] [--ood-rows 300] [--device auto]

Another CIFAR-10 recipe and its blocks, e.g. a timm ViT's (token maps, docs/where.md):

    python scripts/build_layer_bundles.py --recipe NAME --layers blocks.1,blocks.3,blocks.5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: recipe -> the layers ``make layers`` caches
RECIPES = {"cifar10_resnet20": ["layer1", "layer2", "layer3"],
           "cifar10_resnet56": ["layer1", "layer2", "layer3"],
           "cifar10_vit_hybrid": [f"blocks.{i}" for i in range(4)]}
#: demos whose weights are trained here (scripts/NAME), not part of ../shared/data
TRAINED = {"cifar10_vit_hybrid": "train_vit_cifar.py"}


def _with_every(spec: str, n: int, target: int) -> str:
    every = max(1, math.ceil(n / target))
    return spec if every == 1 else f"{spec}{'&' if '?' in spec else '?'}every={every}"


def layer_recipe(name: str, id_rows: int, ood_rows: int, device: str,
                 layers: list[str] | None = None):
    from ash_core.extract import ExtractConfig, SplitSpec
    from ash_core.extract.data import parse_spec

    raw = json.loads((REPO / "configs" / f"{name}.json").read_text())
    root = (REPO / raw["data_root"]).resolve()
    splits = []
    for s in raw["splits"]:
        if s["role"] not in ("id", "ood"):
            continue
        n = len(parse_spec(s["data"], root, (32, 32, 3)))
        target = id_rows if s["role"] == "id" else ood_rows
        splits.append(SplitSpec(s["name"], s["role"], _with_every(s["data"], n, target),
                                s.get("thumbnails")))
    return ExtractConfig(
        out=str(REPO / "cached_features" / f"{name}.layers"), name=f"{name}.layers",
        model=raw["model"], weights=str((REPO / raw["weights"]).resolve()),
        data_root=str(root), protocol=raw.get("protocol"),
        layers=layers or RECIPES.get(name, RECIPES["cifar10_resnet20"]), splits=splits,
        batch_size=raw.get("batch_size", 250), device=device, feature_dtype="float16",
        extra={"subset": f"every k-th row: about {id_rows} ID and {ood_rows} per OOD set"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id-rows", type=int, default=1000)
    ap.add_argument("--ood-rows", type=int, default=300)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", choices=list(RECIPES), help="build one bundle")
    ap.add_argument("--recipe", help="build this configs/NAME.json recipe's bundle instead")
    ap.add_argument("--layers", help="blocks to cache (default: the recipe's in RECIPES, "
                                     "else layer1,layer2,layer3)")
    args = ap.parse_args(argv)
    from ash_core.extract import extract

    layers = [t.strip() for t in args.layers.split(",") if t.strip()] if args.layers else None
    names = [args.recipe] if args.recipe else [args.only] if args.only else list(RECIPES)
    explicit = bool(args.recipe or args.only)
    for name in names:
        if not (REPO / "configs" / f"{name}.json").is_file():
            ap.error(f"no recipe configs/{name}.json")
        cfg = layer_recipe(name, args.id_rows, args.ood_rows, args.device, layers)
        if name in TRAINED and not Path(cfg.weights).is_file():
            note = (f"{name}: its weights {cfg.weights} are not here "
                    f"(trained, never committed): train them with `python scripts/"
                    f"{TRAINED[name]}` (or `make bundles`), then rerun")
            if explicit:  # asked for by name: an error, not a silent skip
                print(f"error: {note}.", file=sys.stderr)
                return 2
            print(f"== skipping {note} `make layers`.", flush=True)
            continue
        extract(cfg, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
