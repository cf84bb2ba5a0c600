"""Image sources for extraction: indexable image sets with optional labels and a per-sample
``source`` reference (a path relative to the data root, or ``file#index`` for array files).

Built from spec strings by ``ash_core.extract.data.parse_spec``; every file list is sorted, so
the order (and so every bundle) is deterministic.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ash_core.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


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

    def select(self, limit: int | None = None, every: int | None = None,
               part: tuple[int, int, int, int] | None = None) -> Source:
        """Keep the ``part`` (first block, last block, blocks, seed; see ``part_positions``)
        of the whole set, then every ``every``-th sample, then the first ``limit``."""
        if part is not None:
            self.indices = self.indices[part_positions(len(self.indices), *part)]
        if every:
            self.indices = self.indices[::every]
        if limit is not None:
            self.indices = self.indices[:limit]
        return self

    def __len__(self) -> int:
        return len(self.indices)

    def use_classes(self, classes: list[str], name: str) -> None:
        """Make the labels indices into ``classes`` (e.g. a classifier's own class list,
        ImageNet-1k's 1000 wnids) instead of into this set's sorted class names, so that ID
        accuracy is measured against the model's head. Every class of the set must be in
        ``classes``, which has no duplicates, so the mapping is one to one."""
        if self._labels is None or not self.class_names:
            raise DataError(f"classes={name} relabels named classes, but this {self.kind} set "
                            "has none (use a folder with class subfolders or annotations=).")
        if len(set(classes)) != len(classes):
            twice = sorted({c for c in classes if classes.count(c) > 1})
            raise DataError(f"class list {name} names {twice[:3]} more than once.")
        index = {c: i for i, c in enumerate(classes)}
        missing = [c for c in self.class_names if c not in index]
        if missing:
            raise DataError(f"{len(missing)} class(es) of this set are not in {name} (first: "
                            f"{missing[0]!r}); every class needs an index there.")
        table = np.array([index[c] for c in self.class_names], dtype=np.int64)
        self._labels = table[np.asarray(self._labels)]
        self.class_names = list(classes)
        self._describe["classes"] = name

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


def part_positions(n: int, first: int, last: int, parts: int, seed: int) -> np.ndarray:
    """Blocks ``first``..``last`` (inclusive) of a seeded partition of ``range(n)``, sorted.

    ``range(n)`` is shuffled with ``numpy.random.default_rng(seed)`` and cut into ``parts``
    blocks of near-equal size (``numpy.array_split``: sizes differ by at most one), so the
    parts of one seed are disjoint and together cover every sample once. Sorting keeps the
    source's own (file) order inside a part.
    """
    if not 0 <= first <= last < parts:
        raise DataError(f"part {first}-{last}/{parts} is out of range: blocks are numbered "
                        f"0..{parts - 1}, first <= last (e.g. part=0/10 or part=1-9/10).")
    if parts > n:
        raise DataError(f"cannot cut a set of {n} samples into {parts} parts (some would be "
                        "empty); use fewer parts.")
    blocks = np.array_split(np.random.default_rng(seed).permutation(n), parts)
    return np.sort(np.concatenate(blocks[first:last + 1]))


def read_annotations(path: Path) -> dict[str, str]:
    """File name -> class name from a text file whose lines start ``FILENAME CLASS``
    (whitespace-separated; further columns ignored), e.g. Tiny-ImageNet's
    ``val/val_annotations.txt``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotations file {path} ({exc}); give a text file of "
                        "'FILENAME CLASS' lines.") from None
    table: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(f"{path} line {number}: expected 'FILENAME CLASS ...', got "
                            f"{line.strip()!r}.")
        table[fields[0]] = fields[1]
    if not table:
        raise DataError(f"annotations file {path} is empty.")
    return table


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

    def __init__(self, root: Path, data_root: Path | None = None,
                 annotations: Path | None = None):
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
        describe = {"path": _rel(root, data_root),
                    "layout": "class subfolders" if classes else "flat"}
        if annotations is not None:
            if classes:
                raise DataError(f"annotations= labels a flat folder, but {root} has class "
                                "subfolders (whose names are already the labels); drop it.")
            labels, classes = _annotated_labels(files, annotations)
            describe["annotations"] = _rel(annotations, data_root)
        self.files = files
        self.refs = [_rel(p, data_root) for p in files]
        super().__init__(len(files), np.array(labels, dtype=np.int64) if classes else None,
                         classes or None, describe)

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


def _annotated_labels(files: list[Path], annotations: Path) -> tuple[list[int], list[str]]:
    """Labels (index into the sorted class names) of ``files`` from an annotations file."""
    table = read_annotations(annotations)
    missing = [p.name for p in files if p.name not in table]
    if missing:
        raise DataError(f"{len(missing)} image(s) have no line in {annotations} (first: "
                        f"{missing[0]}); every image of the folder needs a class.")
    classes = sorted({table[p.name] for p in files})
    index = {c: i for i, c in enumerate(classes)}
    return [index[table[p.name]] for p in files], classes


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
