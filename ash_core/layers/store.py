"""Layer maps in a bundle: the optional ``"layers"`` manifest entry and its files.

A bundle with maps is an ordinary version-1 bundle (old readers ignore the extra key and
files) plus::

  layers/<layer>/<split>.safetensors   maps [N, C, H, W] (CNN blocks) or [N, T, C] (the
                                       tokens of a transformer block), F16, rows = the split's
  layers/<layer>.tail.safetensors      the tail's weights (F32), see ``tails``

and in ``manifest.json``::

  "layers": {"format": 1, "arch": "cifar_resnet20", "num_classes": 10,
             "maps": {"layer1": {"point": "layer1.2.add", "where": "...", "shape": [C, H, W],
                                 "tail": "layers/layer1.tail.safetensors" | null,
                                 "files": {"<split>": "layers/layer1/<split>.safetensors"}}}}

A timm architecture is ``"arch": "timm:NAME"`` plus ``"model_args"``, the ``create_model``
keyword arguments the model was built with (JSON: tuples are written as lists).

Every file is listed with its sha256 in the manifest's ``files``; reading checks the header
against the file size, then the hash, before mapping (``bundle.files.open_tensors``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ash_core.bundle import Bundle, check_split_name, sha256_file
from ash_core.bundle.atomic import atomic_write
from ash_core.bundle.files import existing_file, inside, open_tensors
from ash_core.bundle.safetensors_io import read_header, write_tensors
from ash_core.errors import BundleError
from ash_core.layers.tails import build_tail

KEY = "layers"
PENULTIMATE = "penultimate"
FORMAT = 1


def add_layers(root: Path, arch: str, num_classes: int, points: Mapping[str, tuple[str, str]],
               tails: Mapping[str, dict[str, np.ndarray] | None],
               maps: Mapping[str, Mapping[str, np.ndarray]],
               model_args: Mapping[str, Any] | None = None) -> None:
    """Write maps and tails into the (unpublished) bundle at ``root`` and record them in its
    manifest. ``maps[layer][split]`` must cover every split, in the split's row order;
    ``model_args``: the ``create_model`` arguments of a timm ``arch``."""
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    splits = {s["name"]: s["n"] for s in manifest["splits"]}
    entry: dict[str, Any] = {"format": FORMAT, "arch": arch, "num_classes": num_classes,
                             "maps": {}}
    if model_args is not None:
        entry["model_args"] = dict(model_args)
    for layer, per_split in maps.items():
        check_split_name(layer)
        shapes = {tuple(a.shape[1:]) for a in per_split.values()}
        if set(per_split) != set(splits) or len(shapes) != 1:
            raise BundleError(f"layer {layer!r}: maps must cover every split with one shape.")
        files = {}
        for split, arr in per_split.items():
            if arr.ndim not in (3, 4) or len(arr) != splits[split]:
                raise BundleError(f"layer {layer!r} split {split!r}: maps must be "
                                  f"[{splits[split]}, C, H, W] or [{splits[split]}, T, C], "
                                  f"got {list(arr.shape)}.")
            files[split] = _save(root, f"layers/{layer}/{split}.safetensors",
                                 {"maps": arr.astype(np.float16)}, manifest)
        tail = None
        if tails.get(layer) is not None:
            tail = _save(root, f"layers/{layer}.tail.safetensors",
                         {k: v.astype(np.float32) for k, v in tails[layer].items()}, manifest)
        point, where = points[layer]
        entry["maps"][layer] = {"point": point, "where": where, "shape": list(shapes.pop()),
                                "tail": tail, "files": files}
    manifest[KEY] = entry
    atomic_write(root / "manifest.json",
                 [json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8")])


def _save(root: Path, rel: str, arrays: dict[str, np.ndarray], manifest: dict) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tensors(path, arrays)
    manifest["files"][rel] = sha256_file(path)
    return rel


@dataclass
class LayerInfo:
    name: str
    point: str
    where: str
    shape: tuple[int, ...]
    tail: str | None
    files: dict[str, str]

    @property
    def tokens(self) -> bool:
        """A transformer block's token map [T, C] (else a CNN map [C, H, W])."""
        return len(self.shape) == 2


