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

from ash_core.errors import BundleError

FORMAT = "ash-bundle"
VERSION = 1
MANIFEST = "manifest.json"
#: id: the ID test set (exactly one); id_fit: ID training features (at most one);
#: id_val: ID validation set (at most one); ood / ood_val: OOD test / validation sets
ROLES = ("id", "id_fit", "id_val", "ood", "ood_val")
ID_ROLES = ("id", "id_fit", "id_val")
#: roles of which a bundle has at most this many splits
ROLE_LIMITS = {"id": (1, 1), "id_fit": (0, 1), "id_val": (0, 1)}
#: manifest ``feature_dtype`` -> the safetensors dtype every split file must use
FEATURE_DTYPES = {"float16": "F16", "float32": "F32"}
MAX_NAME_LEN = 100
MAX_MANIFEST_BYTES = 16 << 20
#: tensors a split file may hold, with their allowed dtypes (labels checked further below)
SPLIT_TENSORS = {"features": {"F16", "F32"}, "labels": {"I64"}}
HEAD_TENSORS = {"weight": {"F32"}, "bias": {"F32"}}
THUMB_TENSORS = {"images": {"U8"}}
#: a split's variant file (e.g. ODIN's perturbed features): features only, same dtype rule
VARIANT_TENSORS = {"features": {"F16", "F32"}}

_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (for error messages about bad input)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _check_top_level(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(
            f"{where} is not an ASH bundle manifest (missing \"format\": \"{FORMAT}\")."
        )
    version = manifest.get("version")
    _require(type(version) is int and version == VERSION, where,
             f"bundle version {short(version)} is not supported by this ash_core "
             f"(supports version {VERSION}); upgrade ASH Explorer or re-extract.")
    for key in ("head", "classes", "splits", "feature_dtype"):
        _require(key in manifest, where, f"manifest lacks the required key {key!r}.")
    head = manifest["head"]
    _require(isinstance(head, dict) and isinstance(head.get("file"), str), where,
             f"manifest \"head\" must be an object with a \"file\" entry, got {short(head)}.")
    classes = manifest["classes"]
    _require(isinstance(classes, list) and all(isinstance(c, str) for c in classes), where,
             "manifest \"classes\" must be a list of class names (strings).")
    _require(manifest["feature_dtype"] in FEATURE_DTYPES, where,
             f"manifest \"feature_dtype\" must be one of {', '.join(FEATURE_DTYPES)}, got "
             f"{short(manifest['feature_dtype'])}.")
    for key in ("feature_dim", "num_classes"):
        value = manifest.get(key, 0)
        _require(type(value) is int and value >= 0, where,
                 f"manifest {key!r} must be a non-negative integer, got {short(value)}.")
    files = manifest.get("files", {})
    _require(isinstance(files, dict) and all(isinstance(v, str) for v in files.values()), where,
             "manifest \"files\" must be an object mapping each relative path to its sha256 "
             "hex digest; the manifest is corrupt or was edited by hand. Rebuild the bundle "
             "(`ash-explore bundle create`).")


def _check_split_entry(entry: Any, where: Path) -> None:
    _require(isinstance(entry, dict), where,
             f"every split entry must be an object, got {short(entry)}.")
    for key in ("name", "role", "file", "n"):
        _require(key in entry, where,
                 f"split {short(entry.get('name'))} lacks the key {key!r}.")
    check_split_name(entry["name"])
    n = entry["n"]
    _require(type(n) is int and n >= 0, where,
             f"split {entry['name']!r}: 'n' must be a non-negative integer, got {short(n)}.")
    _require(isinstance(entry["file"], str) and bool(entry["file"]), where,
             f"split {entry['name']!r}: 'file' must be a non-empty relative path, got "
             f"{short(entry['file'])}.")
    for key in ("meta", "thumbnails"):
        value = entry.get(key)
        _require(value is None or isinstance(value, str), where,
                 f"split {entry['name']!r}: {key!r} must be a relative path, got "
                 f"{short(value)}.")
    variants = entry.get("variants", {})
    _require(isinstance(variants, dict) and all(isinstance(v, str) and v
                                                for v in variants.values()), where,
             f"split {entry['name']!r}: 'variants' must map each variant name to a relative "
             f"path, got {short(variants)}.")


def check_variant_name(name: Any) -> str:
    """``name`` if it is a safe variant name (the split-name rules), else BundleError."""
    try:
        return check_split_name(name)
    except BundleError:
        raise BundleError(f"variant name {short(name)} is not allowed; use 1-{MAX_NAME_LEN} "
                          "letters, digits, '-', '_' and '.' (not starting with '.').") from None


def check_variant_params(variants: Any) -> None:
    """The manifest's ``variants``: name -> an object of its settings (numbers or strings),
    e.g. ``{"odin": {"temperature": 1000.0, "epsilon": 0.0014}}``; else BundleError."""
    if not isinstance(variants, dict):
        raise BundleError(f"\"variants\" must be an object (variant name -> settings), got "
                          f"{short(variants)}.")
    for name, settings in variants.items():
        check_variant_name(name)
        if not isinstance(settings, dict) or not all(
                isinstance(v, (int, float, str)) and not isinstance(v, bool)
                for v in settings.values()):
            raise BundleError(f"variant {name!r}: its settings must be an object of numbers "
                              f"and strings, got {short(settings)}.")


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
    _require(isinstance(splits, list) and bool(splits), where,
             "manifest \"splits\" must be a non-empty list.")
    for entry in splits:
        _check_split_entry(entry, where)
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
