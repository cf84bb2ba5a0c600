"""``ash-explore bundle``: create a bundle from your own features, inspect it, verify it,
rehash it after a deliberate edit.

Nothing here imports torch at module level (``bundle info`` answers in well under a
second): the writer and the loader, which do, are imported inside the actions that
need them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ash_core.bundle.arrays import read_head, read_split
from ash_core.bundle.files import read_manifest
from ash_core.bundle.manifest import FEATURE_DTYPES, ROLES
from ash_core.bundle.safetensors_io import read_header
from ash_core.cli.groups import add_group_arg, parse_groups
from ash_core.errors import BundleError

_OWN = {"format", "version", "name", "feature_dim", "num_classes", "classes", "head",
        "feature_dtype", "splits", "files", "variants", "groups"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="create a bundle from your own features; info; verify",
                       description="Bring your own features: write a bundle from arrays "
                                   "(.npz, .npy, .safetensors, weights-only .pt; never "
                                   "pickle), show what a bundle holds, or check its hashes.")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    c = bsub.add_parser("create", help="write a bundle from a head and split files")
    c.add_argument("out", help="bundle directory to write (atomically)")
    c.add_argument("--head", required=True, metavar="FILE",
                   help="file holding weight [C, D] and bias [C] (or a state dict: --head-key)")
    c.add_argument("--head-key", default=None, metavar="PREFIX",
                   help="the classifier's key prefix in a state dict (fc -> fc.weight, fc.bias)")
    c.add_argument("--split", action="append", default=[], metavar="NAME:ROLE=FILE",
                   help=f"a split, repeatable; ROLE one of {', '.join(ROLES)}; FILE holds "
                        "'features' [N, D] and optional 'labels' [N] (a .npy: features only)")
    c.add_argument("--classes", default=None, metavar="FILE",
                   help="class names, one per line (default: class0, class1, ...)")
    c.add_argument("--name", default=None, help="bundle name (default: the directory name)")
    c.add_argument("--dtype", choices=list(FEATURE_DTYPES), default="float32",
                   help="storage dtype of the features (default float32)")
    add_group_arg(c)
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle at OUT (never any other directory)")
    c.set_defaults(func=run_create)
    i = bsub.add_parser("info", help="what a bundle holds (manifest and headers only)")
    i.add_argument("bundle")
    i.add_argument("--verify", action="store_true", help="also check every file's sha256")
    i.set_defaults(func=run_info)
    v = bsub.add_parser("verify", help="check every file of a bundle against its sha256")
    v.add_argument("bundle")
    v.set_defaults(func=run_verify)
    r = bsub.add_parser("rehash", help="record new sha256s after a deliberate edit of "
                                       "a bundle's files (checked before writing)")
    r.add_argument("bundle")
    r.set_defaults(func=run_rehash)


def parse_split(text: str) -> tuple[str, str, str]:
    """``NAME:ROLE=FILE`` -> (name, role, file)."""
    head, eq, file = text.partition("=")
    name, colon, role = head.partition(":")
    if not (eq and colon and name and role and file):
        raise BundleError(f"--split {text!r}: write NAME:ROLE=FILE, e.g. "
                          "--split cifar10:id=cifar10.npz.")
    if role not in ROLES:
        raise BundleError(f"--split {text!r}: unknown role {role!r}; use one of "
                          f"{', '.join(ROLES)}.")
    return name, role, file


def _classes(path: str | None) -> list[str] | None:
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"--classes {path}: cannot read it ({exc}); give a UTF-8 text "
                          "file with one class name per line.") from exc
    return [line.strip() for line in lines if line.strip()]


def run_create(args: argparse.Namespace) -> int:
    parsed = [parse_split(text) for text in args.split]
    if not parsed:
        raise BundleError("give at least one --split NAME:ROLE=FILE (the 'id' split).")
    names = [name for name, _, _ in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BundleError(f"split name(s) {', '.join(dupes)} given twice; give each once.")
    groups = parse_groups(args.group)
    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise BundleError(f"{out} already exists; pass --overwrite to replace a bundle there "
                          "or choose another directory.")
    from ash_core.bundle.create import SplitArrays, create_bundle  # imports torch

    head = read_head(args.head, args.head_key)
    splits = {name: SplitArrays(role, *read_split(file)) for name, role, file in parsed}
    classes = _classes(args.classes)
    missing = [p for p in out.absolute().parents if not p.exists()]
    try:
        with disk_errors(out, "the bundle was not written (an existing one is unchanged)"):
            path = create_bundle(out, head, splits, classes=classes, name=args.name,
                                 feature_dtype=args.dtype, overwrite=args.overwrite,
                                 groups=groups).root
    except BaseException:
        for parent in missing:  # nothing written: not even the parents write_bundle made
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    print(f"wrote {path} ({len(splits)} splits)"
          + "".join(f"; {g}: {', '.join(m)}" for g, m in (groups or {}).items()))
    print(f"  try: ash-explore evaluate {path} --method ash-s --param p=90\n"
          f"       ash-explore dashboard {path}")
    return 0


@contextlib.contextmanager
def disk_errors(path: Path, outcome: str) -> Iterator[None]:
    """An OSError from the file system (a full disk, a quota, a read-only directory) as one
    clear BundleError saying what happened to ``path`` and what to do."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}{where}; {outcome}. "
                          "Free space (or fix the directory) and rerun the same command."
                          ) from None


