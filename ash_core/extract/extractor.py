"""Feature extraction: hook a layer, run every split once, store a bundle.

The extraction step is the only place a model runs; everything downstream replays the cached
tensors. Work is cut into *chunks* of ``batch_size * chunk_batches`` consecutive samples of a
split. Each finished chunk is written atomically to ``<out>.partial/<split>/cNNNNNN.safetensors``,
so a killed run continues at the first missing chunk (nothing duplicated or skipped), and under
``torchrun`` rank r takes chunks r, r + W, r + 2W, ...: batches are the same as in a
single-process run, so the result is the same. Rank 0 assembles the chunks into a bundle with
``write_bundle`` (atomic) and deletes the work directory: a bundle is visible only when complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..bundle import SplitData, check_split_name, read_safetensors, write_bundle
from ..errors import ExtractError
from .data import PreparedDataset, Protocol, Source, make_protocol, parse_spec
from .models import LoadedModel, load_model

#: test hook: a process exits hard (like a kill) after writing this many chunks
STOP_ENV = "ASH_EXTRACT_STOP_AFTER_CHUNKS"
WORK_VERSION = 1



# --------------------------------------------------------------------------- config


@dataclass
class SplitSpec:
    """One split of the bundle: name, role (id / id_fit / ood), data spec, thumbnails."""

    name: str
    role: str
    data: str
    thumbnails: bool | None = None  # None: only for sources that are redistributable

    def __post_init__(self) -> None:
        check_split_name(self.name)
        if self.role not in ("id", "id_fit", "ood"):
            raise ExtractError(f"split {self.name!r}: role must be id, id_fit or ood, "
                               f"got {self.role!r}.")


@dataclass
class ExtractConfig:
    """Everything that defines a bundle (a recipe); JSON-serialisable."""

    out: str
    model: str
    splits: list[SplitSpec]
    weights: str | None = None
    layer: str | None = None
    data_root: str | None = None
    protocol: str | None = None
    resize: int | None = None
    crop: int | None = None
    batch_size: int = 256
    chunk_batches: int = 4
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    feature_dtype: str = "float16"
    fit_head: bool = False
    download: bool = False
    overwrite: bool = False
    name: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.splits = [s if isinstance(s, SplitSpec) else SplitSpec(**s) for s in self.splits]
        roles = [s.role for s in self.splits]
        if roles.count("id") != 1:
            raise ExtractError(f"a bundle needs exactly one split with role 'id' (the ID test "
                               f"set, --id), got {roles.count('id')}.")
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names):
            raise ExtractError(f"split names must be unique, got {names}.")
        if self.fit_head and "id_fit" not in roles:
            raise ExtractError("--fit-head needs an id_fit split with labels (--id-fit SPEC).")
        for key, low in (("batch_size", 1), ("chunk_batches", 1), ("workers", 0),
                         ("resize", 1), ("crop", 1)):
            value = getattr(self, key)
            if value is None and key in ("resize", "crop"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ExtractError(
                    f"{key} must be an integer >= {low} (--{key.replace('_', '-')}), got "
                    f"{value!r}."
                )

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the features (a resumed run must match them)."""
        keys = ("model", "weights", "layer", "data_root", "protocol", "resize", "crop",
                "batch_size", "chunk_batches", "amp")
        d = {k: getattr(self, k) for k in keys}
        d["splits"] = [asdict(s) for s in self.splits]
        return d

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> ExtractConfig:
        """Read a recipe file; keys are the field names; ``overrides`` (not None) win."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ExtractError(f"config {path} does not exist.") from None
        except json.JSONDecodeError as exc:
            raise ExtractError(f"config {path} is not valid JSON ({exc}).") from None
        if not isinstance(raw, dict):
            raise ExtractError(
                f"config {path} must be a JSON object of recipe fields (see configs/), got "
                f"a {type(raw).__name__}."
            )
        raw.pop("description", None)
        raw.pop("$comment", None)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ExtractError(f"config {path}: unknown key(s) {sorted(unknown)}; known: "
                               f"{sorted(known)}.")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ExtractError(f"config {path}: {exc}.") from None


# --------------------------------------------------------------------------- layer hook


class _Stop(Exception):
    """Raised by the hook: nothing after the hooked layer needs computing."""


def _linear_call_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, inp: order.append(names[mod]))
               for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def _candidates(model: nn.Module, k: int = 12) -> str:
    names = [n for n, _ in model.named_modules() if n]
    return ", ".join(names[-k:])


class FeatureHook:
    """Capture a layer's input (``NAME:input``, default for the final Linear) or output.

    4-D outputs are global-average-pooled; everything is flattened to [N, D]. Once captured,
    the forward pass is stopped, so extraction never costs more than a plain forward.
    """

    def __init__(self, model: nn.Module, layer: str | None, example: torch.Tensor):
        self.model = model
        modules = dict(model.named_modules())
        self.head: nn.Linear | None = None
        if layer is None:
            order = _linear_call_order(model, example)
            if not order:
                raise ExtractError(
                    f"{type(model).__name__} has no nn.Linear classifier, so the penultimate "
                    f"layer cannot be found automatically: pass --layer NAME (its output) or "
                    f"NAME:input, and --fit-head. Last modules: {_candidates(model)}."
                )
            self.name, self.mode = order[-1], "input"
            self.head = modules[self.name]  # type: ignore[assignment]
        else:
            name, _, mode = layer.partition(":")
            mode = mode or "output"
            if mode not in ("input", "output"):
                raise ExtractError(f"--layer {layer!r}: suffix must be ':input' or ':output'.")
            if name not in modules or not name:
                raise ExtractError(f"layer {name!r} not found in {type(model).__name__}; "
                                   f"candidates (last modules): {_candidates(model)}.")
            self.name, self.mode = name, mode
            if mode == "input" and isinstance(modules[name], nn.Linear):
                self.head = modules[name]  # type: ignore[assignment]
        self.module = modules[self.name]
        self.pooled = False
        self._value: torch.Tensor | None = None
        self.attach()

    def attach(self) -> None:
        """Register the hook (done on construction; see ``remove``)."""
        if self.mode == "input":
            self._handle = self.module.register_forward_pre_hook(self._pre)
        else:
            self._handle = self.module.register_forward_hook(self._post)

    def _store(self, t: torch.Tensor) -> None:
        if t.ndim == 4:
            t = t.mean(dim=(2, 3))
            self.pooled = True
        self._value = t.detach().flatten(1).float()
        raise _Stop

    def _pre(self, module: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        self._store(inp[0])

    def _post(self, module: nn.Module, inp: Any, out: torch.Tensor) -> None:
        self._store(out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, D] (float32) of a batch."""
        self._value = None
        with contextlib.suppress(_Stop):
            self.model(x)
        if self._value is None:
            raise ExtractError(f"layer {self.name!r} was not called during the forward pass; "
                               "choose a layer on the path from input to output.")
        return self._value

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "capture": self.mode, "module": type(self.module).__name__,
                "global_avg_pool": self.pooled, "hook": f"forward {'pre-' if self.mode == 'input' else ''}hook"}

    def remove(self) -> None:
        """Unregister the hook: the model runs as without extraction."""
        self._handle.remove()


