"""The layer sweep: energy and ID predictions for every (layer, p) of a grid and one method,
cached beside the bundle like the score cube (``cache``: one file per layer); any table or
curve is then a lookup plus metrics (milliseconds).

Speed (docs/where.md, ``benchmarks/bench_layers.py``): each batch of a layer's maps is widened
to float32 and ranked once for the whole grid (``replay.replay_batches``), the tail runs with
its batch norms folded into the convolutions, and the unshaped predictions come from the same
pass; the cost is one tail forward per (row, p).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ash_core.bundle import Bundle
from ash_core.device import resolve_device
from ash_core.diskcache import cache_dir_of, read_entry, write_entry
from ash_core.engine.result import group_averages
from ash_core.engine.store import FeatureStore
from ash_core.errors import AshError
from ash_core.layers.cache import Arrays, layer_key, layer_path, load_layer, save_layer
from ash_core.layers.replay import BATCH, replay_batches
from ash_core.layers.store import PENULTIMATE, LayerMaps, open_layers
from ash_core.maths.metrics import OODMetrics, average_metrics, ood_metrics_many
from ash_core.maths.scores import energy_score
from ash_core.methods import Shaper, create_method

LAYER_GRID = tuple(range(0, 100, 5))
Progress = Callable[[int, int], None]


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
    base_pred: dict[str, np.ndarray]  # unshaped ID predictions per layer
    base_energy: dict[str, np.ndarray]  # unshaped energy [N] per layer
    seconds: float = 0.0
    cached: bool = False
    _acc: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _index(self, p: float) -> int:
        i = self.index_of(p)
        if i is None:
            raise AshError(f"p = {p} is not on the sweep grid {self.grid}.")
        return i

    def _per_split(self, row: np.ndarray) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for name, n in self.splits:
            out[name], start = row[start:start + n], start + n
        return out

    def scores(self, layer: str, p: float) -> dict[str, np.ndarray]:
        """Energy per split at (layer, p)."""
        return self._per_split(self.energy[layer][self._index(p)])

    def base_scores(self, layer: str) -> dict[str, np.ndarray]:
        """Energy per split without shaping at ``layer``."""
        return self._per_split(self.base_energy[layer])

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

    def unshaped_accuracy(self, layer: str) -> float:
        """ID accuracy without shaping at ``layer`` (a plain forward from its float16 map;
        layer-independent up to that rounding)."""
        return float((self.base_pred[layer] == self.labels).mean())

    def index_of(self, p: float) -> int | None:
        """The grid position of ``p`` (None when p is not on the grid)."""
        hits = [i for i, q in enumerate(self.grid) if abs(q - p) < 1e-9]
        return hits[0] if hits else None

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
            groups = {f"average ({g})": m
                      for g, m in group_averages(per_set, bundle.groups).items()}
            for name, m in {**per_set, "average": average_metrics(per_set), **groups}.items():
                row[f"{name}/fpr95"], row[f"{name}/auroc"] = m["fpr95"], m["auroc"]
            row["id_acc"] = float(sw.accuracy(layer)[i])
            row["id_acc_unshaped"] = sw.unshaped_accuracy(layer)
            rows.append(row)
    return pd.DataFrame(rows)


def _split_rows(bundle: Bundle) -> list[tuple[str, int]]:
    return [(bundle.id_split.name, len(bundle.id_split)),
            *[(s.name, len(s)) for s in bundle.select_ood(None)]]


def _replayed(maps: LayerMaps, layer: str, splits: list[tuple[str, int]],
              shapers: Sequence[Shaper], device: torch.device, batch: int,
              progress: Progress) -> Arrays:
    """Energy and ID predictions of an inner layer, shaped at every p and unshaped, from one
    pass over its maps (per batch: widened and ranked once, then every p and the unshaped);
    ``progress(batches done, batches in all)``."""
    energy, pred, done = [], [], 0
    total = sum(-(-n // batch) for _, n in splits)
    for i, (name, _) in enumerate(splits):
        for logits in replay_batches(maps, layer, name, [*shapers, None], batch, device):
            energy.append(torch.stack([energy_score(x) for x in logits]).numpy())
            if i == 0:
                pred.append(torch.stack([x.argmax(1) for x in logits]).numpy())
            done += 1
            progress(done, total)
    energy_all = np.concatenate(energy, axis=1) if energy else np.zeros((len(shapers) + 1, 0))
    pred_all = np.concatenate(pred, axis=1) if pred else np.zeros((len(shapers) + 1, 0))
    return {"energy": energy_all[:-1], "pred": pred_all[:-1], "base_energy": energy_all[-1],
            "base_pred": pred_all[-1]}


def _penultimate(bundle: Bundle, splits: list[tuple[str, int]], shapers: Sequence[Shaper]
                 ) -> Arrays:
    store = FeatureStore(bundle, warn=False)
    names = [n for n, _ in splits]
    energy, pred = [], []
    for shaper in shapers:
        logits = {n: store.shaped_logits(shaper, n, names) for n in names}
        energy.append(torch.cat([energy_score(logits[n]) for n in names]).numpy())
        pred.append(logits[names[0]].argmax(1).numpy())
    base = {n: store.base_logits(n, names) for n in names}
    return {"energy": np.stack(energy), "pred": np.stack(pred),
            "base_energy": torch.cat([energy_score(base[n]) for n in names]).numpy(),
            "base_pred": base[names[0]].argmax(1).numpy()}


def _compute(bundle: Bundle, layer: str, shapers: Sequence[Shaper],
             splits: list[tuple[str, int]], device: torch.device, batch: int,
             progress: Progress) -> Arrays:
    if layer == PENULTIMATE:
        arrays = _penultimate(bundle, splits, shapers)
    else:
        arrays = _replayed(open_layers(bundle), layer, splits, shapers, device, batch, progress)
    return {k: v.astype(np.int64 if k.endswith("pred") else np.float32)
            for k, v in arrays.items()}


def _check_layers(bundle: Bundle, layers: Sequence[str] | None) -> list[str]:
    maps = open_layers(bundle)
    if layers is None:
        return maps.names if maps else [PENULTIMATE]
    for layer in layers:
        if layer != PENULTIMATE:
            if maps is None:
                raise AshError(f"bundle {bundle.name} has no layer maps; re-extract with "
                               "--layers (or `make layers` for the demo bundles).")
            maps.info(layer)
    return list(layers)


def layer_sweep(bundle: Bundle, layers: Sequence[str] | None = None, method: str = "ash-s",
                grid: Sequence[float] = LAYER_GRID, seed: int = 0, device: str = "auto",
                batch: int = BATCH, cache: bool = True,
                log: Callable[[str], None] = lambda s: None,
                progress: Progress = lambda done, total: None) -> LayerSweep:
    """Energy and ID predictions for every layer x p (cached per layer; module docstring);
    ``progress(done, total)`` while an inner layer is replayed (batches of its maps)."""
    layers = _check_layers(bundle, layers)
    shapers = [create_method(method, p=p, seed=seed) for p in grid]  # validated early
    splits = _split_rows(bundle)
    n_all, n_id = sum(n for _, n in splits), splits[0][1]
    cdir = cache_dir_of(bundle, None, cache, "layer sweeps")
    t0, found, arrays = time.perf_counter(), 0, {}
    for layer in layers:
        key = layer_key(bundle, method, layer, grid, seed, [n for n, _ in splits])
        path = None if cdir is None else layer_path(cdir, key)
        stored = read_entry(path, functools.partial(load_layer, key=key, n_p=len(grid),
                                                    n_all=n_all, n_id=n_id), "layer sweep")
        if stored is None:
            t1 = time.perf_counter()
            stored = _compute(bundle, layer, shapers, splits, resolve_device(device), batch,
                              progress)
            log(f"layer sweep: {layer} x {len(grid)} p in {time.perf_counter() - t1:.1f}s")
            write_entry(path, functools.partial(save_layer, key=key, arrays=stored),
                        "layer sweep")
        else:
            found += 1
        arrays[layer] = stored
    labels = np.asarray(bundle.id_split.labels_tensor().numpy())
    return LayerSweep(list(layers), [float(p) for p in grid], method, splits, labels,
                      {k: a["energy"] for k, a in arrays.items()},
                      {k: a["pred"] for k, a in arrays.items()},
                      {k: a["base_pred"] for k, a in arrays.items()},
                      {k: a["base_energy"] for k, a in arrays.items()},
                      time.perf_counter() - t0, found == len(layers))
