"""The run loop: load the model, prepare the work directory, extract every split chunk by
chunk (sharded over torchrun ranks), then let rank 0 write and publish the bundle.

Work is cut into *chunks* of ``batch_size * chunk_batches`` consecutive samples of a split.
Each finished chunk is written atomically to ``<out>.partial/<split>/cNNNNNN.safetensors``
with its fingerprint (see ``workdir``), so a killed run continues at the first missing chunk
(nothing duplicated, skipped or mixed in from another recipe), and under ``torchrun`` rank r
takes chunks r, r + W, r + 2W, ...: batches are the same as in a single-process run, so the
result is the same. A bundle is visible only when complete.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ash_core.device import resolve_device
from ash_core.errors import ExtractError
from ash_core.extract.config import ExtractConfig, SplitSpec
from ash_core.extract.data import PreparedDataset, parse_spec
from ash_core.extract.fingerprint import Fingerprints, make_fingerprints
from ash_core.extract.head import NO_HEAD
from ash_core.extract.hook import FeatureHook, MapHooks
from ash_core.extract.leftovers import clean_leftovers
from ash_core.extract.models import LoadedModel, load_model
from ash_core.extract.odin import perturb
from ash_core.extract.protocol import Protocol, make_protocol
from ash_core.extract.publish import bundle_recipe, check_target
from ash_core.extract.sources import Source
from ash_core.extract.workdir import ChunkPlan, WorkDir
from ash_core.extract.writer import write_and_publish
from ash_core.layers.tails import capture_point

# ---------------------------------------------------------------------------- distributed


def dist_env() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment (1 process otherwise)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic algorithms (warn only) for the duration, restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


# ---------------------------------------------------------------------------- extractor

_GO, _DONE, _FAILED = 0, 1, 2


class Extractor:
    """Runs one recipe. ``run()`` returns the bundle path (on rank 0) or None."""

    def __init__(self, cfg: ExtractConfig, log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.rank, self.world = dist_env()
        self._log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.out = Path(cfg.out)
        self.workdir = WorkDir(self.out)
        self.work = self.workdir.path
        self.data_root = Path(cfg.data_root) if cfg.data_root else None
        self.device = resolve_device(cfg.device)
        self.lm: LoadedModel = load_model(cfg.model, cfg.weights, download=cfg.download,
                                          random_init=cfg.random_init)
        self.lm.model.to(self.device)
        self.protocol: Protocol = make_protocol(
            cfg.protocol or self.lm.protocol, self.lm.input_size, self.lm.channels,
            self.lm.mean, self.lm.std, cfg.resize, cfg.crop, model_resize=self.lm.resize,
            interpolation=self.lm.interpolation)
        if "data_config" in self.lm.notes:
            self._log_preprocessing()
        size = self.protocol.crop
        example = torch.zeros(1, self.lm.channels, size, size, device=self.device)
        self.hook = FeatureHook(self.lm.model, cfg.layer or self.lm.head_layer, example)
        self._check_head()
        self.points: dict[str, tuple[str, str]] = {}
        self.maps = self._map_hooks()
        self.shape = (size, size, self.lm.channels)
        self.sources: dict[str, Source] = {}
        self.fps: Fingerprints = make_fingerprints(
            cfg, self.lm.weights_sha256, self.protocol.describe(), self.device.type,
            cfg.name or self.out.name)

    def _log_preprocessing(self) -> None:
        """Say which preprocessing the model's own config gave (it is in the manifest too)."""
        p = self.protocol
        # a recipe's resize/crop replace the config's, so the line says whose they are
        given = [k for k in ("resize", "crop") if getattr(self.cfg, k) is not None]
        note = f" ({' and '.join(given)} from the recipe)" if given else ""
        self.log(f"{self.lm.name}: preprocessing from {self.lm.notes['data_config']['source']}: "
                 f"resize shorter side {p.resize} ({p.interpolation}), center crop {p.crop}"
                 f"{note}, mean {tuple(round(v, 4) for v in p.mean)}, "
                 f"std {tuple(round(v, 4) for v in p.std)}")

    def _check_head(self) -> None:
        if "head" in self.lm.notes and not self.cfg.fit_head:
            raise ExtractError(
                f"the weights {self.cfg.weights} have no classifier ({self.lm.notes['head']}); "
                "pass --fit-head (with an --id-fit split) to fit a linear head on the features."
            )
        if self.hook.head is None and not self.cfg.fit_head:
            raise ExtractError(NO_HEAD.format(name=self.hook.name))

    def _map_hooks(self) -> MapHooks | None:
        """Hooks for ``--layers`` (None without): where each map is taken (see
        ``ash_core.layers.tails``), checked before any image is read."""
        if not self.cfg.layers:
            return None

        self.points = {name: capture_point(self.lm.name, self.lm.model, name)
                       for name in self.cfg.layers}
        return MapHooks(self.lm.model, {name: p for name, (p, _) in self.points.items()})

    def log(self, msg: str) -> None:
        if self.rank == 0:
            self._log(msg)

    # ---- sources and chunks

    def source(self, spec: SplitSpec) -> Source:
        if spec.name not in self.sources:
            self.sources[spec.name] = parse_spec(spec.data, self.data_root, self.shape)
        return self.sources[spec.name]

    def plan(self, spec: SplitSpec) -> ChunkPlan:
        return ChunkPlan(len(self.source(spec)), self.cfg.chunk_size)

    def chunk_fp(self, spec: SplitSpec, c: int) -> str:
        plan = self.plan(spec)
        return self.fps.chunk(spec.name, c, plan.span(c), plan.n)

    def thumbs(self, spec: SplitSpec) -> bool:
        src = self.source(spec)
        return src.redistributable if spec.thumbnails is None else bool(spec.thumbnails)

    def expected_chunks(self) -> dict[Path, str]:
        """Every chunk file of this recipe -> its fingerprint."""
        return {self.workdir.chunk_path(s.name, c): self.chunk_fp(s, c)
                for s in self.cfg.splits for c in range(self.plan(s).count)}

    # ---- the core loop (also used by the benchmark)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of one batch of uint8 [N, H, W, C] images (from ``PreparedDataset``), on
        the model's device (AMP when asked and on CUDA)."""
        return self._features_of(self.protocol.normalise(x.to(self.device, non_blocking=True)))

    def odin_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ODIN's perturbed inputs (``extract.odin``) of one uint8 batch: the
        gradient runs through the whole model in float32 (no AMP), the features as usual."""
        t, eps = self.cfg.odin
        x = self.protocol.normalise(x.to(self.device, non_blocking=True))
        with self.hook.paused():
            moved = perturb(self.lm.model, x, t, eps, self.protocol.std)
        return self._features_of(moved)

    def _features_of(self, x: torch.Tensor) -> torch.Tensor:
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
        spec = next((s for s in self.cfg.splits if s.name == split), None)
        odin_on = spec is not None and self.cfg.odin_on(spec)
        for c in chunks:
            t0 = time.perf_counter()
            need = len(plan.span(c))
            feats: list[np.ndarray] = []
            odin: list[np.ndarray] = []
            ims: list[np.ndarray] = []
            maps: dict[str, list[np.ndarray]] = {}
            got = 0
            while got < need:
                x, t = next(it)
                feats.append(self.features(x).cpu().numpy())
                for name, m in (self.maps.take() if self.maps else {}).items():
                    maps.setdefault(name, []).append(m.cpu().numpy())
                if odin_on:
                    odin.append(self.odin_features(x).cpu().numpy())
                if thumbs:
                    ims.append(t.numpy())
                got += len(x)
                if on_batch:
                    on_batch(len(x))
            if got != need:
                raise ExtractError(f"internal error: chunk {c} of {split} got {got} samples, "
                                   f"expected {need}.")
            arrays = {"features": np.concatenate(feats)}
            if odin:
                arrays["odin.features"] = np.concatenate(odin)
            if thumbs:
                arrays["thumbnails"] = np.concatenate(ims)
            arrays.update({f"map.{name}": np.concatenate(m) for name, m in maps.items()})
            self.workdir.save_chunk(split, c, arrays, self.fps.chunk(split, c, plan.span(c),
                                                                     plan.n),
                                    time.perf_counter() - t0)

    # ---- orchestration

    def _prepare(self) -> int:
        """Rank 0: clean leftovers, check the target, open the work directory."""
        for p in clean_leftovers(self.out):
            self.log(f"removed {p.name}, left by an interrupted run")
        if self.out.exists() and not self.cfg.overwrite and \
                bundle_recipe(self.out) == self.fps.bundle:
            if self.workdir.state(self.fps, self.expected_chunks()) == "current":
                self.workdir.discard()
                self.log(f"removed the leftover work directory {self.work}")
            self.log(f"{self.out} is already complete (same recipe); nothing to do")
            return _DONE
        check_target(self.out, self.cfg.overwrite)
        self.workdir.open(self.fps, self.expected_chunks(), [s.name for s in self.cfg.splits],
                          self.cfg.overwrite, self.log)
        return _GO

    def _agree(self) -> bool:
        """Rank 0 prepares; every rank learns whether to go on. True: already complete."""
        code, error = _GO, None
        if self.rank == 0:
            try:
                code = self._prepare()
            except BaseException as exc:  # broadcast the failure, then raise it here
                code, error = _FAILED, exc
        if self.world > 1:
            on = self.device if torch.distributed.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([code], dtype=torch.int64, device=on)
            torch.distributed.broadcast(flag, 0)
            code = int(flag.item())
        if error is not None:
            raise error
        if code == _FAILED:
            raise ExtractError("rank 0 stopped before extracting (see its error); fix that "
                               "and rerun.")
        return code == _DONE

    def _extract_split(self, spec: SplitSpec) -> None:
        plan = self.plan(spec)
        assigned = [c for c in range(plan.count) if c % self.world == self.rank]
        mine = [c for c in assigned if not self.workdir.chunk_done(spec.name, c,
                                                                   self.chunk_fp(spec, c))]
        done = sum(len(plan.span(c)) for c in assigned if c not in mine)
        order = [i for c in mine for i in plan.span(c)]
        t0 = time.perf_counter()
        if order:
            self._run_loader(spec, plan, mine, order)
        dt = time.perf_counter() - t0
        self.log(f"{spec.name}: {len(order)} images in {dt:.1f}s"
                 f"{f' ({len(order) / dt:.0f} img/s)' if order and dt > 0 else ''}"
                 f"{f', {done} already done' if done else ''}"
                 f"{f' on rank 0 of {self.world} ({plan.n} in all)' if self.world > 1 else ''}")

    def _run_loader(self, spec: SplitSpec, plan: ChunkPlan, chunks: list[int],
                    order: list[int]) -> None:
        thumbs = self.thumbs(spec)
        ds = PreparedDataset(self.source(spec), self.protocol, order, thumbs)
        workers = self.cfg.workers
        loader = torch.utils.data.DataLoader(
            ds, batch_size=self.cfg.batch_size, shuffle=False, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if workers else None)
        desc = f"{spec.name} (rank {self.rank}/{self.world})" if self.world > 1 else spec.name
        bar = _progress_bar(len(order), desc, self.cfg.progress and self.rank == 0)
        try:
            self.run_chunks(spec.name, loader, chunks, plan, thumbs, bar.update)
        finally:
            bar.close()

    def run(self) -> Path | None:
        start = time.perf_counter()
        if self._agree():
            return self.out if self.rank == 0 else None
        with _deterministic():
            for spec in self.cfg.splits:
                self._extract_split(spec)
        _barrier(self.world)
        if self.rank != 0:
            _barrier(self.world)
            return None

        try:
            path = write_and_publish(self, start)
        finally:
            _barrier(self.world)
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
        backend = "nccl" if resolve_device(cfg.device).type == "cuda" else "gloo"
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

