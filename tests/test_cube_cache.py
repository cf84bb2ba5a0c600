"""The score-cube cache: reuse, keys, and every way an entry can be stale, broken or unsafe.

Each broken entry must give exactly one warning, a rebuilt cube equal to a fresh one and a
repaired file (the next call loads it silently); an unusable cache directory must never
stop a sweep (one warning, no cache)."""

from __future__ import annotations

import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_cube import GRID, make_tricky_bundle

from ash_core.bundle import load_bundle
from ash_core.bundle.safetensors_io import read_header
from ash_core.cube import build_cubes, cube_key, cube_path, get_cube, load_cube
from ash_core.engine.exact import Evaluator
from ash_core.errors import CubeCacheError


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tricky_bundle(tmp_path_factory.mktemp("cache") / "tricky")


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASH_CUBE_CACHE", raising=False)


def _only_file(root: Path) -> Path:
    files = list(root.rglob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def _cube_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "score cube" in str(w.message)]


def test_cache_is_written_reused_and_keyed(tricky: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tricky)
    first = get_cube(bundle, "ash-s", GRID, cache_dir=tmp_path)
    path = _only_file(tmp_path)
    assert path.parent.name == bundle.content_hash
    assert not first.meta.get("cached")
    second = get_cube(bundle, "ash-s", GRID, cache_dir=tmp_path)
    assert second.meta.get("cached") is True
    for split in first.splits:
        assert np.array_equal(first.splits[split].energy, second.splits[split].energy)
        assert np.array_equal(first.splits[split].pred, second.splits[split].pred)
    assert np.array_equal(first.labels, second.labels)
    # another grid, method, mode or seed is another file
    get_cube(bundle, "ash-s", [50.0], cache_dir=tmp_path)
    get_cube(bundle, "ash-s", GRID, threshold_mode="global", cache_dir=tmp_path)
    get_cube(bundle, "ash-rand", GRID, seed=1, cache_dir=tmp_path)
    get_cube(bundle, "ash-rand", GRID, seed=2, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_cache_lives_beside_the_bundle(tmp_path: Path) -> None:
    root = make_tricky_bundle(tmp_path / "b")
    bundle = load_bundle(root)
    get_cube(bundle, "ash-p", [90.0])
    assert list((root / ".cube_cache" / bundle.content_hash).glob("*.safetensors"))
    assert load_bundle(root).content_hash == bundle.content_hash  # the cache is not content


def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


def _set(name: str, field: str, value):
    def edit(h: dict) -> None:
        h[name][field] = value
    return edit


def _meta(field: str, value: str):
    def edit(h: dict) -> None:
        h["__metadata__"][field] = value
    return edit


def _stale(h: dict) -> None:
    key = json.loads(h["__metadata__"]["ash_cube"])
    key["grid"] = [1.0]
    h["__metadata__"]["ash_cube"] = json.dumps(key, sort_keys=True)


def _swap_offsets(h: dict) -> None:  # same dtype and shape: only the checksum can tell
    a, b = h["far/energy"], h["far/maxlogit"]
    a["data_offsets"], b["data_offsets"] = b["data_offsets"], a["data_offsets"]


def _deep(path: Path) -> None:  # RecursionError in a plain json.loads
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    blob = raw[8:8 + n].rstrip()[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


HEADER_EDITS = {
    "stale": _stale,
    "energy_dtype": _set("id_test/energy", "dtype", "I32"),   # gave AUROC 1.0
    "grid_dtype": _set("grid", "dtype", "I64"),
    "pred_dtype": _set("far/pred", "dtype", "F32"),
    "shape": _set("far/gap", "shape", [5, 14]),
    "swap": _swap_offsets,
    "id_name": _meta("id_name", "far"),
    "ood_names_type": _meta("ood_names", "5"),                 # TypeError when unpacked
    "bundle_name": _meta("bundle_name", "someone else"),      # only the checksum covers it
}
BYTE_EDITS = ["flip", "truncate", "garbage", "deep"]


def _damage(path: Path, damage: str) -> None:
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) - 100]))
    elif damage == "garbage":
        path.write_bytes(b"not a cube at all")
    elif damage == "deep":
        _deep(path)
    else:
        _rewrite_header(path, HEADER_EDITS[damage])


@pytest.mark.parametrize("damage", [*BYTE_EDITS, *HEADER_EDITS])
def test_any_broken_entry_is_rebuilt_once_and_replaced(tricky: Path, tmp_path: Path,
                                                       damage: str) -> None:
    bundle = load_bundle(tricky)
    good = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)
    path = _only_file(tmp_path)
    _damage(path, damage)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)
    msgs = _cube_warnings(record)
    assert len(msgs) == 1 and "rebuilding the score cube" in msgs[0], msgs
    assert not again.meta.get("cached")
    for split in good.splits:
        for f in ("energy", "gap", "maxlogit", "pred"):
            assert np.array_equal(getattr(again.splits[split], f), getattr(good.splits[split], f))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)  # repaired on disk
    assert third.meta.get("cached") is True
    assert _only_file(tmp_path) == path


