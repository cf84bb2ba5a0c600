#!/usr/bin/env python
"""Train the hybrid ViT of the cifar10_vit_hybrid demo bundle on CIFAR-10, seeded, on the CPU.

    python scripts/train_vit_cifar.py                 # -> weights/vit_hybrid_cifar10.safetensors
    python scripts/train_vit_cifar.py --epochs 2      # a quick run

The network is ``ash_core.models.vit_cifar`` (timm's VisionTransformer over a ResNet-56 stem).
The stem is frozen at the public CIFAR ResNet-56 weights, so its maps are computed once (the
training images and their mirror images) and the transformer is trained on the cached maps,
augmented by a random shift of up to one map cell (two pixels) and a random choice of the
mirrored copy. Only the recipe's id_fit images are trained on: the split specs are read from
the recipe (configs/cifar10_vit_hybrid.json), so id_val stays a validation set (its accuracy
is logged after every epoch; nothing is chosen on it) and the test set is never read.

Seeded (torch, numpy), deterministic algorithms, a fixed thread count: the same machine gives
the same weights. The weights (stem included) go to a safetensors file and the training log
(seed, epochs, wall time, CPU, accuracies) to a JSON file beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "cifar10_vit_hybrid.json"
STEM_WEIGHTS = "weights/resnet_cifar10/resnet56-4bfd9763.th"  # under the data root


def recipe_specs(recipe: Path = RECIPE) -> dict[str, str]:
    """The recipe's data specs by role for the splits training touches: id_fit and id_val."""
    raw = json.loads(recipe.read_text())
    specs = {s["role"]: s["data"] for s in raw["splits"] if s["role"] in ("id_fit", "id_val")}
    if set(specs) != {"id_fit", "id_val"}:
        raise SystemExit(f"error: {recipe} needs one id_fit and one id_val split.")
    return specs


def split_sources(spec: str, data_root: Path):
    """The image source of one split, exactly as extraction reads it."""
    from ash_core.extract import parse_spec

    return parse_spec(spec, data_root, (32, 32, 3))


def load_images(source) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised [N, 3, 32, 32] inputs and labels, by the extraction's own protocol."""
    from ash_core.extract import make_protocol
    from ash_core.models.vit_cifar import MEAN, STD

    protocol = make_protocol("cifar", 32, 3, MEAN, STD)
    arr = np.stack([protocol.to_uint8(source.image(k)) for k in range(len(source))])
    return protocol.normalise(torch.from_numpy(arr)), torch.as_tensor(source.labels()).long()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from ash_core.extract import read_state_dict as read

    return read(path)


def stem_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CIFAR ResNet state dict's entries that the stem has (conv1, bn1, layer1, layer2)."""
    return {k: v for k, v in sd.items() if k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")}


def sources_sha256(sources: list[str]) -> str:
    """A digest of a split's image list (paths relative to the data root, in order)."""
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()


@torch.no_grad()
def stem_maps(stem: nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([stem(x[i:i + batch]) for i in range(0, len(x), batch)])


def shifted(maps: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each map moved by -1..1 cells in each direction (zero fill): a 2-pixel image shift."""
    n, _, h, w = maps.shape
    padded = F.pad(maps, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(model: nn.Module, maps: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    logits = torch.cat([model(maps[i:i + 500]) for i in range(0, len(maps), 500)])
    return float((logits.argmax(1) == labels).float().mean())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(args: argparse.Namespace) -> dict:
    """Train, write the weights and the log; torch's global settings are restored after."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            return _train(args)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        np.random.set_state(np_state)


def _train(args: argparse.Namespace) -> dict:
    import timm

    from ash_core.bundle.safetensors_io import write_tensors
    from ash_core.models.vit_cifar import NAME

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data_root = Path(args.data_root)
    specs = recipe_specs(Path(args.recipe))

    model = timm.create_model(NAME, drop_path_rate=args.drop_path)
    stem = model.patch_embed.backbone
    stem.load_state_dict(stem_keys(read_state_dict(data_root / STEM_WEIGHTS)))
    stem.eval().requires_grad_(False)
    fit_source = split_sources(specs["id_fit"], data_root)
    x_fit, y_fit = load_images(fit_source)
    x_val, y_val = load_images(split_sources(specs["id_val"], data_root))
    fit = torch.stack([stem_maps(stem, x_fit), stem_maps(stem, x_fit.flip(3))])  # [2, N, ...]
    val = stem_maps(stem, x_val)
    stem_s = time.perf_counter() - start
    print(f"stem maps: {tuple(fit.shape)} id_fit (+ mirrored), {tuple(val.shape)} id_val, "
          f"{stem_s:.0f} s", flush=True)

    # the transformer sees the cached maps: the stem is swapped out while training
    model.patch_embed.backbone = nn.Identity()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    n = fit.shape[1]
    steps_per_epoch = math.ceil(n / args.batch_size)
    total, warmup = args.epochs * steps_per_epoch, steps_per_epoch
    log = []
    step = 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        mirror = torch.randint(0, 2, (n,), generator=gen)
        seen = loss_sum = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            maps = shifted(fit[mirror[idx], idx], gen)
            lr = args.lr * min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total)))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(model(maps), y_fit[idx], label_smoothing=args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
        val_acc = accuracy(model, val, y_val)
        entry = {"epoch": epoch + 1, "train_loss": round(loss_sum / seen, 4),
                 "id_val_accuracy": round(val_acc, 4),
                 "elapsed_s": round(time.perf_counter() - start, 1)}
        log.append(entry)
        print(json.dumps(entry), flush=True)

    model.patch_embed.backbone = stem
    model.eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().numpy() for k, v in model.state_dict().items()}
    write_tensors(out, state, {"architecture": NAME, "trained_by": "scripts/train_vit_cifar.py"})
    info = {"architecture": NAME, "weights": str(out), "seed": args.seed, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
            "label_smoothing": args.smoothing, "drop_path_rate": args.drop_path,
            "augmentation": "mirrored copy (random), shift of -1..1 map cells (2 px)",
            "threads": args.threads, "cpu": cpu_name(), "torch": torch.__version__,
            "timm": timm.__version__, "python": platform.python_version(),
            "train_split": specs["id_fit"], "validation_split": specs["id_val"],
            "train_images": int(n), "train_sources_sha256": sources_sha256(fit_source.sources()),
            "stem": f"{STEM_WEIGHTS} (frozen; stages 1-2)",
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in params),
            "stem_maps_s": round(stem_s, 1), "wall_s": round(time.perf_counter() - start, 1),
            # on a shared machine the wall time depends on the other jobs; CPU time less so
            "cpu_s": round(time.process_time() - cpu_start, 1),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "final_id_val_accuracy": log[-1]["id_val_accuracy"] if log else None,
            "epochs_log": log}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json').name}: id_val accuracy "
          f"{info['final_id_val_accuracy']}, {info['wall_s']:.0f} s", flush=True)
    return info


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--recipe", default=str(RECIPE), help="the recipe whose id_fit is trained on")
    ap.add_argument("--out", default=str(REPO / "weights" / "vit_hybrid_cifar10.safetensors"))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--drop-path", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        print("error: --epochs must be at least 1.", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
