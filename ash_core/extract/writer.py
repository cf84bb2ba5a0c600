"""Writing: assemble the chunks, pick the head, build the splits and provenance, write the
bundle inside the work directory and publish it (see ``publish``), then delete the work
directory. Rank 0 only; every step is safe to kill (a rerun converges)."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ash_core.bundle import ID_ROLES, SplitData, write_bundle
from ash_core.extract.config import SplitSpec
from ash_core.extract.head import Head, fitted_head, head_accuracy, model_head
from ash_core.extract.publish import publish
from ash_core.faults import checkpoint
from ash_core.layers.store import add_layers
from ash_core.layers.tails import has_tail, tail_state

#: the ``runner.Extractor`` whose outputs are written (typed loosely: the runner imports
#: this module, never the other way round)
Extractor = Any

Arrays = tuple[np.ndarray, "np.ndarray | None"]


def write_and_publish(ex: Extractor, start: float) -> Path:
    """Write the bundle from the finished chunks and publish it at ``ex.out``."""
    cfg = ex.cfg
    arrays, totals = assemble(ex)
    dim = int(arrays[cfg.splits[0].name][0].shape[1])
    head = choose_head(ex, arrays, dim)
    report_accuracy(ex, head, arrays)
    splits = [split_data(ex, spec, arrays[spec.name], totals[spec.name]) for spec in cfg.splits]
    add_odin(ex, splits, head)
    ex.workdir.clear_attempts()
    checkpoint("extract.write")
    write_bundle(ex.workdir.bundle_path, head.weight, head.bias, head.classes, splits,
                 provenance(ex, head, dim, start), feature_dtype=cfg.feature_dtype,
                 name=cfg.name or ex.out.name, variants=odin_declaration(cfg),
                 groups=cfg.groups)
    if cfg.layers:
        write_maps(ex, int(head.weight.shape[0]))
    checkpoint("extract.written")
    publish(ex.workdir.bundle_path, ex.out, cfg.overwrite)
    ex.workdir.discard()
    ex.log(f"wrote {ex.out} ({sum(len(s.features) for s in splits)} samples, {dim}-d)")
    return ex.out


def assemble(ex: Extractor) -> tuple[dict[str, Arrays], dict[str, dict[str, Any]]]:
    """Per split: (features, thumbnails or None) from its chunks, and the totals over every run
    that computed them (images, seconds)."""
    arrays: dict[str, Arrays] = {}
    totals: dict[str, dict[str, Any]] = {}
    for spec in ex.cfg.splits:
        plan = ex.plan(spec)
        feats, thumbs, seconds = [], [], 0.0
        for c in range(plan.count):
            chunk, secs = ex.workdir.read_chunk(spec.name, c, ex.chunk_fp(spec, c),
                                                len(plan.span(c)))
            feats.append(chunk["features"])
            if "thumbnails" in chunk:
                thumbs.append(chunk["thumbnails"])
            seconds += secs
        arrays[spec.name] = (np.concatenate(feats), np.concatenate(thumbs) if thumbs else None)
        totals[spec.name] = {"images": plan.n, "seconds": round(seconds, 3)}
    return arrays, totals


def write_maps(ex: Extractor, num_classes: int) -> None:
    """``--layers``: every split's maps (from its chunks) and each layer's tail weights into
    the unpublished bundle (format: ``ash_core.layers.store``)."""

    maps: dict[str, dict[str, np.ndarray]] = {name: {} for name in ex.cfg.layers}
    for spec in ex.cfg.splits:
        plan = ex.plan(spec)
        chunks = [ex.workdir.read_chunk(spec.name, c, ex.chunk_fp(spec, c),
                                        len(plan.span(c)))[0] for c in range(plan.count)]
        for name in ex.cfg.layers:
            maps[name][spec.name] = np.concatenate([ch[f"map.{name}"] for ch in chunks])
    arch, args = ex.lm.name, None
    if ex.lm.notes.get("family") == "timm":  # rebuilt from the name and its arguments
        arch, args = f"timm:{ex.lm.notes['architecture']}", ex.lm.notes["model_args"]
    model = ex.lm.model
    tails = {name: tail_state(arch, model, name) if has_tail(arch, model, name) else None
             for name in ex.cfg.layers}
    add_layers(ex.workdir.bundle_path, arch, num_classes, ex.points, tails, maps, args)


def odin_declaration(cfg: Any) -> dict[str, dict[str, float]] | None:
    """The manifest's ``variants`` entry for ODIN (None without ``--odin``)."""
    if cfg.odin is None:
        return None
    return {"odin": {"temperature": cfg.odin[0], "epsilon": cfg.odin[1]}}


def add_odin(ex: Extractor, splits: list[SplitData], head: Head) -> None:
    """``--odin``: each split's perturbed features (from its chunks) as its "odin" variant,
    and the ID accuracy on perturbed inputs in the log and the head's info."""
    if ex.cfg.odin is None:
        return
    for spec, data in zip(ex.cfg.splits, splits, strict=True):
        if not ex.cfg.odin_on(spec):
            continue
        plan = ex.plan(spec)
        data.variants["odin"] = np.concatenate([
            ex.workdir.read_chunk(spec.name, c, ex.chunk_fp(spec, c), len(plan.span(c)))[0]
            ["odin.features"] for c in range(plan.count)])
    spec = _id_spec(ex)
    labels = ex.source(spec).labels()
    data = next(d for d in splits if d.name == spec.name)
    if labels is not None:
        acc = head_accuracy(head.weight, head.bias, data.variants["odin"], labels)
        head.info["odin_id_accuracy"] = round(acc, 5)
        ex.log(f"ID accuracy on ODIN-perturbed {spec.name}: {100 * acc:.2f}%")


def _id_spec(ex: Extractor) -> SplitSpec:
    return next(s for s in ex.cfg.splits if s.role == "id")


def choose_head(ex: Extractor, arrays: dict[str, Arrays], dim: int) -> Head:
    """The fitted head (--fit-head) or the model's own."""
    id_names = ex.source(_id_spec(ex)).class_names
    if ex.cfg.fit_head:
        spec = next(s for s in ex.cfg.splits if s.role == "id_fit")
        src = ex.source(spec)
        return fitted_head(arrays[spec.name][0], src.labels(), src.class_names or id_names,
                           spec.name)
    return model_head(ex.hook, ex.lm.classes or id_names, dim)


def report_accuracy(ex: Extractor, head: Head, arrays: dict[str, Arrays]) -> None:
    """ID accuracy (when the ID split has labels) into the head's info and the log."""
    spec = _id_spec(ex)
    labels = ex.source(spec).labels()
    if labels is not None:
        acc = head_accuracy(head.weight, head.bias, arrays[spec.name][0], labels)
        head.info["id_accuracy"] = round(acc, 5)
        ex.log(f"ID accuracy on {spec.name} ({len(labels)} images): {100 * acc:.2f}%")
    if ex.cfg.fit_head:
        ex.log(f"fitted head: train accuracy {100 * head.info['train_accuracy']:.2f}% on "
               f"{head.info['fit_split']}")


def split_data(ex: Extractor, spec: SplitSpec, arrays: Arrays,
               totals: dict[str, Any]) -> SplitData:
    """One split for ``write_bundle``: features, labels (ID roles), sidecar, thumbnails."""
    src = ex.source(spec)
    feats, thumbs = arrays
    labels = src.labels()
    in_dist = spec.role in ID_ROLES
    # OOD sets' own labels are not classes of the model: label -1, kept as source_label
    meta = pd.DataFrame({"sample_id": np.arange(len(src)),
                         "label": labels if labels is not None and in_dist else -1,
                         "source": src.sources()})
    if labels is not None and not in_dist:
        meta["source_label"] = labels
    return SplitData(spec.name, spec.role, feats, labels if in_dist else None, meta=meta,
                     thumbnails=thumbs,
                     info={"data": {"spec": spec.data, **src.describe()},
                           "extraction": totals})


def provenance(ex: Extractor, head: Head, dim: int, start: float) -> dict[str, Any]:
    """The manifest's provenance: model, layer, classifier, preprocessing, extraction."""
    import torchvision

    cfg, device = ex.cfg, ex.device
    return {
        "model": ex.lm.provenance(),
        "layer": {**ex.hook.describe(), "dim": dim},
        "classifier": head.info,
        "preprocessing": ex.protocol.describe(),
        "data_root": cfg.data_root,
        "extraction": {
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - start, 2),
            "device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                     if device.type == "cuda" else ""),
            "amp": bool(cfg.amp and device.type == "cuda"),
            "world_size": ex.world, "batch_size": cfg.batch_size,
            "chunk_batches": cfg.chunk_batches, "command": " ".join(sys.argv),
            "recipe_sha256": ex.fps.bundle,
            **cfg.extra,
        },
    }
