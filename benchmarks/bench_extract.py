#!/usr/bin/env python
"""Extraction throughput vs a plain forward pass, over the same pre-loaded batches, in one run.

    python benchmarks/bench_extract.py --quick     # < 1 minute on 2 CPU cores
    python benchmarks/bench_extract.py             # more batches and rounds

"plain forward": ``model(x)`` on already-normalised float batches (the cheapest possible
baseline). "extraction": the full per-batch pipeline of ``ash-explore extract`` from uint8
images: normalisation, forward with the feature hook, copy to host, and writing the chunk
files (safetensors, atomic rename) to a work directory. Rounds alternate between the two so
that a busy machine affects both alike; the best round of each is reported. Goal: ratio >= 0.9.
Data loading (JPEG decoding) is excluded from both: it runs in DataLoader workers, in parallel.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
R20 = DATA / "weights" / "resnet_cifar10" / "resnet20-12fca82f.th"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from ash_core.extract import ExtractConfig, Extractor, SplitSpec
    from ash_core.extract.data import PreparedDataset, parse_spec
    from ash_core.extract.extractor import ChunkPlan

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 batches x 3 rounds (< 1 minute)")
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("--weights", default=str(R20) if R20.is_file() else None)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    n_batches = args.batches or (8 if args.quick else 24)
    rounds = args.rounds or (3 if args.quick else 5)

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    cfg = ExtractConfig(out=str(work / "bundle"), model=args.model, weights=args.weights,
                        device=args.device, batch_size=args.batch_size, chunk_batches=4,
                        splits=[SplitSpec("bench", "id", "noise:uniform")], progress=False)
    ex = Extractor(cfg, log=lambda s: None)
    n = n_batches * args.batch_size
    if (DATA / "cifar10" / "test").is_dir() and ex.shape == (32, 32, 3):
        src = parse_spec(f"folder:cifar10/test?limit={n}", DATA, ex.shape)
        what = "CIFAR-10 test JPEGs"
    else:
        src = parse_spec(f"noise:uniform?n={n}&seed=0", None, ex.shape)
        what = "uniform noise"
    ds = PreparedDataset(src, ex.protocol, range(len(src)), False)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=0)
    batches = list(loader)  # pre-loaded uint8 batches, shared by both measurements
    floats = [ex.protocol.normalise(x).to(ex.device) for x, _ in batches]
    model = ex.lm.model
    (ex.work / "bench").mkdir(parents=True, exist_ok=True)
    plan = ChunkPlan(n, cfg.batch_size * cfg.chunk_batches)

    def sync() -> None:
        if ex.device.type == "cuda":
            torch.cuda.synchronize()

    def plain() -> float:
        ex.hook.remove()  # the untouched model, full forward including the head
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            for x in floats:
                model(x)
        sync()
        rate = n / (time.perf_counter() - t)
        ex.hook.attach()
        return rate

    def extraction() -> float:
        for f in (ex.work / "bench").glob("*"):
            f.unlink()
        sync()
        t = time.perf_counter()
        ex.run_chunks("bench", batches, list(range(plan.count)), plan, thumbs=False)
        sync()
        return n / (time.perf_counter() - t)

    plain(), extraction()  # warm-up
    best_plain = best_extract = 0.0
    for _ in range(rounds):
        best_plain = max(best_plain, plain())
        best_extract = max(best_extract, extraction())
    ratio = best_extract / best_plain
    print(f"model {args.model} on {ex.device} ({torch.get_num_threads()} threads), {what}: "
          f"{n_batches} batches x {args.batch_size}, best of {rounds} rounds")
    print(f"plain forward      : {best_plain:8.0f} images/s")
    print(f"extraction pipeline: {best_extract:8.0f} images/s "
          "(normalise + hooked forward + chunk files)")
    print(f"ratio              : {ratio:8.3f}  (goal >= 0.9)")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
