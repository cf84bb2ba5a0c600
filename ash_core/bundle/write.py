"""``write_bundle``: check everything, write to a temp directory, publish atomically."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ash_core import faults
from ash_core.bundle.files import sha256_file, write_text
from ash_core.bundle.manifest import (
    FEATURE_DTYPES,
    FORMAT,
    MANIFEST,
    VERSION,
    check_groups,
    check_labels,
    check_split_roles,
    check_variant_params,
)
from ash_core.bundle.publish import check_replaceable, clean_leftovers, new_tmp_dir, publish
from ash_core.bundle.safetensors_io import write_tensors
from ash_core.errors import BundleError

_RESERVED = {"format", "version", "name", "feature_dim", "num_classes", "classes", "head",
             "feature_dtype", "splits", "files", "variants", "groups"}


@dataclass
class SplitData:
    """In-memory content of one split, for ``write_bundle``."""

    name: str
    role: str
    features: np.ndarray | torch.Tensor
    labels: np.ndarray | torch.Tensor | None = None
    meta: pd.DataFrame | None = None
    thumbnails: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: variant name -> features [N, D] of that variant (declared in ``write_bundle``'s
    #: ``variants``), stored as ``variants/<variant>/<split>.safetensors``
    variants: dict[str, np.ndarray | torch.Tensor] = field(default_factory=dict)


def write_bundle(
    path: str | os.PathLike,
    head_weight: np.ndarray | torch.Tensor,
    head_bias: np.ndarray | torch.Tensor,
    classes: Sequence[str],
    splits: Sequence[SplitData],
    provenance: Mapping[str, Any] | None = None,
    feature_dtype: str = "float32",
    overwrite: bool = False,
    name: str | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write a bundle atomically: it appears complete at ``path`` or not at all.

    Everything is written to a temporary sibling directory and renamed into place (see
    ``publish`` for the overwrite swap and the recovery of a killed writer's leftovers).
    ``feature_dtype`` is ``"float16"`` or ``"float32"`` (storage only; maths is fp32).
    Only an existing ASH bundle is ever overwritten. ``variants`` declares the feature
    variants the splits store (name -> the settings they were extracted with, e.g.
    ``{"odin": {"temperature": 1000.0, "epsilon": 0.0014}}``). ``groups`` names groups of
    OOD test splits (e.g. ``{"near": [...], "far": [...]}``); absent, the manifest has no key.
    """
    path = Path(path)
    clean_leftovers(path)
    check_replaceable(path, overwrite)
    weight, bias = _checked_head(head_weight, head_bias, classes)
    _check_options(feature_dtype, provenance)
    check_split_roles((s.name, s.role) for s in splits)
    variants = _checked_variants(variants, splits)
    if groups is not None:
        if isinstance(groups, Mapping):
            groups = {g: list(m) if isinstance(m, (list, tuple)) else m
                      for g, m in groups.items()}
        check_groups(groups, ((s.name, s.role) for s in splits))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_tmp_dir(path)
    try:
        files: dict[str, str] = {}
        _save(tmp, "head.safetensors", {"weight": weight, "bias": bias}, files)
        entries = [_write_split(tmp, s, weight.shape, feature_dtype, files) for s in splits]
        manifest = {
            "format": FORMAT, "version": VERSION, "name": name or path.name,
            "feature_dim": int(weight.shape[1]), "num_classes": int(weight.shape[0]),
            "classes": list(map(str, classes)), "head": {"file": "head.safetensors"},
            "feature_dtype": feature_dtype, **dict(provenance or {}),
            **({"variants": variants} if variants else {}),
            **({"groups": groups} if groups is not None else {}),
            "splits": entries, "files": files,
        }
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        publish(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------- checks


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float32)
        return x.numpy()
    return np.asarray(x)


def _checked_head(head_weight, head_bias, classes) -> tuple[np.ndarray, np.ndarray]:
    weight = _to_numpy(head_weight).astype(np.float32)
    bias = _to_numpy(head_bias).astype(np.float32)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise BundleError(
            f"head weight must be [C, D] and bias [C]; got {weight.shape} and {bias.shape}."
        )
    if len(classes) != weight.shape[0]:
        raise BundleError(f"{len(classes)} class names for a head with {weight.shape[0]} outputs.")
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise BundleError("the head's weight or bias contains NaN/Inf; fix the model first.")
    return weight, bias


def _check_options(feature_dtype: str, provenance: Mapping[str, Any] | None) -> None:
    if feature_dtype not in FEATURE_DTYPES:
        raise BundleError(f"feature_dtype must be 'float16' or 'float32', got {feature_dtype!r}.")
    clash = _RESERVED & set(provenance or {})
    if clash:
        raise BundleError(
            f"provenance key(s) {sorted(clash)} would overwrite the manifest's own fields; "
            "rename them."
        )


def _checked_variants(variants: Mapping[str, Mapping[str, Any]] | None,
                      splits: Sequence[SplitData]) -> dict[str, dict[str, Any]]:
    """``variants`` as a plain dict, checked, with every split's variants declared in it."""
    if variants is None:
        variants = {}
    declared = {k: dict(v) if isinstance(v, Mapping) else v for k, v in variants.items()} \
        if isinstance(variants, Mapping) else variants
    check_variant_params(declared)
    for s in splits:
        unknown = sorted(set(s.variants) - set(declared))
        if unknown:
            raise BundleError(f"split {s.name!r} stores variant(s) {unknown} that are not "
                              "declared; pass their settings in write_bundle(variants=...).")
    return declared


