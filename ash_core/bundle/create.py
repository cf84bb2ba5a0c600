"""``create_bundle``: a bundle from arrays the user already has (bring your own features).
One code path: everything goes through ``write_bundle`` (checked, hashed, atomic), exactly
as extraction writes."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.load import load_bundle
from ash_core.bundle.model import Bundle
from ash_core.bundle.write import SplitData, write_bundle
from ash_core.errors import BundleError

#: what ``create_bundle`` records as provenance
PROVENANCE = {"source": "create_bundle"}


@dataclass
class SplitArrays:
    """One split's arrays for ``create_bundle``: a role, features [N, D], labels [N]."""

    role: str
    features: Any
    labels: Any = None


def _split(name: str, value: Any) -> SplitData:
    if isinstance(value, SplitArrays):
        return SplitData(name, value.role, value.features, value.labels)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        return SplitData(name, value[0], value[1], value[2] if len(value) == 3 else None)
    raise BundleError(f"split {name!r}: give (role, features) or (role, features, labels), "
                      f"or a SplitArrays; got {type(value).__name__}.")


def create_bundle(out: str | os.PathLike | None, head: Sequence[Any],
                  splits: Mapping[str, Any], classes: Sequence[str] | None = None,
                  name: str | None = None, feature_dtype: str = "float32",
                  overwrite: bool = False,
                  groups: Mapping[str, Sequence[str]] | None = None) -> Bundle:
    """Write a bundle at ``out`` from a head ``(weight [C, D], bias [C])`` and ``splits``
    (split name -> ``(role, features[, labels])`` or ``SplitArrays``; numpy or torch) and
    return it opened, ready for ``evaluate``, ``sweep``, ``search`` and the leaderboard.

    ``out=None`` keeps the bundle off your folders: it lives in a temporary directory that
    is removed when the returned ``Bundle`` is garbage collected (a notebook's scratch
    bundle). ``groups`` (optional) names groups of OOD test splits, e.g.
    ``{"near": ["tin"], "far": ["mnist", "dtd"]}``. Class names default to
    ``class0 .. class{C-1}``. Every rule of the format is checked by ``write_bundle``
    before anything is published; a refusal is a ``BundleError`` and leaves ``out`` as it
    was.
    """
    if not isinstance(head, (tuple, list)) or len(head) != 2:
        raise BundleError("head must be (weight [C, D], bias [C]).")
    weight, bias = head
    if not isinstance(splits, Mapping) or not splits:
        raise BundleError("splits must map split names to (role, features[, labels]); "
                          "a bundle needs at least the 'id' split.")
    shape = np.shape(weight)
    if classes is None:
        if len(shape) != 2:
            raise BundleError(f"head weight must be [C, D]; got shape {tuple(shape)}.")
        classes = [f"class{i}" for i in range(shape[0])]
    data = [_split(str(k), v) for k, v in splits.items()]
    scratch = None if out is not None else Path(tempfile.mkdtemp(prefix="ash-bundle-"))
    path = Path(out) if out is not None else scratch / (name or "bundle")
    try:
        write_bundle(path, weight, bias, list(classes), data, provenance=PROVENANCE,
                     feature_dtype=feature_dtype, overwrite=overwrite, name=name,
                     groups=groups)
        # write_bundle has just hashed every file it wrote; hashing them again is no check
        bundle = load_bundle(path, verify=False)
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if scratch is not None:
        weakref.finalize(bundle, shutil.rmtree, scratch, ignore_errors=True)
    return bundle
