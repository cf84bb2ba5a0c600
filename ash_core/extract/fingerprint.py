"""Fingerprints: which recipe a piece of extraction work belongs to.

Three levels, each a sha256 of canonical JSON:

* a *split* fingerprint: the model, its weights' sha256, the layer, the preprocessing, the
  batch size, AMP and device type, the data root, ODIN's T and EPS where the split stores
  ODIN's variant, and the split's own spec (name, role, data, thumbnails) -- everything
  that determines that split's feature values;
* a *chunk* fingerprint: its split's fingerprint plus the chunk's rows and the split's size,
  recorded inside every chunk file, so a chunk is reused only by the recipe, split and rows
  it was computed for (never by another recipe that happens to use the same file names);
* the *work* fingerprint (all splits; kept in the work directory's marker) and the *bundle*
  fingerprint (the work fingerprint plus the storage options; kept in the finished bundle's
  manifest as ``extraction.recipe_sha256``, so a rerun of the same recipe recognises it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ash_core.extract.config import ExtractConfig


def digest(obj: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fingerprints:
    """The fingerprints of one recipe (see the module docstring)."""

    work: str
    bundle: str
    splits: dict[str, str]
    recipe: dict[str, Any]  # the readable fields behind ``work``, for the marker file

    def chunk(self, split: str, c: int, rows: range, n: int) -> str:
        """Fingerprint of chunk ``c`` (rows ``rows`` of ``n``) of ``split``."""
        return digest({"split": self.splits[split], "chunk": c,
                       "rows": [rows.start, rows.stop], "n": n})


def make_fingerprints(cfg: ExtractConfig, weights_sha256: str | None,
                      preprocessing: dict[str, Any], device_type: str,
                      bundle_name: str) -> Fingerprints:
    """Fingerprints of ``cfg`` run with these weights, preprocessing and device type."""
    common = {"model": cfg.model, "weights": cfg.weights, "weights_sha256": weights_sha256,
              "layer": cfg.layer, "preprocessing": preprocessing, "batch_size": cfg.batch_size,
              "amp": bool(cfg.amp and device_type == "cuda"), "device_type": device_type,
              "data_root": cfg.data_root}
    if cfg.layers:  # only when asked, so recipes without maps keep their fingerprints
        common["layers"] = list(cfg.layers)
    if cfg.random_init:  # likewise: recipes with weights keep their fingerprints
        common["random_init"] = True
    # ODIN's T and EPS belong to the splits that store its variant (not to id_fit), and only
    # when asked, so recipes without ODIN keep their fingerprints
    odin = {s.name: {"odin": list(cfg.odin)} if cfg.odin_on(s) else {} for s in cfg.splits}
    splits = {s.name: digest({**common, **odin[s.name], "split": asdict(s)})
              for s in cfg.splits}
    recipe = {**common, "chunk_batches": cfg.chunk_batches,
              "splits": [asdict(s) for s in cfg.splits],
              **({"odin": list(cfg.odin)} if cfg.odin is not None else {})}
    work = digest({"recipe": recipe, "splits": [splits[s.name] for s in cfg.splits]})
    # groups change the manifest, not the features; only when declared, so recipes without
    # groups keep their fingerprints
    bundle = digest({"work": work, "feature_dtype": cfg.feature_dtype,
                     "fit_head": cfg.fit_head, "name": bundle_name,
                     **({"groups": cfg.groups} if cfg.groups is not None else {})})
    return Fingerprints(work, bundle, splits, recipe)