def _stored_features(s: SplitData, dim: int, feature_dtype: str,
                     feats: np.ndarray | torch.Tensor | None = None,
                     what: str | None = None) -> np.ndarray:
    """The split's features (or ``feats``, one of its variants, named by ``what``) checked
    and cast to ``feature_dtype``."""
    feats = _to_numpy(s.features if feats is None else feats)
    name = what or repr(s.name)
    if feats.ndim != 2 or feats.shape[1] != dim:
        raise BundleError(
            f"split {name}: features must be [N, {dim}] to match the head, got {feats.shape}."
        )
    if feats.shape[0] == 0:
        raise BundleError(f"split {name} is empty; every split needs samples.")
    if not np.isfinite(feats).all():
        raise BundleError(f"split {name} contains NaN/Inf features; fix the extraction first.")
    with np.errstate(over="ignore"):
        stored = feats.astype(feature_dtype)
    if not np.isfinite(stored).all():
        raise BundleError(
            f"split {name}: {int((~np.isfinite(stored)).sum())} feature values exceed the "
            f"{feature_dtype} range (max |x| = {np.abs(feats).max():g}); store them with "
            "feature_dtype='float32'."
        )
    return stored


def _stored_labels(s: SplitData, n: int, num_classes: int) -> np.ndarray | None:
    if s.labels is None:
        check_labels(s.name, s.role, None, n, num_classes)
        return None
    raw = _to_numpy(s.labels)
    if raw.shape != (n,):
        raise BundleError(f"split {s.name!r}: labels shape {raw.shape} != ({n},).")
    if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and
                                           np.array_equal(raw, np.round(raw))):
        raise BundleError(f"split {s.name!r}: labels must be integers, got {raw.dtype}.")
    labels = raw.astype(np.int64)
    check_labels(s.name, s.role, labels, n, num_classes)
    return labels


# --------------------------------------------------------------------------- files


def _save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_tensors(path, arrays)


def _save(tmp: Path, rel: str, arrays: Mapping[str, np.ndarray], files: dict[str, str]) -> None:
    (tmp / rel).parent.mkdir(exist_ok=True)
    _save_arrays(tmp / rel, arrays)
    files[rel] = sha256_file(tmp / rel)


def _sidecar(s: SplitData, labels: np.ndarray | None, n: int) -> pd.DataFrame:
    meta = s.meta
    if meta is None:
        meta = pd.DataFrame({"sample_id": np.arange(n)})
        meta["label"] = labels if labels is not None else -1
        meta["source"] = ""
    if len(meta) != n:
        raise BundleError(f"split {s.name!r}: sidecar has {len(meta)} rows for {n} samples.")
    return meta


def _write_split(tmp: Path, s: SplitData, head_shape: tuple[int, int], feature_dtype: str,
                 files: dict[str, str]) -> dict[str, Any]:
    """Write one split's files into ``tmp``; returns its manifest entry."""
    feats = _stored_features(s, head_shape[1], feature_dtype)
    n = feats.shape[0]
    labels = _stored_labels(s, n, head_shape[0])
    meta = _sidecar(s, labels, n)
    rel = f"splits/{s.name}.safetensors"
    arrays = {"features": feats} if labels is None else {"features": feats, "labels": labels}
    _save(tmp, rel, arrays, files)
    entry: dict[str, Any] = {"name": s.name, "role": s.role, "file": rel, "n": int(n),
                             "meta": f"splits/{s.name}.csv"}
    write_text(tmp / entry["meta"], meta.to_csv(index=False))
    files[entry["meta"]] = sha256_file(tmp / entry["meta"])
    if s.thumbnails is not None:
        thumbs = np.asarray(s.thumbnails, dtype=np.uint8)
        if thumbs.ndim not in (3, 4) or thumbs.shape[0] != n:
            raise BundleError(
                f"split {s.name!r}: {thumbs.shape[0] if thumbs.ndim else 0} thumbnails for "
                f"{n} samples (need [{n}, H, W] or [{n}, H, W, 3] uint8)."
            )
        entry["thumbnails"] = f"thumbs/{s.name}.safetensors"
        _save(tmp, entry["thumbnails"], {"images": thumbs}, files)
    if s.variants:
        entry["variants"] = _write_variants(tmp, s, n, head_shape[1], feature_dtype, files)
    clash = set(s.info) & {"name", "role", "file", "n", "meta", "thumbnails", "variants"}
    if clash:
        raise BundleError(f"split {s.name!r}: info key(s) {sorted(clash)} would overwrite the "
                          "split's own manifest fields; rename them.")
    entry.update(s.info)
    faults.checkpoint("write_bundle.split_written")
    return entry


def _write_variants(tmp: Path, s: SplitData, n: int, dim: int, feature_dtype: str,
                    files: dict[str, str]) -> dict[str, str]:
    """Write each variant's features of split ``s``; returns variant -> relative path."""
    rels = {}
    for variant, feats in s.variants.items():
        what = f"{s.name!r} (variant {variant!r})"
        stored = _stored_features(s, dim, feature_dtype, feats, what)
        if stored.shape[0] != n:
            raise BundleError(f"split {what}: {stored.shape[0]} rows for {n} samples; a "
                              "variant has one row per sample of its split.")
        rels[variant] = f"variants/{variant}/{s.name}.safetensors"
        (tmp / rels[variant]).parent.mkdir(parents=True, exist_ok=True)
        _save(tmp, rels[variant], {"features": stored}, files)
    return rels
