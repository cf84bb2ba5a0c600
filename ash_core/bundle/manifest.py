"""The bundle schema: manifest fields, split names and roles, label ranges.

Every rule lives here once and is applied both when a bundle is written and when it is
loaded (and by extraction, before any model runs), so a bundle that can be written can
be loaded and a bundle that loads is one that could have been written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.schema import (
    FEATURE_DTYPES as DTYPE_NAMES,
)
from ash_core.bundle.schema import (
    MANIFEST_RULE,
    MAX_NAME_LEN,
    ROLES,
    VARIANTS_RULE,
    SchemaError,
    short,
)
from ash_core.errors import BundleError

FORMAT = "ash-bundle"
VERSION = 1
MANIFEST = "manifest.json"
#: every entry a bundle directory may hold: what cleaning up a killed writer's copy may delete
BUNDLE_ENTRIES = frozenset({MANIFEST, "head.safetensors", "splits", "thumbs", "variants",
                            "layers"})
#: ROLES: id: the ID test set (exactly one); id_fit: ID training features (at most one);
#: id_val: ID validation set (at most one); ood / ood_val: OOD test / validation sets
ID_ROLES = ("id", "id_fit", "id_val")
#: roles of which a bundle has at most this many splits
ROLE_LIMITS = {"id": (1, 1), "id_fit": (0, 1), "id_val": (0, 1)}
#: manifest ``feature_dtype`` -> the safetensors dtype every split file must use
FEATURE_DTYPES = dict(zip(DTYPE_NAMES, ("F16", "F32"), strict=True))
MAX_MANIFEST_BYTES = 16 << 20
#: tensors a split file may hold, with their allowed dtypes (labels checked further below)
SPLIT_TENSORS = {"features": {"F16", "F32"}, "labels": {"I64"}}
HEAD_TENSORS = {"weight": {"F32"}, "bias": {"F32"}}
THUMB_TENSORS = {"images": {"U8"}}
#: a split's variant file (e.g. ODIN's perturbed features): features only, same dtype rule
VARIANT_TENSORS = {"features": {"F16", "F32"}}

_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_split_name(name: Any) -> str:
    """``name`` if it is a safe split/file name (letters, digits, ``-_.``), else BundleError.

    Split names become file names (``splits/<name>.safetensors``) and URL/dict keys, so
    anything else (``/``, spaces, a leading dot, a list, 200 characters) is refused.
    """
    if (not isinstance(name, str) or not name or len(name) > MAX_NAME_LEN
            or not set(name) <= _SAFE_CHARS or name.startswith(".")):
        raise BundleError(
            f"split name {short(name)} is not allowed; use 1-{MAX_NAME_LEN} letters, "
            "digits, '-', '_' and '.' (not starting with '.')."
        )
    return name


def check_split_roles(splits: Iterable[tuple[Any, Any]]) -> None:
    """The split-set rules, given ``(name, role)`` pairs, else BundleError.

    Every name safe (``check_split_name``) and unique; every role one of ``ROLES``;
    exactly one ``id``, at most one ``id_fit`` and at most one ``id_val``; any number of
    ``ood`` / ``ood_val`` splits.
    """
    pairs = list(splits)
    names = [check_split_name(name) for name, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BundleError(f"split names must be unique; repeated: {', '.join(dupes)}.")
    for name, role in pairs:
        if role not in ROLES:
            raise BundleError(
                f"split {name!r}: role must be one of {', '.join(ROLES)}, got {short(role)}."
            )
    roles = [role for _, role in pairs]
    for role, (low, high) in ROLE_LIMITS.items():
        count = roles.count(role)
        if not low <= count <= high:
            want = "exactly one" if low == high else f"at most {high}"
            raise BundleError(
                f"a bundle needs {want} split with role {role!r}"
                f"{' (the ID test set)' if role == 'id' else ''}, found {count}."
            )


def check_labels(name: str, role: str, labels: np.ndarray | None, n: int,
                 num_classes: int) -> None:
    """Labels are int64 ``[n]``; ID roles in [0, C), OOD roles in [-1, C); ``id`` has them."""
    if labels is None:
        if role == "id":
            raise BundleError(
                f"split {name!r} (role 'id') has no labels; the ID test set needs them "
                "(ID accuracy is always reported). Re-extract with labelled ID data."
            )
        return
    if labels.dtype != np.int64 or labels.shape != (n,):
        raise BundleError(
            f"split {name!r}: labels must be int64 of shape ({n},), got {labels.dtype} "
            f"{tuple(labels.shape)}."
        )
    if n == 0:
        return
    low = 0 if role in ID_ROLES else -1
    lo, hi = int(labels.min()), int(labels.max())
    if lo < low or hi >= num_classes:
        allowed = f"0..{num_classes - 1}" if low == 0 else f"-1 (unknown) or 0..{num_classes - 1}"
        raise BundleError(
            f"split {name!r} (role {role!r}) has labels from {lo} to {hi}; allowed: "
            f"{allowed} for a head with {num_classes} classes. The labels do not belong "
            "to this model; re-extract the bundle."
        )


# --------------------------------------------------------------------------- manifest


def _require(cond: bool, where: Path, what: str) -> None:
    if not cond:
        raise BundleError(f"{where}: {what}")


#: what to run when a manifest breaks the declaration
FIX_HINT = ("the manifest is corrupt or was edited by hand; rebuild the bundle "
            "(`ash-explore bundle create` or `ash-explore extract`), or after a deliberate "
            "edit check it with `ash-explore bundle verify`.")


def _check_top_level(manifest: Any, where: Path) -> None:
    """Format and version first (their own messages), then every declared field."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(
            f"{where} is not an ASH bundle manifest (missing \"format\": \"{FORMAT}\")."
        )
    version = manifest.get("version")
    _require(type(version) is int and version == VERSION, where,
             f"bundle version {short(version)} is not supported by this ash_core "
             f"(supports version {VERSION}); upgrade ASH Explorer or re-extract.")
    try:
        MANIFEST_RULE.check(manifest, "")
    except SchemaError as exc:
        raise BundleError(f"{where}: {exc} The {FIX_HINT[4:]}") from None