def _size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())


def run_info(args: argparse.Namespace) -> int:
    root = Path(args.bundle)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory; give a bundle directory.")
    manifest = read_manifest(root)
    print(f"name:        {manifest['name']}")
    print(f"features:    D={manifest['feature_dim']}  C={manifest['num_classes']}  "
          f"dtype={manifest['feature_dtype']}")
    print("splits:")
    for entry in manifest["splits"]:
        tensors, _ = read_header(root / entry["file"])
        rows = tensors["features"].shape[0] if "features" in tensors else entry["n"]
        labels = "labels" if "labels" in tensors else "no labels"
        print(f"  {entry['name']:24s} {entry['role']:8s} {rows:>9d} rows  {labels}")
    groups = manifest.get("groups") or {}
    print("groups:" + ("      none (reports show the overall average only)" if not groups else ""))
    for group, members in groups.items():
        print(f"  {group:24s} {', '.join(members)}")
    provenance = {k: v for k, v in manifest.items() if k not in _OWN}
    print("provenance:" + ("  none" if not provenance else ""))
    for key, value in provenance.items():
        text = json.dumps(value, default=str)
        print(f"  {key:24s} {text if len(text) <= 100 else text[:97] + '...'}")
    print(f"size:        {_size(root) / 1e6:.2f} MB on disk")
    if args.verify:
        from ash_core.bundle.load import load_bundle  # imports torch

        load_bundle(root, verify=True)
        print("verified:    yes (every sha256 matches)")
    else:
        print("verified:    not checked (--verify hashes every file)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ash_core.bundle.load import load_bundle  # imports torch
    from ash_core.layers import open_layers

    bundle = load_bundle(os.fspath(args.bundle), verify=True)  # the declaration, every sha256
    maps = open_layers(bundle)
    for layer in maps.layers if maps is not None else ():  # read lazily elsewhere
        for split in maps.info(layer).files:
            maps.maps(layer, split)
        if maps.info(layer).tail is not None:
            maps.tail(layer)
    print("ok")
    return 0


def run_rehash(args: argparse.Namespace) -> int:
    from ash_core.bundle.rehash import rehash_bundle  # imports torch (via the loader)

    with disk_errors(Path(args.bundle), "the manifest is unchanged"):
        changed, unchanged = rehash_bundle(args.bundle)
    for rel, (old, new) in changed.items():
        print(f"{rel}: {old or '(none)'} -> {new}")
    print(f"{len(changed)} changed, {unchanged} unchanged"
          + ("; manifest written" if changed else "; manifest left as it was"))
    return 0