# --------------------------------------------------------------------------- distributed


def dist_env() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment (1 process otherwise)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ExtractError(f"--device {name}: CUDA is not available here; use --device cpu.")
    return torch.device(name)


# --------------------------------------------------------------------------- chunk storage


def _save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    os.replace(tmp, path)  # atomic: a chunk file is complete or absent


def chunk_path(work: Path, split: str, c: int) -> Path:
    return work / split / f"c{c:06d}.safetensors"


class ChunkPlan:
    """Chunk c of a split covers positions [c * size, min(n, (c + 1) * size))."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        self.count = (n + size - 1) // size

    def span(self, c: int) -> range:
        return range(c * self.size, min(self.n, (c + 1) * self.size))


# --------------------------------------------------------------------------- head fitting


def fit_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int,
                    c: float = 1.0, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, float]:
    """Multinomial logistic regression on raw (non-standardised) features, so the head
    applies directly to the features, as ASH needs. Returns weight [C, D], bias [C] and the
    training accuracy. Deterministic (lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    clf = LogisticRegression(C=c, max_iter=max_iter, tol=1e-4)
    clf.fit(x, labels)
    if list(clf.classes_) != list(range(num_classes)):
        raise ExtractError(f"id_fit labels cover classes {list(clf.classes_)}; expected all of "
                           f"0..{num_classes - 1}.")
    acc = float((clf.predict(x) == labels).mean())
    weight, bias = clf.coef_, clf.intercept_
    if num_classes == 2:  # sklearn keeps one row for binary problems; softmax-equivalent split
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    return weight.astype(np.float32), bias.astype(np.float32), acc


def head_accuracy(weight: np.ndarray, bias: np.ndarray, feats: np.ndarray,
                  labels: np.ndarray) -> float:
    logits = np.asarray(feats, dtype=np.float32) @ weight.T + bias
    return float((logits.argmax(1) == labels).mean())


# --------------------------------------------------------------------------- extractor


class Extractor:
    """Runs one recipe. ``run()`` returns the bundle path (on rank 0) or None."""

    def __init__(self, cfg: ExtractConfig, log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.rank, self.world = dist_env()
        self._log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.out = Path(cfg.out)
        self.work = self.out.with_name(self.out.name + ".partial")
        self.data_root = Path(cfg.data_root) if cfg.data_root else None
        self.device = pick_device(cfg.device)
        self.lm: LoadedModel = load_model(cfg.model, cfg.weights, download=cfg.download)
        self.lm.model.to(self.device)
        self.protocol: Protocol = make_protocol(
            cfg.protocol or self.lm.protocol, self.lm.input_size, self.lm.channels,
            self.lm.mean, self.lm.std, cfg.resize, cfg.crop)
        size = self.protocol.crop
        example = torch.zeros(1, self.lm.channels, size, size, device=self.device)
        self.hook = FeatureHook(self.lm.model, cfg.layer, example)
        if "head" in self.lm.notes and not cfg.fit_head:
            raise ExtractError(
                f"the weights {cfg.weights} have no classifier ({self.lm.notes['head']}); pass "
                "--fit-head (with an --id-fit split) to fit a linear head on the features."
            )
        if self.hook.head is None and not cfg.fit_head:
            raise ExtractError(
                f"layer {self.hook.name!r} does not feed a Linear head, so there is no head "
                "to save; capture the input of the final Linear (default) or pass --fit-head."
            )
        self.shape = (size, size, self.lm.channels)
        self.sources: dict[str, Source] = {}
        self._written = 0
        self._stop_after = int(os.environ.get(STOP_ENV, "0") or 0)

    def log(self, msg: str) -> None:
        if self.rank == 0:
            self._log(msg)

    # ---- core loop (also used by the benchmark)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of one batch of uint8 [N, H, W, C] images (from ``PreparedDataset``), on
        the model's device (AMP when asked and on CUDA)."""
        x = self.protocol.normalise(x.to(self.device, non_blocking=True))
        with torch.inference_mode():
            if self.cfg.amp and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.hook(x).float()
            return self.hook(x)

    def run_chunks(self, split: str, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   chunks: list[int], plan: ChunkPlan, thumbs: bool,
                   on_batch: Callable[[int], None] | None = None) -> None:
        """Consume ``batches`` (covering ``chunks`` in order) and write each finished chunk."""
        it = iter(batches)
        for c in chunks:
            need = len(plan.span(c))
            feats: list[np.ndarray] = []
            ims: list[np.ndarray] = []
            got = 0
            while got < need:
                x, t = next(it)
                feats.append(self.features(x).cpu().numpy())
                if thumbs:
                    ims.append(t.numpy())
                got += len(x)
                if on_batch:
                    on_batch(len(x))
            if got != need:
                raise ExtractError(f"internal error: chunk {c} of {split} got {got} samples, "
                                   f"expected {need}.")
            arrays = {"features": np.concatenate(feats)}
            if thumbs:
                arrays["thumbnails"] = np.concatenate(ims)
            _save_chunk(chunk_path(self.work, split, c), arrays)
            self._written += 1
            if self._stop_after and self._written >= self._stop_after:
                os._exit(75)  # test hook: die like a killed process, no cleanup

    # ---- orchestration

    def _prepare_work(self) -> None:
        fingerprint = {**self.cfg.fingerprint(), "weights_sha256": self.lm.weights_sha256}
        record = {"format": "ash-extract-work", "version": WORK_VERSION,
                  "fingerprint": fingerprint}
        progress = self.work / "progress.json"
        if self.rank == 0:
            if progress.is_file():
                old = json.loads(progress.read_text())
                if old.get("fingerprint") != record["fingerprint"]:
                    raise ExtractError(
                        f"{self.work} holds a partial extraction with different settings; delete "
                        "it (or rerun with the original settings to resume it)."
                    )
                self.log(f"resuming the partial extraction in {self.work}")
            else:
                self.work.mkdir(parents=True, exist_ok=True)
                tmp = progress.with_suffix(".tmp")
                tmp.write_text(json.dumps(record, indent=1))
                os.replace(tmp, progress)
            for s in self.cfg.splits:
                (self.work / s.name).mkdir(exist_ok=True)
        _barrier(self.world)

    def _source(self, spec: SplitSpec) -> Source:
        if spec.name not in self.sources:
            self.sources[spec.name] = parse_spec(spec.data, self.data_root, self.shape)
        return self.sources[spec.name]

    def _thumbs(self, spec: SplitSpec, source: Source) -> bool:
        return source.redistributable if spec.thumbnails is None else bool(spec.thumbnails)

    def _extract_split(self, spec: SplitSpec) -> dict[str, Any]:
        source = self._source(spec)
        plan = ChunkPlan(len(source), self.cfg.batch_size * self.cfg.chunk_batches)
        assigned = [c for c in range(plan.count) if c % self.world == self.rank]
        mine = [c for c in assigned if not chunk_path(self.work, spec.name, c).is_file()]
        done = sum(len(plan.span(c)) for c in assigned if c not in mine)
        order = [i for c in mine for i in plan.span(c)]
        thumbs = self._thumbs(spec, source)
        t0 = time.perf_counter()
        if order:
            ds = PreparedDataset(source, self.protocol, order, thumbs)
            workers = self.cfg.workers
            loader = torch.utils.data.DataLoader(
                ds, batch_size=self.cfg.batch_size, shuffle=False, num_workers=workers,
                pin_memory=self.device.type == "cuda", persistent_workers=False,
                prefetch_factor=4 if workers else None)
            bar = _progress_bar(len(order), f"{spec.name} (rank {self.rank}/{self.world})"
                                if self.world > 1 else spec.name,
                                self.cfg.progress and self.rank == 0)
            try:
                self.run_chunks(spec.name, loader, mine, plan, thumbs, bar.update)
            finally:
                bar.close()
        dt = time.perf_counter() - t0
        self.log(f"{spec.name}: {len(order)} images in {dt:.1f}s"
                 f"{f' ({len(order) / dt:.0f} img/s)' if order and dt > 0 else ''}"
                 f"{f', {done} already done' if done else ''}"
                 f"{f' on rank 0 of {self.world} ({len(source)} in all)' if self.world > 1 else ''}")
        return {"images": len(order), "seconds": round(dt, 3)}

    def _assemble(self, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray | None]:
        source = self._source(spec)
        plan = ChunkPlan(len(source), self.cfg.batch_size * self.cfg.chunk_batches)
        feats, thumbs = [], []
        for c in range(plan.count):
            p = chunk_path(self.work, spec.name, c)
            if not p.is_file():
                raise ExtractError(f"chunk {p} is missing after extraction (did a rank fail?); "
                                   "rerun the same command to finish it.")
            arrays = read_safetensors(p, mmap=False)
            if arrays["features"].shape[0] != len(plan.span(c)):
                raise ExtractError(f"chunk {p} has the wrong size; delete it and rerun.")
            feats.append(arrays["features"])
            if "thumbnails" in arrays:
                thumbs.append(arrays["thumbnails"])
        return np.concatenate(feats), (np.concatenate(thumbs) if thumbs else None)

    def run(self) -> Path | None:
        cfg = self.cfg
        if self.out.exists() and not cfg.overwrite:
            raise ExtractError(f"{self.out} already exists; pass --overwrite to replace it.")
        torch.manual_seed(0)
        previous = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)
        start = time.perf_counter()
        try:
            self._prepare_work()
            timings = {}
            for spec in cfg.splits:
                timings[spec.name] = self._extract_split(spec)
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        _barrier(self.world)
        if self.rank != 0:
            _barrier(self.world)
            return None
        try:
            path = self._write(start, timings)
        finally:
            _barrier(self.world)
        return path

    def _write(self, start: float, timings: dict[str, Any]) -> Path:
        cfg = self.cfg
        splits: list[SplitData] = []
        arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for spec in cfg.splits:
            arrays[spec.name] = self._assemble(spec)
        dim = arrays[cfg.splits[0].name][0].shape[1]
        id_spec = next(s for s in cfg.splits if s.role == "id")
        id_src = self._source(id_spec)
        head_info: dict[str, Any]
        if cfg.fit_head:
            fit_spec = next(s for s in cfg.splits if s.role == "id_fit")
            fit_labels = self._source(fit_spec).labels()
            if fit_labels is None:
                raise ExtractError(f"--fit-head: split {fit_spec.name!r} has no labels; use a "
                                   "labelled folder (class subfolders) or array set.")
            n_cls = int(fit_labels.max()) + 1
            t0 = time.perf_counter()
            weight, bias, train_acc = fit_linear_head(arrays[fit_spec.name][0], fit_labels, n_cls)
            head_info = {"source": "fitted", "method": "multinomial logistic regression "
                         "(sklearn lbfgs, C=1, raw features)", "fit_split": fit_spec.name,
                         "train_accuracy": round(train_acc, 5),
                         "fit_seconds": round(time.perf_counter() - t0, 2)}
            classes = (self._source(fit_spec).class_names or id_src.class_names
                       or [f"class{i}" for i in range(n_cls)])
        else:
            head = self.hook.head
            if head is None:
                raise ExtractError(
                    f"layer {self.hook.name!r} does not feed a Linear head, so there is no head "
                    "to save; capture the input of the final Linear (default) or pass --fit-head."
                )
            weight = head.weight.detach().float().cpu().numpy()
            bias = (head.bias.detach().float().cpu().numpy() if head.bias is not None
                    else np.zeros(weight.shape[0], np.float32))
            if weight.shape[1] != dim:
                raise ExtractError(f"features are {dim}-d but the head {self.hook.name!r} "
                                   f"expects {weight.shape[1]} inputs; choose the layer that "
                                   "feeds it or pass --fit-head.")
            head_info = {"source": "model", "module": self.hook.name}
            classes = list(self.lm.classes or id_src.class_names or
                           [f"class{i}" for i in range(weight.shape[0])])
            if len(classes) != weight.shape[0]:
                classes = [f"class{i}" for i in range(weight.shape[0])]
        id_labels = id_src.labels()
        if id_labels is not None:
            acc = head_accuracy(weight, bias, arrays[id_spec.name][0], id_labels)
            head_info["id_accuracy"] = round(acc, 5)
            self.log(f"ID accuracy on {id_spec.name} ({len(id_labels)} images): {100 * acc:.2f}%")
        if cfg.fit_head:
            self.log(f"fitted head: train accuracy {100 * head_info['train_accuracy']:.2f}% on "
                     f"{head_info['fit_split']}")
        for spec in cfg.splits:
            src = self._source(spec)
            feats, thumbs = arrays[spec.name]
            labels = src.labels()
            in_dist = spec.role in ("id", "id_fit")
            # OOD sets' own labels are not classes of the model: label -1, kept as source_label
            meta = pd.DataFrame({"sample_id": np.arange(len(src)),
                                 "label": labels if labels is not None and in_dist else -1,
                                 "source": src.sources()})
            if labels is not None and not in_dist:
                meta["source_label"] = labels
            splits.append(SplitData(
                spec.name, spec.role, feats,
                labels if spec.role in ("id", "id_fit") else None,
                meta=meta, thumbnails=thumbs,
                info={"data": {"spec": spec.data, **src.describe()},
                      "extraction": timings.get(spec.name, {})}))
        import torchvision

        provenance = {
            "model": self.lm.provenance(),
            "layer": {**self.hook.describe(), "dim": int(dim)},
            "classifier": head_info,
            "preprocessing": self.protocol.describe(),
            "data_root": cfg.data_root,
            "extraction": {
                "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version(),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_time_s": round(time.perf_counter() - start, 2),
                "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                              if self.device.type == "cuda" else ""),
                "amp": bool(cfg.amp and self.device.type == "cuda"),
                "world_size": self.world, "batch_size": cfg.batch_size,
                "chunk_batches": cfg.chunk_batches, "command": " ".join(sys.argv),
                **cfg.extra,
            },
        }
        path = write_bundle(self.out, weight, bias, classes, splits, provenance,
                            feature_dtype=cfg.feature_dtype, overwrite=cfg.overwrite,
                            name=cfg.name)
        shutil.rmtree(self.work, ignore_errors=True)
        self.log(f"wrote {path} ({sum(len(s.features) for s in splits)} samples, {dim}-d)")
        return path


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", unit_scale=True, mininterval=1.0,
                file=sys.stderr, dynamic_ncols=True)


def extract(cfg: ExtractConfig, log: Callable[[str], None] | None = None) -> Path | None:
    """Run a recipe; under torchrun this joins the process group (gloo on CPU, nccl on CUDA)."""
    rank, world = dist_env()
    initialised = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if pick_device(cfg.device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend=backend)
        initialised = True
    try:
        if world > 1 and cfg.device in ("auto", "cuda") and torch.cuda.is_available():
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return Extractor(cfg, log).run()
    finally:
        if initialised:
            torch.distributed.destroy_process_group()


def iter_batches(dataset: torch.utils.data.Dataset, batch_size: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches without a DataLoader (for benchmarks/tests)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0)
    yield from loader