def check_variant_name(name: Any) -> str:
    """``name`` if it is a safe variant name (the split-name rules), else BundleError."""
    try:
        return check_split_name(name)
    except BundleError:
        raise BundleError(f"variant name {short(name)} is not allowed; use 1-{MAX_NAME_LEN} "
                          "letters, digits, '-', '_' and '.' (not starting with '.').") from None


def check_variant_params(variants: Any) -> None:
    """The manifest's ``variants``: name -> an object of its settings (numbers or strings;
    a known variant's by its declaration, ``schema.ODIN_RULE``), e.g. ``{"odin":
    {"temperature": 1000.0, "epsilon": 0.0014}}``; else BundleError."""
    if isinstance(variants, dict):
        for name in variants:
            check_variant_name(name)
    try:
        VARIANTS_RULE.check(variants, "variants")
    except SchemaError as exc:
        raise BundleError(str(exc)) from None


def _check_variants(manifest: dict[str, Any], where: Path) -> None:
    """Top-level ``variants`` well-formed; every split's variant declared there."""
    declared = manifest.get("variants", {})
    try:
        check_variant_params(declared)
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from None
    for entry in manifest["splits"]:
        for name in entry.get("variants", {}):
            _require(name in declared, where,
                     f"split {entry['name']!r} has variant {short(name)}, which the manifest's "
                     "\"variants\" does not declare; the manifest is corrupt. Rebuild the "
                     "bundle (`ash-explore extract`).")


def check_groups(groups: Any, splits: Iterable[tuple[Any, Any]]) -> dict[str, tuple[str, ...]]:
    """The optional ``groups`` (group name -> OOD test split names, e.g. OpenOOD's
    ``{"near": [...], "far": [...]}``), given the bundle's ``(name, role)`` pairs: each name
    safe, each listed split an existing ``ood`` split in at most one group; else BundleError."""
    if not isinstance(groups, dict):
        raise BundleError(f"\"groups\" must be an object (group name -> list of OOD split "
                          f"names), got {short(groups)}.")
    roles = dict(splits)
    owner: dict[str, str] = {}
    out: dict[str, tuple[str, ...]] = {}
    for group, members in groups.items():
        try:
            check_split_name(group)
        except BundleError:
            raise BundleError(f"group name {short(group)} is not allowed; use 1-{MAX_NAME_LEN} "
                              "letters, digits, '-', '_' and '.' (not starting with '.')."
                              ) from None
        if not isinstance(members, list) or not members or not all(
                isinstance(m, str) for m in members):
            raise BundleError(f"group {group!r} must list at least one OOD split name, got "
                              f"{short(members)}.")
        for m in members:
            if m not in roles:
                raise BundleError(f"group {group!r} names split {m!r}, which the bundle does "
                                  f"not have; remove it or add that split.")
            if roles[m] != "ood":
                raise BundleError(f"group {group!r} names split {m!r} of role {roles[m]!r}; "
                                  "a group lists only OOD test splits (role 'ood').")
            if m in owner:
                raise BundleError(f"split {m!r} is in groups {owner[m]!r} and {group!r}; "
                                  "put each split in at most one group.")
            owner[m] = group
        out[group] = tuple(members)
    return out


def check_manifest(manifest: Any, where: Path) -> None:
    """Schema checks of a parsed manifest (types, required keys, split rules)."""
    _check_top_level(manifest, where)
    splits = manifest["splits"]
    try:
        check_split_roles((s["name"], s["role"]) for s in splits)
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from None
    _check_variants(manifest, where)
    if "groups" in manifest:
        try:
            check_groups(manifest["groups"], ((s["name"], s["role"]) for s in splits))
        except BundleError as exc:
            raise BundleError(f"{where}: {exc}") from None


def referenced_files(manifest: dict[str, Any]) -> list[str]:
    """Every relative path the manifest names (head, split files, sidecars, thumbnails,
    variant files)."""
    rels = [manifest["head"]["file"]]
    for s in manifest["splits"]:
        rels += [s[k] for k in ("file", "meta", "thumbnails") if s.get(k)]
        rels += list(s.get("variants", {}).values())
    return rels
