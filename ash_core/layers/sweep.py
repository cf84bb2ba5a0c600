"""The layer sweep: energy and ID predictions for every (layer, p) of a grid and one method,
cached beside the bundle like the score cube; any table or curve is then a lookup plus
metrics (milliseconds).

Cache: ``<bundle>/.layer_cache/<key>.safetensors`` (``energy.<layer>`` [P, N] F32 over the ID
split then the OOD splits in bundle order, ``pred.<layer>`` [P, N_id] I64), keyed by the
sha256 of the bundle's manifest (which holds every file's sha256), the method, seed, layers
and grid. A stale, corrupt or foreign file is recomputed and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..bundle import Bundle
from ..errors import AshError
from ..evaluation import Evaluator
from ..metrics import OODMetrics, average_metrics, ood_metrics_many
from ..registry import create_method
from ..safetensors_io import read_tensors, write_tensors
from ..scores import energy_score
from .replay import BATCH, pick_device, replay_logits
from .store import PENULTIMATE, open_layers

CACHE_DIR = ".layer_cache"
DEFAULT_GRID = tuple(range(0, 100, 5))


@dataclass
class LayerSweep:
    """Energy [P, N] and ID predictions [P, N_id] per layer; metrics on demand."""

    layers: list[str]
    grid: list[float]
    method: str
    splits: list[tuple[str, int]]  # (name, rows): the ID split first, then the OOD sets
    labels: np.ndarray
    energy: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    seconds: float = 0.0
    cached: bool = False
    _acc: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _index(self, p: float) -> int:
        hits = [i for i, q in enumerate(self.grid) if abs(q - p) < 1e-9]
        if not hits:
            raise AshError(f"p = {p} is not on the sweep grid {self.grid}.")
        return hits[0]

    def scores(self, layer: str, p: float) -> dict[str, np.ndarray]:
        """Energy per split at (layer, p)."""
        row, out, start = self.energy[layer][self._index(p)], {}, 0
        for name, n in self.splits:
            out[name], start = row[start:start + n], start + n
        return out

    def accuracy(self, layer: str) -> np.ndarray:
        """ID accuracy at every p of the grid (the paper's Figure 5, one curve)."""
        if layer not in self._acc:
            self._acc[layer] = (self.pred[layer] == self.labels[None, :]).mean(axis=1)
        return self._acc[layer]

    def metrics(self, layer: str, p: float, convention: str = "id",
                ood: Sequence[str] | None = None) -> dict[str, OODMetrics]:
        """FPR95/AUROC/AUPR per OOD set at (layer, p) (a row of the paper's Table 6)."""
        s = self.scores(layer, p)
        id_name = self.splits[0][0]
        names = [n for n, _ in self.splits[1:] if ood is None or n in ood]
        return ood_metrics_many(s[id_name], {n: s[n] for n in names}, convention)

    def unshaped_accuracy(self, bundle: Bundle, layer: str, device: str = "auto") -> float:
        """ID accuracy without shaping (a plain forward; layer-independent up to fp16)."""
        if layer == PENULTIMATE:
            logits = Evaluator(bundle, warn=False).base_logits(self.splits[0][0])
        else:
            logits = replay_logits(open_layers(bundle), layer, self.splits[0][0], None,
                                   BATCH, pick_device(device))
        return float((logits.argmax(1).numpy() == self.labels).mean())

    def table(self, p: float, convention: str = "id", ood: Sequence[str] | None = None
              ) -> list[dict[str, float | str]]:
        """One row per layer: average FPR95/AUROC over the OOD sets and ID accuracy at p."""
        i = self._index(p)
        rows = []
        for layer in self.layers:
            avg = average_metrics(self.metrics(layer, p, convention, ood))
            rows.append({"layer": layer, "fpr95": avg["fpr95"], "auroc": avg["auroc"],
                         "id_accuracy": float(self.accuracy(layer)[i])})
        return rows


def sweep_frame(bundle: Bundle, layer: str, methods: Sequence[str], grid: Sequence[float],
                convention: str = "id", ood: Sequence[str] | None = None, seed: int = 0,
                device: str = "auto") -> pd.DataFrame:
    """The paper-style sweep table (``report.sweep_columns``) at ``layer``, from cached layer
    sweeps (``ash-explore sweep --layer``); energy score, per-sample thresholds."""
    rows = []
    for method in methods:
        sw = layer_sweep(bundle, [layer], method, grid, seed, device)
        for i, p in enumerate(sw.grid):
            per_set = sw.metrics(layer, p, convention, ood)
            row: dict[str, float | str] = {"method": method, "p": p}
            for name, m in {**per_set, "average": average_metrics(per_set)}.items():
                row[f"{name}/fpr95"], row[f"{name}/auroc"] = m["fpr95"], m["auroc"]
            row["id_acc"] = float(sw.accuracy(layer)[i])
            row["id_acc_unshaped"] = sw.unshaped_accuracy(bundle, layer, device)
            rows.append(row)
    return pd.DataFrame(rows)


def _cache_key(bundle: Bundle, method: str, layers: Sequence[str], grid: Sequence[float],
               seed: int) -> str:
    manifest = hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()
    text = json.dumps({"v": 1, "manifest": manifest, "method": method, "layers": list(layers),
                       "grid": [float(p) for p in grid], "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _logits_fn(bundle: Bundle, layer: str, device: torch.device, batch: int
               ) -> Callable[[str, object], torch.Tensor]:
    if layer == PENULTIMATE:
        ev = Evaluator(bundle, warn=False)
        return lambda split, shaper: ev.shaped_logits(shaper, split)
    maps = open_layers(bundle)
    return lambda split, shaper: replay_logits(maps, layer, split, shaper, batch, device)


def _compute(bundle: Bundle, method: str, layers: Sequence[str], grid: Sequence[float],
             seed: int, device: torch.device, batch: int, log: Callable[[str], None]
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    names = [bundle.id_split.name, *[s.name for s in bundle.select_ood(None)]]
    energy, pred = {}, {}
    for layer in layers:
        logits_of = _logits_fn(bundle, layer, device, batch)
        e_rows, p_rows = [], []
        t0 = time.perf_counter()
        for p in grid:
            shaper = create_method(method, p=p, seed=seed)
            logits = {n: logits_of(n, shaper) for n in names}
            e_rows.append(torch.cat([energy_score(logits[n]) for n in names]).numpy())
            p_rows.append(logits[names[0]].argmax(1).numpy().astype(np.int64))
        energy[layer] = np.stack(e_rows).astype(np.float32)
        pred[layer] = np.stack(p_rows)
        log(f"layer sweep: {layer} x {len(grid)} p in {time.perf_counter() - t0:.1f}s")
    return energy, pred


def layer_sweep(bundle: Bundle, layers: Sequence[str] | None = None, method: str = "ash-s",
                grid: Sequence[float] = DEFAULT_GRID, seed: int = 0, device: str = "auto",
                batch: int = BATCH, cache: bool = True,
                log: Callable[[str], None] = lambda s: None) -> LayerSweep:
    """Energy and ID predictions for every layer x p (cached; see the module docstring)."""
    maps = open_layers(bundle)
    if layers is None:
        layers = [n for n in (maps.names if maps else [PENULTIMATE])]
    for layer in layers:
        if layer != PENULTIMATE:
            if maps is None:
                raise AshError(f"bundle {bundle.name} has no layer maps; re-extract with "
                               "--layers (or `make layers` for the demo bundles).")
            maps.info(layer)
    create_method(method, p=grid[0], seed=seed)  # validates the method and p early
    splits = [(bundle.id_split.name, len(bundle.id_split)),
              *[(s.name, len(s)) for s in bundle.select_ood(None)]]
    labels = np.asarray(bundle.id_split.labels_tensor().numpy())
    path = bundle.root / CACHE_DIR / f"{_cache_key(bundle, method, layers, grid, seed)}.safetensors"
    t0 = time.perf_counter()
    stored = _read_cache(path, layers, len(grid), splits) if cache else None
    if stored is not None:
        energy, pred = stored
    else:
        energy, pred = _compute(bundle, method, layers, grid, seed, pick_device(device), batch,
                                log)
        if cache:
            _write_cache(path, energy, pred)
    return LayerSweep(list(layers), [float(p) for p in grid], method, splits, labels, energy,
                      pred, time.perf_counter() - t0, stored is not None)


def _read_cache(path: Path, layers: Sequence[str], n_p: int, splits: list[tuple[str, int]]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    n_all, n_id = sum(n for _, n in splits), splits[0][1]
    try:
        arrays = read_tensors(path, mmap=False)
        energy = {k: arrays[f"energy.{k}"] for k in layers}
        pred = {k: arrays[f"pred.{k}"] for k in layers}
    except (AshError, OSError, KeyError):
        return None
    ok = all(e.shape == (n_p, n_all) and e.dtype == np.float32 for e in energy.values()) and \
        all(p.shape == (n_p, n_id) and p.dtype == np.int64 for p in pred.values())
    return (energy, pred) if ok else None


def _write_cache(path: Path, energy: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        arrays = {**{f"energy.{k}": v for k, v in energy.items()},
                  **{f"pred.{k}": v for k, v in pred.items()}}
        write_tensors(path, arrays)
    except OSError:
        pass  # a read-only bundle: the sweep is still returned, just not cached
