"""Data sources for extraction, the spec strings that name them, and the model-input dataset.

A *source* is an indexable set of images with optional labels and a per-sample ``source``
reference (a path relative to the data root, or ``file#index`` for array files). Sources are
described by a short spec string so a bundle recipe stays readable::

    folder:cifar10/test                 image folder: class subfolders (labels) or flat
    idx:mnist/t10k-images-idx3-ubyte.gz IDX images (labels read from the sibling labels file)
    npz:animal-mnist/animal_mnist.npz   npz with uint8 ``images`` and optional ``labels``
    noise:gaussian?n=1000&seed=0        generated noise (gaussian or uniform), seeded
    torchvision:CIFAR10?root=tv&train=0 a torchvision dataset (download only with download=1)

Any spec takes ``?limit=N`` (first N samples), ``&every=K`` (every K-th sample) and
``&part=I/N`` or ``&part=I-J/N`` with ``&part_seed=S`` (blocks I..J of a seeded partition into N
near-equal blocks: the parts of one seed are disjoint and cover the set; applied first, then
``every``, then ``limit``). A flat folder takes ``annotations=FILE`` (lines ``FILENAME CLASS``,
e.g. Tiny-ImageNet's ``val_annotations.txt``) for its labels. ``classes=LIST`` makes the labels
indices into another class list than the set's own sorted class names: ``imagenet-1k`` (or
another of timm's ImageNet subsets: the synsets in the head's index order) or a text file with
one class name per line, so that a subset of a classifier's classes (Tiny-ImageNet's 200
wnids) carries that classifier's labels. Relative paths are resolved against the data root.
Files are listed sorted, so order is deterministic.
"""


from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import torch

from ash_core.errors import DataError
from ash_core.extract.protocol import Protocol
from ash_core.extract.sources import (
    FolderSource,
    NoiseSource,
    Source,
    TorchvisionSource,
    idx_source,
    npz_source,
)

KINDS = ("folder", "idx", "npz", "noise", "torchvision")


class _Options:
    """The ``?key=value&...`` options of one spec; each is taken once, leftovers are errors."""

    def __init__(self, spec: str, query: str):
        self.spec = spec
        try:
            self.opts = dict(parse_qsl(query, keep_blank_values=True,
                                       strict_parsing=bool(query)))
        except ValueError:
            raise DataError(f"bad options {query!r} in data spec {spec!r}; use "
                            "?key=value&key=value.") from None

    def text(self, key: str, default: str) -> str:
        return self.opts.pop(key, default)

    def integer(self, key: str, default: int | None = None, low: int | None = None
                ) -> int | None:
        if key not in self.opts:
            return default
        try:
            value = int(self.opts.pop(key))
        except ValueError:
            raise DataError(f"option {key} in {self.spec!r} must be an integer.") from None
        if low is not None and value < low:  # not Python slicing: ?limit=-1 is no "all but one"
            raise DataError(f"option {key} in {self.spec!r} must be >= {low}, got {value}.")
        return value

    def check_all_used(self) -> None:
        if self.opts:
            raise DataError(f"unknown option(s) {', '.join(self.opts)} in data spec "
                            f"{self.spec!r}; known: limit, every, part, part_seed, classes (all), n, seed "
                            "(noise), images, labels (npz), annotations (folder), root, train, "
                            "split, download (torchvision).")


def _path_of(arg: str, data_root: Path | None) -> Path:
    q = Path(arg).expanduser()
    return q if q.is_absolute() or data_root is None else data_root / q


def _detect_kind(spec: str, path: Path) -> str:
    """folder, npz or idx for a bare path."""
    if path.is_dir():
        return "folder"
    if path.name.endswith(".npz"):
        return "npz"
    if "idx" in path.name or "ubyte" in path.name:
        return "idx"
    raise DataError(
        f"cannot tell what {spec!r} is ({path} is not a folder, .npz or IDX file). Use "
        "folder:PATH, idx:PATH, npz:PATH, noise:gaussian|uniform or torchvision:NAME.")


def _build(kind: str, arg: str, opts: _Options, data_root: Path | None,
           input_shape: tuple[int, int, int]) -> Source:
    """The source of one kind, taking its own options."""
    if kind == "folder":
        notes = opts.text("annotations", "")
        return FolderSource(_path_of(arg, data_root), data_root,
                            _path_of(notes, data_root) if notes else None)
    if kind == "idx":
        return idx_source(_path_of(arg, data_root), data_root)
    if kind == "npz":
        return npz_source(_path_of(arg, data_root), data_root, opts.text("images", "images"),
                          opts.text("labels", "labels"))
    if kind == "noise":
        n, seed = opts.integer("n", 1000), opts.integer("seed", 0)
        assert n is not None and seed is not None
        return NoiseSource(arg, n, seed, input_shape)
    return TorchvisionSource(arg, _path_of(opts.text("root", "torchvision"), data_root),
                             opts.opts)