def test_load_cube_rejects_a_different_key(tricky: Path, tmp_path: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    get_cube(ev, "ash-p", GRID, cache_dir=tmp_path)
    key = cube_key(ev, "ash-p", "local", np.asarray(sorted(GRID)), 0)
    path = cube_path(tmp_path, key)
    assert load_cube(path, key).method == "ash-p"
    for field, value in (("bundle", "0" * 16), ("data", "0" * 32), ("seed", 3)):
        with pytest.raises(CubeCacheError, match="stale"):
            load_cube(path, dict(key, **{field: value}))


def test_no_cache_writes_nothing(tricky: Path, tmp_path: Path) -> None:
    get_cube(load_bundle(tricky), "ash-p", GRID, cache_dir=tmp_path, use_cache=False)
    assert not list(tmp_path.rglob("*"))


def _scale_features(bundle_root: Path, split_file: str, factor: float) -> None:
    """Edit a split's feature bytes in place (same size), as a careless user might."""
    path = bundle_root / split_file
    info = read_header(path)[0]["features"]
    assert info.dtype == "F32"
    raw = bytearray(path.read_bytes())
    x = np.frombuffer(bytes(raw[info.start:info.end]), np.float32) * factor
    raw[info.start:info.end] = x.astype(np.float32).tobytes()
    path.write_bytes(bytes(raw))


def test_no_verify_edited_features_never_get_a_stale_cube(tmp_path: Path) -> None:
    """The key covers the bytes actually read, not just the manifest (verify=False)."""
    root = make_tricky_bundle(tmp_path / "b")
    before = get_cube(load_bundle(root, verify=False), "ash-s", GRID, cache_dir=tmp_path / "c")
    split_file = next(s["file"] for s in json.loads((root / "manifest.json").read_text())
                      ["splits"] if s["name"] == "far")
    _scale_features(root, split_file, 3.0)
    edited = load_bundle(root, verify=False)
    with pytest.warns(UserWarning, match="stale"):
        after = get_cube(edited, "ash-s", GRID, cache_dir=tmp_path / "c")
    fresh = build_cubes(Evaluator(edited, warn=False), ["ash-s"], GRID)["ash-s"]
    assert np.array_equal(after.splits["far"].energy, fresh.splits["far"].energy)
    assert not np.array_equal(after.splits["far"].energy, before.splits["far"].energy)
    assert len(list((tmp_path / "c").rglob("*.safetensors"))) == 1  # replaced in place


def _deny_under(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Every file-system call under ``root`` fails with EACCES (as for another user's
    0700 home; simulated because the tests may run as root, who is never denied)."""
    prefix = str(root)

    def guard(fn):
        def wrapped(path, *args, **kwargs):
            if str(os.fspath(path)).startswith(prefix):
                raise PermissionError(13, "Permission denied", str(path))
            return fn(path, *args, **kwargs)
        return wrapped

    for name in ("stat", "lstat", "mkdir", "open", "access", "listdir", "scandir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))


@pytest.mark.parametrize("home", ["unreadable", "none"])
def test_read_only_bundle_without_a_usable_cache_dir_computes_with_one_warning(
        tricky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: str) -> None:
    bundle = load_bundle(tricky)
    want = build_cubes(Evaluator(bundle, warn=False), ["ash-p"], GRID)["ash-p"]
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if Path(p) == Path(tricky) and mode == os.W_OK
                        else real_access(p, mode, *a, **k))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    if home == "unreadable":
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        _deny_under(monkeypatch, tmp_path / "home")
    else:
        monkeypatch.delenv("HOME", raising=False)
        monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(
            RuntimeError("Could not determine home directory."))))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = get_cube(bundle, "ash-p", GRID)
    assert len(_cube_warnings(record)) == 1, _cube_warnings(record)
    assert np.array_equal(got.splits["far"].energy, want.splits["far"].energy)
    assert not (Path(tricky) / ".cube_cache").exists()


def test_a_symlinked_cube_cache_is_not_followed(tmp_path: Path) -> None:
    root = make_tricky_bundle(tmp_path / "b")
    bundle = load_bundle(root)
    elsewhere = tmp_path / "elsewhere"
    get_cube(bundle, "ash-p", GRID, cache_dir=elsewhere)  # a valid entry behind the link
    planted = _only_file(elsewhere)
    listing = sorted((p, p.stat().st_mtime_ns) for p in elsewhere.rglob("*"))
    (root / ".cube_cache").symlink_to(elsewhere, target_is_directory=True)
    with pytest.warns(UserWarning, match="symbolic link"):
        cube = get_cube(bundle, "ash-p", GRID)
    assert not cube.meta.get("cached")  # not read through the link
    # nor written through it
    assert sorted((p, p.stat().st_mtime_ns) for p in elsewhere.rglob("*")) == listing
    assert planted.is_file()


def test_a_symlinked_cube_file_is_replaced_not_followed(tricky: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tricky)
    get_cube(bundle, "ash-p", GRID, cache_dir=tmp_path / "c")
    path = _only_file(tmp_path / "c")
    target = tmp_path / "target.safetensors"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    with pytest.warns(UserWarning, match="symbolic link"):
        get_cube(bundle, "ash-p", GRID, cache_dir=tmp_path / "c")
    assert not path.is_symlink() and path.is_file()
    assert target.read_bytes() != b"" and target.stat().st_nlink == 1