class LayerMaps:
    """The maps and tails of a bundle (``open_layers``); files are verified when first read."""

    def __init__(self, bundle: Bundle, entry: Mapping[str, Any], verify: bool = True):
        self.bundle = bundle
        self.arch = str(entry["arch"])
        self.num_classes = int(entry["num_classes"])
        self.model_args = entry.get("model_args")
        if self.model_args is not None and not isinstance(self.model_args, dict):
            raise BundleError(f"bundle {bundle.name}: manifest entry layers.model_args is not "
                              "an object of create_model arguments; re-extract.")
        if self.num_classes != len(bundle.classes):
            raise BundleError(f"bundle {bundle.name}: manifest field layers.num_classes is "
                              f"{self.num_classes} but the head has {len(bundle.classes)} "
                              "outputs; the manifest was edited. Re-extract the maps "
                              "(`ash-explore extract --layers`).")
        self.layers = {name: _layer_info(bundle, name, e) for name, e in entry["maps"].items()}
        self._verify = verify
        self._maps: dict[tuple[str, str], np.ndarray] = {}
        self._tails: dict[str, nn.Module] = {}

    @property
    def names(self) -> list[str]:
        """Layers with maps, in network order, then ``penultimate``."""
        return [*self.layers, PENULTIMATE]

    def info(self, layer: str) -> LayerInfo:
        if layer not in self.layers:
            raise BundleError(f"bundle {self.bundle.name} has no maps for layer {layer!r}; "
                              f"layers: {', '.join(self.names)}.")
        return self.layers[layer]

    def _sha(self, rel: str) -> str | None:
        return self.bundle.manifest.get("files", {}).get(rel) if self._verify else None

    def maps(self, layer: str, split: str) -> np.ndarray:
        """The read-only float16 maps [N, C, H, W] or tokens [N, T, C] of a split
        (memory-mapped)."""
        info = self.info(layer)
        if split not in info.files:
            raise BundleError(f"layer {layer!r} has no maps for split {split!r}.")
        key = (layer, split)
        if key not in self._maps:
            rel = info.files[split]
            arr = open_tensors(self.bundle.root, rel, self._sha(rel), {"maps": ("F16",)})["maps"]
            if arr.ndim != 1 + len(info.shape) or tuple(arr.shape[1:]) != info.shape or \
                    len(arr) != len(self.bundle.split(split)):
                raise BundleError(f"bundle {self.bundle.name}: {rel} holds maps of shape "
                                  f"{list(arr.shape)}, expected [n, {', '.join(map(str, info.shape))}].")
            self._maps[key] = arr
        return self._maps[key]

    def tail(self, layer: str) -> nn.Module:
        """The network after ``layer`` (eval mode, CPU), built from its reference and weights."""
        info = self.info(layer)
        if info.tail is None:
            raise BundleError(f"bundle {self.bundle.name}: layer {layer!r} of {self.arch} has "
                              "maps but no tail, so it cannot be replayed.")
        if layer not in self._tails:
            state = self._tail_state(info.tail)
            tail = build_tail(self.arch, layer, self.num_classes, state, self.model_args)
            self._check_tail(layer, info, tail)
            self._tails[layer] = tail
        return self._tails[layer]

    def _check_tail(self, layer: str, info: LayerInfo, tail: nn.Module) -> None:
        """The tail takes one map of the declared shape to C logits; a manifest whose
        shapes agree with its maps but not with the tail's weights is refused here, before
        any split is replayed."""
        try:
            with torch.no_grad():
                out = tail(torch.zeros(1, *info.shape))
            fits = tuple(out.shape) == (1, self.num_classes)
        except RuntimeError:
            fits = False
        if not fits:
            raise BundleError(
                f"bundle {self.bundle.name}: layer {layer!r} declares maps of shape "
                f"{list(info.shape)}, which its tail's weights do not take to "
                f"{self.num_classes} logits; the maps or the manifest were edited. "
                "Re-extract the maps (`ash-explore extract --layers`).")

    def _tail_state(self, rel: str) -> dict[str, np.ndarray]:
        """Checked like every bundle file (header, then sha256); only F32 tensors."""
        full = existing_file(self.bundle.root, rel)
        names = read_header(full)[0]
        return open_tensors(self.bundle.root, rel, self._sha(rel), {n: ("F32",) for n in names})


def _layer_info(bundle: Bundle, name: str, e: Any) -> LayerInfo:
    try:
        files = {str(k): str(v) for k, v in e["files"].items()}
        for rel in [*files.values(), *([e["tail"]] if e.get("tail") else [])]:
            inside(bundle.root, rel)
        return LayerInfo(name, str(e["point"]), str(e.get("where", "")),
                         tuple(int(d) for d in e["shape"]), e.get("tail"), files)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise BundleError(f"bundle {bundle.name}: manifest entry layers.maps.{name} is "
                          "malformed (needs point, shape, tail, files); re-extract.") from None


def open_layers(bundle: Bundle, verify: bool = True) -> LayerMaps | None:
    """The bundle's layer maps, or None when it has none (bundles without ``--layers``)."""
    entry = bundle.manifest.get(KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or \
            not isinstance(entry.get("maps"), dict):
        raise BundleError(f"bundle {bundle.name}: manifest 'layers' entry is not format "
                          f"{FORMAT}; re-extract with this version of ash-explore.")
    return LayerMaps(bundle, entry, verify)
