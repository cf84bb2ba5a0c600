"""The feature-bundle format: read (memory-mapped, never pickle) and write (atomic).

A bundle is a directory::

    manifest.json                 format, version, classes, provenance, splits, file hashes
    head.safetensors              weight [C, D], bias [C]
    splits/<name>.safetensors     features [N, D] (fp16/fp32), labels [N] int64 (optional)
    splits/<name>.csv             sidecar: sample_id, label, source (one row per sample)
    thumbs/<name>.safetensors     optional: images [N, H, W, 3] uint8 (redistributable sets only)

See the README section "Feature bundle format" for the full specification.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import BundleError
from .safetensors_io import looks_pickled as _looks_pickled
from .safetensors_io import read_tensors, write_tensors

FORMAT = "ash-bundle"
VERSION = 1
ROLES = ("id", "id_fit", "ood")
MANIFEST = "manifest.json"

def read_safetensors(path: Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Compatibility name for ``safetensors_io.read_tensors`` (strictly validated)."""
    return read_tensors(path, mmap=mmap)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class SplitInfo:
    """One split as declared in the manifest."""

    name: str
    role: str
    file: str
    n: int
    meta: str | None = None
    thumbnails: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Split:
    """A loaded split. ``features`` is a read-only memory map; ``features_tensor()`` copies."""

    def __init__(self, info: SplitInfo, root: Path, arrays: dict[str, np.ndarray],
                 thumbnails_sha256: str | None = None):
        self.info = info
        self.root = root
        self._arrays = arrays
        #: checked when the thumbnails are first read (they are loaded lazily)
        self._thumbnails_sha256 = thumbnails_sha256

    name = property(lambda self: self.info.name)
    role = property(lambda self: self.info.role)

    def __len__(self) -> int:
        return self.info.n

    def __repr__(self) -> str:
        return f"Split({self.name!r}, role={self.role!r}, n={len(self)}, dim={self.dim})"

    @property
    def features(self) -> np.ndarray:
        return self._arrays["features"]

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def labels(self) -> np.ndarray | None:
        return self._arrays.get("labels")

    def features_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A fresh (writable, unshared) tensor copy of the features."""
        return torch.from_numpy(np.array(self.features, dtype=np.float32)).to(dtype)

    def labels_tensor(self) -> torch.Tensor | None:
        """A fresh int64 tensor copy of the labels, or None when the split has none."""
        labels = self.labels
        return None if labels is None else torch.from_numpy(np.array(labels, dtype=np.int64))

    @cached_property
    def meta(self) -> pd.DataFrame:
        """Per-sample sidecar table (sample_id, label, source); synthesised if absent."""
        if self.info.meta:
            return pd.read_csv(_inside(self.root, self.info.meta), keep_default_na=False)
        labels = self.labels
        return pd.DataFrame(
            {
                "sample_id": np.arange(len(self)),
                "label": labels if labels is not None else -1,
                "source": "",
            }
        )

    @cached_property
    def thumbnails(self) -> np.ndarray | None:
        """uint8 images [N, H, W, 3] (or [N, H, W]) if the bundle ships them."""
        if not self.info.thumbnails:
            return None
        path = _inside(self.root, self.info.thumbnails)
        if self._thumbnails_sha256 is not None and sha256_file(path) != self._thumbnails_sha256:
            raise BundleError(
                f"bundle {self.root}: {self.info.thumbnails} does not match the sha256 in the "
                "manifest: it was modified or corrupted after writing. Re-create the bundle."
            )
        images = read_safetensors(path).get("images")
        if images is not None and (images.ndim not in (3, 4) or images.shape[0] != len(self)):
            raise BundleError(
                f"bundle {self.root}: {self.info.thumbnails} holds images of shape "
                f"{images.shape}; expected [{len(self)}, H, W] or [{len(self)}, H, W, 3]."
            )
        return images


def _inside(root: Path, rel: str) -> Path:
    """Resolve a manifest path and refuse anything that escapes the bundle directory."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"manifest path {rel!r} is not a non-empty relative path.")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise BundleError(
            f"manifest path {rel!r} is absolute; bundle paths must be relative to the bundle "
            "directory."
        )
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise BundleError(
            f"manifest path {rel!r} escapes the bundle directory {root}; refusing to read it. "
            "Bundle files must live inside the bundle directory."
        )
    return resolved


