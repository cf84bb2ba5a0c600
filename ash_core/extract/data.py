"""Data sources for extraction, the spec strings that name them, and the model-input dataset.

A *source* is an indexable set of images with optional labels and a per-sample ``source``
reference (a path relative to the data root, or ``file#index`` for array files). Sources are
described by a short spec string so a bundle recipe stays readable::

    folder:cifar10/test                 image folder: class subfolders (labels) or flat
    idx:mnist/t10k-images-idx3-ubyte.gz IDX images (labels read from the sibling labels file)
    npz:animal-mnist/animal_mnist.npz   npz with uint8 ``images`` and optional ``labels``
    noise:gaussian?n=1000&seed=0        generated noise (gaussian or uniform), seeded
    torchvision:CIFAR10?root=tv&train=0 a torchvision dataset (download only with download=1)

Any spec takes ``?limit=N`` (first N samples) and ``&every=K`` (every K-th sample). Relative
paths are resolved against the data root. Files are listed sorted, so order is deterministic.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .protocol import Protocol

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
KINDS = ("folder", "idx", "npz", "noise", "torchvision")


# --------------------------------------------------------------------------- sources


class Source:
    """An indexable image set. Subclasses implement ``_load`` and set the metadata."""

    kind = "source"
    #: whether the images may be redistributed as thumbnails inside a bundle
    redistributable = False
    #: thumbnails are the raw stored image (True) or the preprocessed input (False)
    raw_thumbnails = False

    def __init__(self, n: int, labels: np.ndarray | None, class_names: list[str] | None,
                 describe: dict[str, Any]):
        self.indices = np.arange(n)
        self._labels = labels
        self.class_names = class_names
        self._describe = describe

    def select(self, limit: int | None = None, every: int | None = None) -> Source:
        """Keep every ``every``-th sample, then the first ``limit`` of those."""
        if every:
            self.indices = self.indices[::every]
        if limit is not None:
            self.indices = self.indices[:limit]
        return self

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else np.asarray(self._labels)[self.indices]

    def sources(self) -> list[str]:
        return [self._ref(int(i)) for i in self.indices]

    def image(self, k: int) -> Image.Image | np.ndarray:
        return self._load(int(self.indices[k]))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._describe, "count": len(self)}

    def _load(self, i: int) -> Image.Image | np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ref(self, i: int) -> str:
        return f"{self.kind}#{i}"


def _rel(path: Path, data_root: Path | None) -> str:
    """``path`` relative to the data root when inside it, else as given."""
    if data_root is not None:
        try:
            return path.resolve().relative_to(data_root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


class FolderSource(Source):
    """Images in ``root/<class>/*`` (labels = sorted class index) or directly in ``root``."""

    kind = "folder"

    def __init__(self, root: Path, data_root: Path | None = None):
        if not root.is_dir():
            raise DataError(f"image folder {root} does not exist or is not a directory; check "
                            "the path (relative paths are resolved against --data-root).")
        try:
            classes = sorted(p.name for p in root.iterdir() if p.is_dir()
                             and not p.name.startswith("."))
        except PermissionError:
            raise DataError(f"image folder {root} is not readable (permission denied).") from None
        files: list[Path] = []
        labels: list[int] = []
        if classes:
            for c, name in enumerate(classes):
                found = sorted(p for p in (root / name).rglob("*")
                               if p.suffix.lower() in IMAGE_EXTS and p.is_file())
                files += found
                labels += [c] * len(found)
        else:
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS
                           and p.is_file())
        if not files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {root} or "
                            "its class subfolders; point at a folder of images.")
        self.files = files
        self.refs = [_rel(p, data_root) for p in files]
        super().__init__(len(files), np.array(labels, dtype=np.int64) if classes else None,
                         classes or None,
                         {"path": _rel(root, data_root),
                          "layout": "class subfolders" if classes else "flat"})

    def _load(self, i: int) -> Image.Image:
        try:
            with Image.open(self.files[i]) as img:
                img.load()
                return img
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {self.files[i]} ({exc}); remove or fix the "
                            "file.") from None

    def _ref(self, i: int) -> str:
        return self.refs[i]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path} ({exc}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (bad magic {raw[:4].hex()}).")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} values (truncated?).")
    return data.reshape(dims)


class ArraySource(Source):
    """uint8 images [N, H, W] or [N, H, W, C] held in memory (IDX or npz)."""

    redistributable = False
    raw_thumbnails = True

    def __init__(self, kind: str, images: np.ndarray, labels: np.ndarray | None, ref: str,
                 describe: dict[str, Any]):
        self.kind = kind
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(f"{ref}: images must be uint8 [N, H, W] or [N, H, W, C], got "
                            f"{images.dtype} {images.shape}.")
        if labels is not None and len(labels) != len(images):
            raise DataError(f"{ref}: {len(labels)} labels for {len(images)} images.")
        self.images = images
        self.ref = ref
        super().__init__(len(images), labels, None, describe)

    def _load(self, i: int) -> np.ndarray:
        return self.images[i]

    def _ref(self, i: int) -> str:
        return f"{self.ref}#{i}"


def idx_source(path: Path, data_root: Path | None) -> ArraySource:
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist.")
    images = read_idx(path)
    labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = None
    if labels_path != path and labels_path.is_file():
        labels = read_idx(labels_path).astype(np.int64)
    return ArraySource("idx", images, labels, _rel(path, data_root),
                       {"path": _rel(path, data_root),
                        "labels": _rel(labels_path, data_root) if labels is not None else None})


def npz_source(path: Path, data_root: Path | None, images_key: str = "images",
               labels_key: str = "labels") -> ArraySource:
    if not path.is_file():
        raise DataError(f"npz file {path} does not exist.")
    with np.load(path, allow_pickle=False) as z:
        if images_key not in z:
            raise DataError(f"{path} has no array {images_key!r}; it holds {list(z.keys())} "
                            "(choose one with ?images=KEY).")
        images = np.asarray(z[images_key])
        labels = np.asarray(z[labels_key]).astype(np.int64) if labels_key in z else None
    return ArraySource("npz", images, labels, _rel(path, data_root),
                       {"path": _rel(path, data_root), "images_key": images_key})


class NoiseSource(Source):
    """Generated noise images (uint8), fully determined by kind, count, seed and shape.

    gaussian: N(127.5, 63.75^2) per pixel, clipped to [0, 255]; uniform: integers in [0, 255].
    """

    kind = "noise"
    redistributable = True
    raw_thumbnails = True

    def __init__(self, noise: str, n: int, seed: int, shape: tuple[int, int, int]):
        if noise not in ("gaussian", "uniform"):
            raise DataError(f"noise kind must be 'gaussian' or 'uniform', got {noise!r}.")
        if n <= 0:
            raise DataError(f"noise set size must be positive, got n={n}.")
        rng = np.random.default_rng(seed)
        if noise == "gaussian":
            arr = np.clip(np.rint(rng.normal(127.5, 63.75, size=(n, *shape))), 0, 255)
        else:
            arr = rng.integers(0, 256, size=(n, *shape))
        self.images = arr.astype(np.uint8)
        if shape[2] == 1:
            self.images = self.images[..., 0]
        self.noise, self.seed = noise, seed
        super().__init__(n, None, None, {"noise": noise, "n": n, "seed": seed,
                                         "shape": list(shape)})

    def _load(self, i: int) -> np.ndarray:
        return self.images[i]

    def _ref(self, i: int) -> str:
        return f"noise:{self.noise}?seed={self.seed}#{i}"


class TorchvisionSource(Source):
    """A torchvision dataset by class name (e.g. CIFAR10, SVHN); downloads only on request."""

    kind = "torchvision"

    def __init__(self, name: str, root: Path, opts: dict[str, str]):
        import torchvision.datasets as tvd

        cls = getattr(tvd, name, None)
        if cls is None or not isinstance(cls, type):
            raise DataError(f"torchvision.datasets has no dataset {name!r} (e.g. CIFAR10, "
                            "CIFAR100, SVHN, MNIST, FashionMNIST).")
        download = opts.pop("download", "0") in ("1", "true", "yes")
        kwargs: dict[str, Any] = {"download": download}
        if "train" in opts:
            kwargs["train"] = opts.pop("train") in ("1", "true", "yes")
        if "split" in opts:
            kwargs["split"] = opts.pop("split")
        try:
            self.ds = cls(str(root), **kwargs)
        except (RuntimeError, OSError) as exc:
            raise DataError(f"torchvision dataset {name} not found under {root} ({exc}); add "
                            "download=1 to the spec to allow downloading it.") from None
        targets = getattr(self.ds, "targets", None)
        if targets is None:
            targets = getattr(self.ds, "labels", None)
        labels = np.asarray(targets, dtype=np.int64) if targets is not None else None
        self.name = name
        super().__init__(len(self.ds), labels, list(getattr(self.ds, "classes", []) or []) or None,
                         {"dataset": name, "root": root.as_posix(), **kwargs})

    def _load(self, i: int) -> Image.Image:
        img = self.ds[i][0]
        return img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))

    def _ref(self, i: int) -> str:
        return f"torchvision:{self.name}#{i}"


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
                            f"{self.spec!r}; known: limit, every (all), n, seed (noise), images, "
                            "labels (npz), root, train, split, download (torchvision).")


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
        return FolderSource(_path_of(arg, data_root), data_root)
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
    if kind == "auto":
        kind = _detect_kind(spec, _path_of(arg, data_root))
    source = _build(kind, arg, opts, data_root, input_shape)
    opts.check_all_used()
    return source.select(limit, every)


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
