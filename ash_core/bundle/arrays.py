"""Arrays from the user's files, for ``ash-explore bundle create``; never unpickled.

``.npz`` (``features``, optional ``labels``) and ``.npy`` (features only) with
``allow_pickle=False``; ``.safetensors`` through ``safetensors_io``; ``.pt`` / ``.pth``
with ``torch.load(weights_only=True)`` (a tensor or a dict of tensors). Every failure is
a ``BundleError`` saying what was wrong and what to do.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ash_core.bundle.safetensors_io import looks_pickled, pickle_refusal, read_tensors
from ash_core.errors import BundleError

SUFFIXES = (".npz", ".npy", ".safetensors", ".pt", ".pth")


def _not_a(path: Path, kind: str, exc: BaseException) -> BundleError:
    return BundleError(f"{path} is not a readable {kind} file ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); save it again as {kind} or use another format "
                       f"({', '.join(SUFFIXES)}).")


def _load_pt(path: Path) -> dict[str, np.ndarray]:
    import torch  # only for .pt files: the rest of `bundle` runs without it

    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the error says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # weights_only refuses pickled objects: UnpicklingError
        raise BundleError(
            f"{path} is not a weights-only torch file: it holds objects other than tensors "
            "or is not a torch file at all, and ASH Explorer never unpickles (that can run "
            "arbitrary code). Save only tensors (torch.save({'features': t}, ...)) or use "
            ".safetensors / .npz."
        ) from exc
    if isinstance(obj, torch.Tensor):
        obj = {"features": obj}
    if not isinstance(obj, dict):
        raise BundleError(f"{path} holds a {type(obj).__name__}; save a tensor or a dict of "
                          "tensors.")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            out[str(key)] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return out


def _load_np(path: Path, suffix: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if suffix == ".npy":
            if looks_pickled(head):
                raise pickle_refusal(path, ".npy")
            if head[:6] != b"\x93NUMPY":
                raise BundleError(f"{path} is not a .npy file; save it with np.save.")
            return {"features": np.load(path, allow_pickle=False)}
        if head[:4] != b"PK\x03\x04":
            raise BundleError(f"{path} is not a .npz archive; save it with np.savez.")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except BundleError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _not_a(path, suffix, exc) from exc


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array in ``path`` by name (a lone .npy or tensor is ``features``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BundleError(f"{path}: unknown file type {suffix or '(none)'}; use one of "
                          f"{', '.join(SUFFIXES)}.")
    if not path.is_file():
        raise BundleError(f"{path} does not exist or is not a file.")
    if suffix in (".npz", ".npy"):
        return _load_np(path, suffix)
    if suffix == ".safetensors":
        return {k: np.asarray(v) for k, v in read_tensors(path, mmap=False).items()}
    return _load_pt(path)


def read_split(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """``(features, labels or None)`` from a split file."""
    arrays = read_arrays(path)
    if "features" not in arrays:
        raise BundleError(f"{path} has no array named 'features' (found: "
                          f"{', '.join(sorted(arrays)) or 'none'}); name the [N, D] "
                          "features 'features' and the optional labels 'labels'.")
    return arrays["features"], arrays.get("labels")


def read_head(path: str | os.PathLike, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(weight [C, D], bias [C])`` from ``path``: ``weight`` and ``bias``, or
    ``<key>.weight`` and ``<key>.bias`` of a classifier's state dict."""
    arrays = read_arrays(path)
    names = ("weight", "bias") if not key else (f"{key}.weight", f"{key}.bias")
    missing = [n for n in names if n not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)[:12]) or "none"
        hint = ("; pick the classifier with --head-key (e.g. --head-key fc for fc.weight)"
                if not key else "; check --head-key")
        raise BundleError(f"{path} has no {', '.join(missing)} (found: {found}){hint}.")
    return arrays[names[0]], arrays[names[1]]
