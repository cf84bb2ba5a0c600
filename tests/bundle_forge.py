"""Bundles written byte by byte, behind the writer's back: whatever the format's rules
allow or forbid (D = 0, empty splits, lying ``n``, hostile manifest values), with the
sha256 of every file recorded, so the loader's checks are what decides."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file


def _save(root: Path, rel: str, arrays: dict[str, np.ndarray], files: dict[str, str]) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))
    files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return rel


def forge(root: Path, weight: np.ndarray, bias: np.ndarray, splits: list[dict[str, Any]],
          dtype: str = "float32", variants: dict | None = None,
          edit: Callable[[dict], Any] | None = None) -> Path:
    """A bundle at ``root``: ``splits`` are dicts of name, role, features, labels (optional),
    variants (optional: variant -> features), n (optional: what the manifest claims).
    ``edit(manifest)`` changes the manifest just before it is written."""
    root.mkdir(parents=True)
    files: dict[str, str] = {}
    _save(root, "head.safetensors", {"weight": np.asarray(weight, np.float32),
                                     "bias": np.asarray(bias, np.float32)}, files)
    entries = []
    for s in splits:
        arrays = {"features": np.asarray(s["features"], dtype)}
        if s.get("labels") is not None:
            arrays["labels"] = np.asarray(s["labels"], np.int64)
        entry = {"name": s["name"], "role": s["role"],
                 "file": _save(root, f"splits/{s['name']}.safetensors", arrays, files),
                 "n": s.get("n", len(arrays["features"]))}
        if s.get("variants"):
            entry["variants"] = {
                v: _save(root, f"variants/{v}/{s['name']}.safetensors",
                         {"features": np.asarray(f, dtype)}, files)
                for v, f in s["variants"].items()}
        entries.append(entry)
    weight = np.asarray(weight)
    manifest = {"format": "ash-bundle", "version": 1, "name": root.name,
                "feature_dim": int(weight.shape[1]), "num_classes": int(weight.shape[0]),
                "classes": [f"c{i}" for i in range(weight.shape[0])],
                "head": {"file": "head.safetensors"}, "feature_dtype": dtype,
                **({"variants": variants} if variants else {}),
                "splits": entries, "files": files}
    if edit is not None:
        edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def simple(root: Path, n_id: int = 12, n_ood: int = 8, dim: int = 6, classes: int = 3,
           seed: int = 0, **overrides: Any) -> Path:
    """A small valid bundle (id, id_fit, one ood) with ``overrides`` per split name, e.g.
    ``far={"features": np.zeros((0, 6))}``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(classes, dim))
    b = rng.normal(size=classes) * 0.1

    def f(n):
        return np.maximum(rng.normal(0.5, 1, (n, dim)), 0)

    splits = [dict(name="test", role="id", features=f(n_id), labels=rng.integers(0, classes, n_id)),
              dict(name="train", role="id_fit", features=f(n_id)),
              dict(name="far", role="ood", features=f(n_ood))]
    for s in splits:
        s.update(overrides.pop(s["name"], {}))
    return forge(root, w, b, splits, **overrides)