class Bundle:
    """A loaded feature bundle (see the module docstring for the layout)."""

    def __init__(self, root: Path, manifest: dict[str, Any], head: dict[str, np.ndarray],
                 splits: list[Split]):
        self.root = root
        self.manifest = manifest
        self._head = head
        self.splits = splits

    def __repr__(self) -> str:
        return f"Bundle({str(self.root)!r}, dim={self.dim}, splits={[s.name for s in self.splits]})"

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.name)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def dim(self) -> int:
        return int(self._head["weight"].shape[1])

    @property
    def head_weight(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self._head["weight"], dtype=np.float32))

    @property
    def head_bias(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self._head["bias"], dtype=np.float32))

    @property
    def content_hash(self) -> str:
        """A hash of every file's sha256 and of the manifest: identifies the bundle's content."""
        h = hashlib.sha256()
        h.update(json.dumps(self.manifest, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def split(self, name: str) -> Split:
        """The split called ``name``; BundleError listing the available ones otherwise."""
        for s in self.splits:
            if s.name == name:
                return s
        raise BundleError(
            f"no split named {name!r} in bundle {self.root}; available: "
            f"{', '.join(s.name for s in self.splits)}."
        )

    def by_role(self, role: str) -> list[Split]:
        """Every split with this role (``id``, ``id_fit`` or ``ood``), in manifest order."""
        return [s for s in self.splits if s.role == role]

    @property
    def id_split(self) -> Split:
        return self.by_role("id")[0]

    @property
    def id_fit(self) -> Split | None:
        fits = self.by_role("id_fit")
        return fits[0] if fits else None

    @property
    def ood_splits(self) -> list[Split]:
        return self.by_role("ood")

    def select_ood(self, names: Iterable[str] | None) -> list[Split]:
        """OOD splits by name (all when ``names`` is None), with a clear error for unknown names."""
        if names is None:
            return self.ood_splits
        names = [names] if isinstance(names, str) else list(names)  # not list("near")
        known = {s.name: s for s in self.ood_splits}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BundleError(
                f"unknown OOD split(s) {', '.join(map(repr, unknown))} in bundle {self.name}; "
                f"available: {', '.join(known) or '(none)'}."
            )
        return [known[n] for n in names]


def _check_manifest(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(
            f"{where} is not an ASH bundle manifest (missing \"format\": \"{FORMAT}\")."
        )
    if manifest.get("version") != VERSION:
        raise BundleError(
            f"{where}: bundle version {manifest.get('version')!r} is not supported by this "
            f"ash_core (supports version {VERSION}); upgrade ASH Explorer or re-extract."
        )
    for key in ("head", "classes", "splits"):
        if key not in manifest:
            raise BundleError(f"{where}: manifest lacks the required key {key!r}.")
    if not isinstance(manifest["head"], dict) or "file" not in manifest["head"]:
        raise BundleError(
            f"{where}: manifest \"head\" must be an object with a \"file\" entry, got "
            f"{manifest['head']!r}."
        )
    if not isinstance(manifest["classes"], list):
        raise BundleError(f"{where}: manifest \"classes\" must be a list of class names.")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise BundleError(
            f"{where}: manifest \"files\" must be an object mapping each relative path to "
            "its sha256 hex digest; the manifest is corrupt or was edited by hand. Re-create "
            "the bundle."
        )
    splits = manifest["splits"]
    if not isinstance(splits, list) or not splits:
        raise BundleError(f"{where}: manifest \"splits\" must be a non-empty list.")
    names = [s.get("name") for s in splits if isinstance(s, dict)]
    if len(names) != len(splits) or len(set(names)) != len(names):
        raise BundleError(f"{where}: split entries must be objects with unique names.")
    for s in splits:
        for key in ("name", "role", "file", "n"):
            if key not in s:
                raise BundleError(f"{where}: split {s.get('name')!r} lacks the key {key!r}.")
        n = s["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise BundleError(
                f"{where}: split {s['name']!r}: 'n' must be a non-negative integer, got {n!r}."
            )
        if s["role"] not in ROLES:
            raise BundleError(
                f"{where}: split {s['name']!r} has role {s['role']!r}; roles are "
                f"{', '.join(ROLES)}."
            )
    n_id = sum(s["role"] == "id" for s in splits)
    if n_id != 1:
        raise BundleError(
            f"{where}: a bundle needs exactly one split with role 'id' (the ID test set), "
            f"found {n_id}."
        )


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Open a bundle directory (memory-mapped; nothing is unpickled).

    ``verify`` checks every file against the sha256 recorded in the manifest, which
    detects tampering; shapes, dtypes and sizes are always checked.
    """
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist; pass a bundle directory.")
    if root.is_file():
        with open(root, "rb") as fh:
            magic = fh.read(9)
        if _looks_pickled(magic):
            raise BundleError(
                f"{root} is a pickle/torch.save file, not an ASH bundle. ASH Explorer never "
                "unpickles files (that can run arbitrary code). Create a bundle directory with "
                "`ash-explore extract` or `ash_core.write_bundle`."
            )
        raise BundleError(
            f"{root} is a file; a bundle is a directory containing {MANIFEST}."
        )
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{root} has no {MANIFEST}; it is not an ASH bundle (or was not written "
            "completely). Re-create it with `ash-explore extract`."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}).") from None
    _check_manifest(manifest, manifest_path)

    hashes: dict[str, str] = manifest.get("files", {})

    def open_file(rel: str) -> dict[str, np.ndarray]:
        full = _inside(root, rel)
        if not full.is_file():
            raise BundleError(f"bundle {root}: file {rel!r} named in the manifest is missing.")
        if verify and rel in hashes and sha256_file(full) != hashes[rel]:
            raise BundleError(
                f"bundle {root}: {rel} does not match the sha256 in the manifest: it was "
                "modified or corrupted after writing. Re-create the bundle."
            )
        try:
            return read_safetensors(full)
        except BundleError:
            raise
        except (OSError, ValueError) as exc:
            raise BundleError(f"bundle {root}: cannot read {rel} ({exc}).") from None

    head = open_file(manifest["head"]["file"])
    for key in ("weight", "bias"):
        if key not in head:
            raise BundleError(f"bundle {root}: head file lacks the tensor {key!r}.")
    weight, bias = head["weight"], head["bias"]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise BundleError(
            f"bundle {root}: head weight must be [C, D] and bias [C]; got {weight.shape} "
            f"and {bias.shape}."
        )
    if len(manifest["classes"]) != weight.shape[0]:
        raise BundleError(
            f"bundle {root}: {len(manifest['classes'])} class names but the head has "
            f"{weight.shape[0]} outputs."
        )
    dim = int(weight.shape[1])

    splits: list[Split] = []
    for entry in manifest["splits"]:
        known = {"name", "role", "file", "n", "meta", "thumbnails"}
        info = SplitInfo(
            name=entry["name"], role=entry["role"], file=entry["file"], n=int(entry["n"]),
            meta=entry.get("meta"), thumbnails=entry.get("thumbnails"),
            extra={k: v for k, v in entry.items() if k not in known},
        )
        if info.meta:
            meta_path = _inside(root, info.meta)
            if not meta_path.is_file():
                raise BundleError(f"bundle {root}: sidecar {info.meta!r} is missing.")
            if verify and info.meta in hashes and sha256_file(meta_path) != hashes[info.meta]:
                raise BundleError(
                    f"bundle {root}: {info.meta} does not match the sha256 in the manifest; "
                    "re-create the bundle."
                )
        if info.thumbnails:
            _inside(root, info.thumbnails)
        arrays = open_file(info.file)
        feats = arrays.get("features")
        if feats is None or feats.ndim != 2:
            raise BundleError(
                f"bundle {root}: split {info.name!r} must hold 'features' of shape [N, D]."
            )
        if feats.shape[1] != dim:
            raise BundleError(
                f"bundle {root}: split {info.name!r} has feature dimension {feats.shape[1]} but "
                f"the head expects {dim}; the features and head come from different models or "
                "layers. Re-extract the bundle."
            )
        if feats.shape[0] != info.n:
            raise BundleError(
                f"bundle {root}: split {info.name!r} declares n={info.n} but holds "
                f"{feats.shape[0]} samples."
            )
        labels = arrays.get("labels")
        if labels is not None and labels.shape != (info.n,):
            raise BundleError(
                f"bundle {root}: split {info.name!r} labels have shape {labels.shape}, "
                f"expected ({info.n},)."
            )
        thumbs_sha = hashes.get(info.thumbnails) if verify and info.thumbnails else None
        splits.append(Split(info, root, arrays, thumbs_sha))
    return Bundle(root, manifest, head, splits)


# --------------------------------------------------------------------------- writing


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


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float32)
        return x.numpy()
    return np.asarray(x)


def _save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_tensors(path, arrays)


_SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_split_name(name: str) -> str:
    """``name`` if it is a safe split/file name (letters, digits, ``-_.``), else BundleError."""
    if not name or not set(name) <= _SAFE_NAME or name.startswith("."):
        raise BundleError(
            f"split name {name!r} is not allowed; use letters, digits, '-', '_' and '.'."
        )
    return name


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
) -> Path:
    """Write a bundle atomically: it appears complete at ``path`` or not at all.

    Everything is written to a temporary sibling directory and renamed into place.
    ``feature_dtype`` is ``"float16"`` or ``"float32"`` (storage only; maths is fp32).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(
            f"{path} already exists; choose another path or pass overwrite=True (--overwrite)."
        )
    if feature_dtype not in ("float16", "float32"):
        raise BundleError(f"feature_dtype must be 'float16' or 'float32', got {feature_dtype!r}.")
    weight = _to_numpy(head_weight).astype(np.float32)
    bias = _to_numpy(head_bias).astype(np.float32)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise BundleError(
            f"head weight must be [C, D] and bias [C]; got {weight.shape} and {bias.shape}."
        )
    if len(classes) != weight.shape[0]:
        raise BundleError(f"{len(classes)} class names for a head with {weight.shape[0]} outputs.")
    roles = [s.role for s in splits]
    if roles.count("id") != 1:
        raise BundleError(f"a bundle needs exactly one 'id' split, got {roles.count('id')}.")
    names = [check_split_name(s.name) for s in splits]
    if len(set(names)) != len(names):
        raise BundleError(f"split names must be unique, got {names}.")

    reserved = {"format", "version", "name", "feature_dim", "num_classes", "classes", "head",
                "feature_dtype", "splits", "files"}
    clash = reserved & set(provenance or {})
    if clash:
        raise BundleError(
            f"provenance key(s) {sorted(clash)} would overwrite the manifest's own fields; "
            "rename them."
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        files: dict[str, str] = {}

        def record(rel: str) -> None:
            files[rel] = sha256_file(tmp / rel)

        _save_arrays(tmp / "head.safetensors", {"weight": weight, "bias": bias})
        record("head.safetensors")
        (tmp / "splits").mkdir()
        entries = []
        for s in splits:
            if s.role not in ROLES:
                raise BundleError(f"split {s.name!r}: role must be one of {ROLES}, got {s.role!r}.")
            feats = _to_numpy(s.features)
            if feats.ndim != 2 or feats.shape[1] != weight.shape[1]:
                raise BundleError(
                    f"split {s.name!r}: features must be [N, {weight.shape[1]}] to match the "
                    f"head, got {feats.shape}."
                )
            if feats.shape[0] == 0:
                raise BundleError(f"split {s.name!r} is empty; every split needs samples.")
            if not np.isfinite(feats).all():
                raise BundleError(
                    f"split {s.name!r} contains NaN/Inf features; fix the extraction first."
                )
            with np.errstate(over="ignore"):
                stored = feats.astype(feature_dtype)
            if not np.isfinite(stored).all():
                raise BundleError(
                    f"split {s.name!r}: {int((~np.isfinite(stored)).sum())} feature values "
                    f"exceed the {feature_dtype} range (max |x| = {np.abs(feats).max():g}); "
                    "store them with feature_dtype='float32'."
                )
            arrays: dict[str, np.ndarray] = {"features": stored}
            if s.labels is not None:
                labels = _to_numpy(s.labels).astype(np.int64)
                if labels.shape != (feats.shape[0],):
                    raise BundleError(
                        f"split {s.name!r}: labels shape {labels.shape} != ({feats.shape[0]},)."
                    )
                arrays["labels"] = labels
            rel = f"splits/{s.name}.safetensors"
            _save_arrays(tmp / rel, arrays)
            record(rel)
            entry: dict[str, Any] = {"name": s.name, "role": s.role, "file": rel,
                                     "n": int(feats.shape[0])}
            meta = s.meta
            if meta is None:
                meta = pd.DataFrame({"sample_id": np.arange(feats.shape[0])})
                meta["label"] = arrays.get("labels", -1)
                meta["source"] = ""
            if len(meta) != feats.shape[0]:
                raise BundleError(
                    f"split {s.name!r}: sidecar has {len(meta)} rows for {feats.shape[0]} samples."
                )
            meta_rel = f"splits/{s.name}.csv"
            meta.to_csv(tmp / meta_rel, index=False)
            record(meta_rel)
            entry["meta"] = meta_rel
            if s.thumbnails is not None:
                thumbs = np.asarray(s.thumbnails, dtype=np.uint8)
                if thumbs.shape[0] != feats.shape[0]:
                    raise BundleError(
                        f"split {s.name!r}: {thumbs.shape[0]} thumbnails for "
                        f"{feats.shape[0]} samples."
                    )
                (tmp / "thumbs").mkdir(exist_ok=True)
                thumb_rel = f"thumbs/{s.name}.safetensors"
                _save_arrays(tmp / thumb_rel, {"images": thumbs})
                record(thumb_rel)
                entry["thumbnails"] = thumb_rel
            entry.update(s.info)
            entries.append(entry)

        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "name": name or path.name,
            "feature_dim": int(weight.shape[1]),
            "num_classes": int(weight.shape[0]),
            "classes": list(map(str, classes)),
            "head": {"file": "head.safetensors"},
            "feature_dtype": feature_dtype,
            **dict(provenance or {}),
            "splits": entries,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _publish(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; an existing bundle is swapped out, never half-replaced."""
    if path.exists():
        if not overwrite:
            raise BundleError(f"{path} appeared while writing; not overwriting it.")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)  # put the previous bundle back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def negative_fraction(features: np.ndarray) -> float:
    """Share of negative activations (ASH assumes post-ReLU, non-negative features)."""
    arr = np.asarray(features)
    return float((arr < 0).mean()) if arr.size else 0.0

