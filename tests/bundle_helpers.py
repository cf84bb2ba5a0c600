"""Helpers for the bundle tests: a tiny bundle, and editing one behind the writer's back."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from ash_core import SplitData, write_bundle


def small_splits(dim: int = 8, n: int = 20, seed: int = 0) -> list[SplitData]:
    rng = np.random.default_rng(seed)
    feats = np.maximum(rng.normal(size=(n, dim)), 0).astype(np.float32)
    return [
        SplitData("id_test", "id", feats, rng.integers(0, 3, n)),
        SplitData("id_train", "id_fit", feats + 0.5),
        SplitData("ood_a", "ood", feats * 2),
    ]


def small_head(dim: int = 8, classes: int = 3):
    rng = np.random.default_rng(1)
    return rng.normal(size=(classes, dim)).astype(np.float32), np.zeros(classes, np.float32)


def write_small(path: Path, **kwargs) -> Path:
    w, b = small_head()
    return write_bundle(path, w, b, ["a", "b", "c"], kwargs.pop("splits", small_splits()),
                        {"model": {"name": "tiny"}}, **kwargs)


def raw_safetensors(path: Path, header: dict, data: bytes) -> None:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def edit_manifest(root: Path, fn) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    fn(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def rehash(root: Path, rel: str) -> None:
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    edit_manifest(root, lambda m: m["files"].__setitem__(rel, digest))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []
