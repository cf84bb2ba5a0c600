"""The loaded bundle: ``Bundle`` and its ``Split``s (read-only views of the files)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ash_core.bundle.files import inside, open_tensors
from ash_core.bundle.manifest import THUMB_TENSORS
from ash_core.bundle.safetensors_io import release_pages
from ash_core.errors import BundleError


@dataclass(frozen=True)
class SplitInfo:
    """One split as declared in the manifest."""

    name: str
    role: str
    file: str
    n: int
    meta: str | None = None
    thumbnails: str | None = None
    #: variant name -> relative path of that variant's features (e.g. "odin")
    variants: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


class Split:
    """A loaded split. ``features`` is a read-only memory map; ``features_tensor()`` copies."""

    def __init__(self, info: SplitInfo, root: Path, arrays: dict[str, np.ndarray],
                 thumbnails_sha256: str | None = None,
                 variants: Mapping[str, np.ndarray] | None = None):
        self.info = info
        self.root = root
        self._arrays = arrays
        #: variant name -> read-only memory map of its features [n, D]
        self._variants = dict(variants or {})
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
        """A fresh (writable, unshared) tensor copy of the features (the map's pages are
        then released: ``release_pages``)."""
        out = torch.from_numpy(np.array(self.features, dtype=np.float32)).to(dtype)
        self.release_pages()
        return out

    def release_pages(self) -> None:
        """Drop this split's memory-mapped pages from the process's resident memory after
        a full read (the maps stay valid; see ``safetensors_io.release_pages``)."""
        for arr in (*self._arrays.values(), *self._variants.values()):
            release_pages(arr)

    @property
    def variants(self) -> list[str]:
        """Names of the feature variants this split stores (e.g. ``["odin"]``)."""
        return list(self._variants)

    def variant_features_tensor(self, variant: str) -> torch.Tensor:
        """A fresh fp32 tensor copy of the features of ``variant`` (BundleError if absent)."""
        if variant not in self._variants:
            raise BundleError(
                f"split {self.name!r} has no {variant!r} variant (it has: "
                f"{', '.join(self._variants) or 'none'}); re-extract with that variant."
            )
        out = torch.from_numpy(np.array(self._variants[variant], dtype=np.float32))
        self.release_pages()
        return out

    def labels_tensor(self) -> torch.Tensor | None:
        """A fresh int64 tensor copy of the labels, or None when the split has none."""
        labels = self.labels
        return None if labels is None else torch.from_numpy(np.array(labels, dtype=np.int64))

    @cached_property
    def meta(self) -> pd.DataFrame:
        """Per-sample sidecar table (sample_id, label, source); synthesised if absent."""
        if self.info.meta:
            return pd.read_csv(inside(self.root, self.info.meta), keep_default_na=False)
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
        images = open_tensors(self.root, self.info.thumbnails, self._thumbnails_sha256,
                              THUMB_TENSORS).get("images")
        if images is not None and (images.ndim not in (3, 4) or images.shape[0] != len(self)):
            raise BundleError(
                f"bundle {self.root}: {self.info.thumbnails} holds images of shape "
                f"{images.shape}; expected [{len(self)}, H, W] or [{len(self)}, H, W, 3]."
            )
        return images


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

    def __fspath__(self) -> str:
        """The bundle's directory: a ``Bundle`` goes wherever a path to one does."""
        return str(self.root)

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

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """The manifest's OOD groups (e.g. ``near``, ``far``): name -> split names; ``{}``
        when the bundle has none."""
        return {g: tuple(m) for g, m in self.manifest.get("groups", {}).items()}

    def variant(self, name: str) -> dict[str, Any] | None:
        """The settings a feature variant was extracted with (the manifest's ``variants``,
        e.g. ``{"temperature": 1000.0, "epsilon": 0.0014}`` for "odin"); None if the bundle
        declares no such variant."""
        found = self.manifest.get("variants", {}).get(name)
        return None if found is None else dict(found)

    def missing_variant(self, name: str, splits: Iterable[Split] | None = None) -> list[str]:
        """Names of the splits (default: the ID test split and every OOD test split)
        lacking feature variant ``name``; empty when all have it."""
        chosen = [self.id_split, *self.ood_splits] if splits is None else list(splits)
        return [s.name for s in chosen if name not in s.variants]

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
        """Every split with this role (one of ``ROLES``), in manifest order."""
        return [s for s in self.splits if s.role == role]

    @property
    def id_split(self) -> Split:
        return self.by_role("id")[0]

    @property
    def id_fit(self) -> Split | None:
        fits = self.by_role("id_fit")
        return fits[0] if fits else None

    @property
    def id_val(self) -> Split | None:
        """The ID validation split (role ``id_val``), if the bundle has one."""
        vals = self.by_role("id_val")
        return vals[0] if vals else None

    @property
    def ood_splits(self) -> list[Split]:
        return self.by_role("ood")

    @property
    def ood_val_splits(self) -> list[Split]:
        """The OOD validation splits (role ``ood_val``), in manifest order."""
        return self.by_role("ood_val")

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


def negative_fraction(features: np.ndarray) -> float:
    """Share of negative activations (ASH assumes post-ReLU, non-negative features)."""
    arr = np.asarray(features)
    if not arr.size or not arr.min() < 0:  # one reduction; most features are post-ReLU
        return 0.0
    return float((arr < 0).mean())