def parse_spec(spec: str, data_root: Path | None, input_shape: tuple[int, int, int]) -> Source:
    """Build a source from a spec string (see the module docstring).

    ``input_shape`` is (H, W, C) of the model input: the shape of generated noise.
    """
    text, _, query = spec.partition("?")
    opts = _Options(spec, query)
    kind, sep, arg = text.partition(":")
    if not sep or kind not in KINDS:
        kind, arg = "auto", text
    limit, every = opts.integer("limit", low=1), opts.integer("every", low=1)
    part = _part(opts)
    if kind == "auto":
        kind = _detect_kind(spec, _path_of(arg, data_root))
    source = _build(kind, arg, opts, data_root, input_shape)
    classes = opts.text("classes", "")
    if classes:
        source.use_classes(*class_list(classes, data_root))
    opts.check_all_used()
    return source.select(limit, every, part)


def class_list(value: str, data_root: Path | None) -> tuple[list[str], str]:
    """The class list that ``classes=VALUE`` names, and how it is described: one of timm's
    ImageNet subsets (``imagenet-1k``: its 1000 wnids in ImageNet-1k index order, from
    ``timm.data.ImageNetInfo``), or a text file whose lines start with a class name."""
    if value.lower().startswith("imagenet"):
        from timm.data import ImageNetInfo

        try:
            names = list(ImageNetInfo(value).label_names())
        except (AssertionError, ValueError, OSError):
            raise DataError(f"classes={value}: timm knows no ImageNet subset {value!r} (e.g. "
                            "imagenet-1k, imagenet-22k); or give a file of class names.") from None
        return names, f"{value} (timm.data.ImageNetInfo)"
    path = _path_of(value, data_root)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"classes={value}: cannot read {path} ({exc}); give imagenet-1k or a "
                        "text file with one class name per line.") from None
    names = [line.split()[0] for line in lines if line.strip()]
    if not names:
        raise DataError(f"classes={value}: {path} names no classes.")
    return names, value


def _part(opts: _Options) -> tuple[int, int, int, int] | None:
    """``part=I/N`` or ``part=I-J/N`` (blocks I..J of N) and ``part_seed=S`` (default 0)."""
    given, seeded = "part" in opts.opts, "part_seed" in opts.opts
    text = opts.text("part", "")
    seed = opts.integer("part_seed", 0, low=0)
    if not given:
        if seeded:
            raise DataError(f"part_seed in {opts.spec!r} needs part=I/N (or part=I-J/N).")
        return None
    blocks, slash, parts = text.partition("/")
    first, _, last = blocks.partition("-")
    try:
        numbers = int(first), int(last or first), int(parts)
    except ValueError:
        numbers = ()
    if not slash or len(numbers) != 3 or min(numbers) < 0:
        raise DataError(f"part={text!r} in {opts.spec!r} must be I/N or I-J/N with integers "
                        "0 <= I <= J < N (e.g. part=0/10 for a tenth, part=1-9/10 for the rest).")
    assert seed is not None
    return (*numbers, seed)


class PreparedDataset(torch.utils.data.Dataset):
    """Positions ``order`` of a source, resized/cropped: yields (uint8 [H, W, C] input,
    thumbnail). Normalisation happens per batch (``Protocol.normalise``)."""

    def __init__(self, source: Source, protocol: Protocol, order: Sequence[int],
                 thumbnails: bool):
        self.source, self.protocol = source, protocol
        self.order = list(order)
        self.thumbnails = thumbnails

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.source.image(self.order[k])
        arr = self.protocol.to_uint8(img)
        thumb = torch.empty(0, dtype=torch.uint8)
        if self.thumbnails:
            raw = img if self.source.raw_thumbnails and isinstance(img, np.ndarray) else arr
            raw = np.asarray(raw, dtype=np.uint8)
            if raw.ndim == 3 and raw.shape[2] == 1:
                raw = raw[:, :, 0]
            thumb = torch.from_numpy(np.array(raw, dtype=np.uint8))
        return torch.from_numpy(arr), thumb

    def input(self, k: int) -> torch.Tensor:
        """The normalised model input [C, H, W] of item ``k`` (for checks and tests)."""
        return self.protocol.normalise(self[k][0])[0]
