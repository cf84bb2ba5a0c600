"""The work directory ``<out>.partial/``: resumable chunks, each tagged with its fingerprint.

Layout::

    NAME.partial/
      progress.json                  marker: {"format": "ash-extract-work", "version": 2,
                                     "fingerprint": <work fingerprint>, "recipe": {...}}
      <split>/cNNNNNN.safetensors    features [rows, D] (+ thumbnails); safetensors metadata
                                     "ash_chunk" = the chunk's fingerprint, "seconds" = the
                                     time it took (summed into the bundle's provenance)
      .bundle/                       the finished bundle, just before it is published

The directory is *ours* when its marker says so (or it is empty); it is reused only when the
marker and every chunk carry this recipe's fingerprints. Anything else is never mixed in: a
stale directory of ours is discarded as a whole (with --overwrite) or the run stops; a
directory that is not ours is never touched. Creation and deletion are kill-safe (see
``leftovers``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.safetensors_io import read_tensors
from ash_core.errors import ExtractError
from ash_core.extract.fingerprint import Fingerprints
from ash_core.extract.leftovers import remove_tree, sibling
from ash_core.faults import checkpoint

MARKER = "progress.json"
WORK_FORMAT = "ash-extract-work"
WORK_VERSION = 2
CHUNK_KEY = "ash_chunk"


class ChunkPlan:
    """Chunk c of a split covers positions [c * size, min(n, (c + 1) * size))."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        self.count = (n + size - 1) // size

    def span(self, c: int) -> range:
        return range(c * self.size, min(self.n, (c + 1) * self.size))


def chunk_metadata(path: Path) -> dict[str, str]:
    """The safetensors ``__metadata__`` of a chunk file ({} when unreadable)."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(min(size, 1 << 24)))
        meta = header.get("__metadata__") if isinstance(header, dict) else None
    except (OSError, ValueError, struct.error):
        return {}
    return meta if isinstance(meta, dict) else {}


class WorkDir:
    """``<out>.partial/`` for the bundle directory ``out``."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out.with_name(out.name + ".partial")

    @property
    def bundle_path(self) -> Path:
        return self.path / ".bundle"  # a split name never starts with "."

    def chunk_path(self, split: str, c: int) -> Path:
        return self.path / split / f"c{c:06d}.safetensors"

    # ---- recognising and validating

    def marker(self) -> dict[str, Any] | None:
        """The marker, or None when the directory is not recognisably ours."""
        try:
            record = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) and record.get("format") == WORK_FORMAT \
            else None

    def state(self, fps: Fingerprints, expected: Mapping[Path, str]) -> str:
        """absent, empty, current (reusable), stale (ours, other recipe) or foreign."""
        if not (self.path.exists() or self.path.is_symlink()):
            return "absent"
        if self.path.is_symlink() or not self.path.is_dir():
            return "foreign"
        if not any(self.path.iterdir()):
            return "empty"
        record = self.marker()
        if record is None:
            return "foreign"
        if record.get("version") != WORK_VERSION or record.get("fingerprint") != fps.work:
            return "stale"
        chunks = [p for d in self.path.iterdir() if d.is_dir() and not d.name.startswith(".")
                  for p in d.glob("c*.safetensors")]
        if any(chunk_metadata(p).get(CHUNK_KEY) != expected.get(p) for p in chunks):
            return "stale"
        return "current"

    def open(self, fps: Fingerprints, expected: Mapping[Path, str], splits: list[str],
             overwrite: bool, log: Callable[[str], None]) -> None:
        """Make the directory ready for this recipe: resume, create, or discard and create."""
        state = self.state(fps, expected)
        if state == "foreign":
            raise ExtractError(
                f"{self.path} exists but is not an extraction work directory (no {MARKER} "
                f"marker of format {WORK_FORMAT!r}); it is left untouched. Move it away or "
                "choose another -o.")
        if state == "stale" and not overwrite:
            raise ExtractError(
                f"{self.path} holds a partial extraction of a different recipe (other "
                "settings, data or version); rerun with the original settings to resume it, "
                "or pass --overwrite to discard it.")
        if state == "current":
            log(f"resuming the partial extraction in {self.path}")
            self.clear_attempts()
            return
        if state == "stale":
            log(f"discarding {self.path}: it belongs to a different recipe")
            self.discard()
        elif state == "empty":
            self.path.rmdir()
        self.create(fps, splits)

    # ---- creating and deleting (kill-safe)

    def create(self, fps: Fingerprints, splits: list[str]) -> None:
        """Build the directory under a temporary name, marker first, then rename it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = sibling(self.out, "partial.new")
        new.mkdir()
        try:
            for name in splits:
                (new / name).mkdir()
            record = {"format": WORK_FORMAT, "version": WORK_VERSION, "fingerprint": fps.work,
                      "recipe": fps.recipe}
            (new / MARKER).write_text(json.dumps(record, indent=1, default=str),
                                      encoding="utf-8")
            checkpoint("extract.work-new")
            os.replace(new, self.path)
        except OSError:  # a full disk: nothing of ours stays behind (a kill's goes later)
            shutil.rmtree(new, ignore_errors=True)
            raise

    def discard(self) -> None:
        """Delete the whole directory (tombstone first)."""
        remove_tree(self.path, sibling(self.out, "partial.dead"))

    def clear_attempts(self) -> None:
        """Remove an unpublished bundle of an earlier run (it is rewritten from the chunks)."""
        for p in [self.bundle_path, *self.path.glob("..bundle.tmp-*")]:  # write_bundle's temp
            if p.is_dir():
                shutil.rmtree(p)

    # ---- chunks

    def save_chunk(self, split: str, c: int, arrays: dict[str, np.ndarray], fingerprint: str,
                   seconds: float) -> None:
        """Write one chunk atomically (complete or absent), tagged with its fingerprint."""
        from safetensors import SafetensorError
        from safetensors.numpy import save_file

        path = self.chunk_path(split, c)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata={CHUNK_KEY: fingerprint, "seconds": f"{seconds:.6f}"})
            os.replace(tmp, path)
        except (OSError, SafetensorError) as exc:  # a full disk, a quota, a read-only mount
            tmp.unlink(missing_ok=True)
            raise ExtractError(
                f"cannot write chunk {path} ({exc}); free space (or fix the directory) and "
                "rerun the same command: the chunks already written are kept and reused."
            ) from None
        checkpoint("extract.chunk")

    def chunk_done(self, split: str, c: int, fingerprint: str) -> bool:
        """Whether chunk ``c`` exists and was computed for ``fingerprint``."""
        return chunk_metadata(self.chunk_path(split, c)).get(CHUNK_KEY) == fingerprint

    def read_chunk(self, split: str, c: int, fingerprint: str, rows: int
                   ) -> tuple[dict[str, np.ndarray], float]:
        """A chunk's arrays and seconds; ExtractError when it is missing, stale or wrong."""
        path = self.chunk_path(split, c)
        if not path.is_file():
            raise ExtractError(f"chunk {path} is missing after extraction (did a rank fail?); "
                               "rerun the same command to finish it.")
        meta = chunk_metadata(path)
        if meta.get(CHUNK_KEY) != fingerprint:
            raise ExtractError(f"chunk {path} belongs to another recipe; rerun with "
                               "--overwrite to discard the work directory.")
        arrays = read_tensors(path, mmap=False)
        if arrays["features"].shape[0] != rows:
            raise ExtractError(f"chunk {path} has the wrong size; rerun with --overwrite.")
        return arrays, float(meta.get("seconds", 0.0))
