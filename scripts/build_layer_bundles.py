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

Then the layer cubes (``ash_core.layers.cube``: the sweep at every integer p, on disk beside
the bundle) of the dashboard's default variant (``CUBE_METHOD``) at every inner layer of
ResNet-20's bundle (the README's demo, the dashboard's default), so that a move of p at an
inner layer is a lookup from the first move; the other bundles' cubes are built by the
dashboard in the background when first needed. Each cube's two sweeps (``cube.PARTS``) of
every layer are jobs for ``--jobs`` processes of one torch thread, longest first.
``--no-cubes`` skips them, ``--cubes all`` builds every bundle's, ``--cubes-only`` builds the
cubes of bundles already extracted.

    python scripts/build_layer_bundles.py [--id-rows 1000] [--ood-rows 300] [--device auto]
                                          [--no-cubes | --cubes all] [--cubes-only] [--jobs 2]

Another CIFAR-10 recipe and its blocks, e.g. a timm ViT's (token maps, docs/where.md):

    python scripts/build_layer_bundles.py --recipe NAME --layers blocks.1,blocks.3,blocks.5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: recipe -> the layers ``make layers`` caches
RECIPES = {"cifar10_resnet20": ["layer1", "layer2", "layer3"],
           "cifar10_resnet56": ["layer1", "layer2", "layer3"],
           "cifar10_vit_hybrid": [f"blocks.{i}" for i in range(4)]}
#: demos whose weights are trained here (scripts/NAME), not part of ../shared/data
TRAINED = {"cifar10_vit_hybrid": "train_vit_cifar.py"}
#: bundles whose cubes ``make layers`` builds by default (``--cubes all``: every bundle's)
CUBE_BUNDLES = ("cifar10_resnet20",)
#: the variant the dashboard opens with (dashboard.state.DEFAULT_METHOD; the dashboard sits
#: above the scripts' imports, so tests/test_layer_cube_prebuild.py checks they agree)
CUBE_METHOD = "ash-s"


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


def build_cubes(path: Path, method: str = CUBE_METHOD, jobs: int = 2, device: str = "cpu",
                log=print) -> list:
    """Build the cube of ``method`` at every inner layer of the bundle at ``path`` into its disk
    cache (both sweeps of each layer are jobs for ``jobs`` processes, the costliest first:
    the layers nearest the input, the 80 p before the 20); each cube then read back with
    ``layer_cube`` as the dashboard reads it. Returns those cubes."""
    from ash_core import load_bundle
    from ash_core.layers import open_layers
    from ash_core.layers.cube import PARTS, build_part, layer_cube

    bundle = load_bundle(path)
    maps = open_layers(bundle)
    layers = [n for n in maps.names if n in maps.layers and maps.info(n).tail] if maps else []
    todo = [(layer, grid) for layer in layers for grid in sorted(PARTS, key=len, reverse=True)]
    t0 = time.perf_counter()
    spent: dict[str, list[float]] = {}
    with ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(build_part, str(path), layer, grid, method, device)
                   for layer, grid in todo]
        for future in futures:
            layer, n_p, wall, cpu, cached = future.result()
            total = spent.setdefault(layer, [0.0, 0.0])
            total[0], total[1] = total[0] + wall, total[1] + cpu
            log(f"cube {bundle.name} {method} {layer}: {n_p} p "
                f"{'read from the cache' if cached else 'built'} in {wall:.1f} s wall, "
                f"{cpu:.1f} s CPU")
    cubes = [layer_cube(bundle, method, layer, device=device) for layer in layers]
    for layer, cube in zip(layers, cubes, strict=True):
        wall, cpu = spent[layer]
        log(f"cube {bundle.name} {method} {layer} (p = 0..99): {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU in its workers; on disk: {cube.cached}")
    log(f"cubes of {bundle.name}: {time.perf_counter() - t0:.1f} s wall on {jobs} processes "
        f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return cubes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id-rows", type=int, default=1000)
    ap.add_argument("--ood-rows", type=int, default=300)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", choices=list(RECIPES), help="build one bundle")
    ap.add_argument("--recipe", help="build this configs/NAME.json recipe's bundle instead")
    ap.add_argument("--layers", help="blocks to cache (default: the recipe's in RECIPES, "
                                     "else layer1,layer2,layer3)")
    ap.add_argument("--no-cubes", action="store_true",
                    help="skip the layer cubes (the dashboard builds them when first needed)")
    ap.add_argument("--cubes", choices=["default", "all"], default="default",
                    help="whose cubes to build: ResNet-20's (default) or every bundle's")
    ap.add_argument("--cubes-only", action="store_true",
                    help="build the cubes of bundles already extracted, extracting nothing")
    ap.add_argument("--jobs", type=int, default=2, help="processes building cubes")
    args = ap.parse_args(argv)
    if args.no_cubes and (args.cubes_only or args.cubes == "all"):
        ap.error("--no-cubes contradicts --cubes all / --cubes-only; give one of them")
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, not {args.jobs}")
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
        if args.cubes_only and not Path(cfg.out).is_dir():
            print(f"error: {cfg.out} is not extracted; run without --cubes-only first.",
                  file=sys.stderr)
            return 2
        if not args.cubes_only:
            extract(cfg, log=lambda s: print(s, flush=True))
        if not args.no_cubes and (args.cubes == "all" or name in CUBE_BUNDLES):
            build_cubes(Path(cfg.out), jobs=args.jobs, device=args.device,
                        log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
