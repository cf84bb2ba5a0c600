"""Hostile bundles, caches and files found by a hostile user's campaign: each gives a clear
error (exit 2, one ``error:`` line, nothing written) or, where the input is legal, a correct
result; never a traceback, a hang or a leftover."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_forge import simple

from ash_core.cli import main


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def refused(path: Path, *argv, match: str) -> str:
    """Exit 2 with one ``error:`` line matching ``match``, and nothing written in ``path``."""
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    code, _, err = run(*argv)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert __import__("re").search(match, errors[0]), errors[0]
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    return errors[0]


def zeros(n: int, d: int = 6) -> dict:
    return {"features": np.zeros((n, d))}


@pytest.mark.parametrize("declared", [True, False])
def test_zero_features_are_refused_at_load(tmp_path, declared):
    edit = None if declared else (lambda m: m.pop("feature_dim"))
    b = simple(tmp_path / "b", dim=0, edit=edit)
    match = "feature_dim must be an integer from 1" if declared else "the head is .C, D. = .3, 0."
    for argv in (["evaluate", b, "--method", "ash-s", "--p", "65"],
                 ["evaluate", b, "--method", "ash-s", "--p", "0"],
                 ["sweep", b, "--methods", "ash-s", "--p", "60:90:10"]):
        refused(b, *argv, match=match)


@pytest.mark.parametrize("which", ["far", "test"])
def test_sweep_refuses_an_empty_split(tmp_path, which):
    over = {which: {**zeros(0), **({"labels": np.zeros(0)} if which == "test" else {})}}
    b = simple(tmp_path / "b", **over)
    refused(b, "sweep", b, "--methods", "ash-s", "--p", "60:90:10",
            match=f"split '{which}' has no samples")


def test_a_class_without_rows_is_legal(tmp_path):
    b = simple(tmp_path / "b", test={"labels": np.zeros(12, np.int64)})
    code, out, err = run("sweep", b, "--methods", "ash-s", "--p", "60:90:10")
    assert code == 0, err


def test_knn_on_an_empty_id_fit_is_refused(tmp_path):
    b = simple(tmp_path / "b", train=zeros(0))
    refused(b, "evaluate", b, "--method", "none", "--score", "knn",
            match="'train' \\(role id_fit\\) has no samples")


def test_odin_temperature_as_a_string_is_refused(tmp_path):
    odin = {"variants": {"odin": np.ones((12, 6))}}
    b = simple(tmp_path / "b", test=odin, far={"variants": {"odin": np.ones((8, 6))}},
               variants={"odin": {"temperature": "1000", "epsilon": 0.001}})
    refused(b, "evaluate", b, "--method", "odin",
            match="variants.odin.temperature must be a finite number")


def _ood_table(out: str) -> dict:
    return json.loads(out)["ood"]


def test_forged_fitted_state_with_a_recomputed_checksum_is_refitted(tmp_path):
    """A cached KNN state whose arrays have other shapes, with the key and checksum made
    anew (what a forger can do): refitted with a warning, the numbers of a fresh fit."""
    from ash_core.diskcache import read_arrays, write_arrays

    b = simple(tmp_path / "b", n_id=60)
    argv = ["evaluate", b, "--method", "none", "--score", "knn", "--format", "json"]
    code, fresh, err = run(*argv)
    assert code == 0, err
    [entry] = (b / ".cube_cache").rglob("fitted-knn-*.safetensors")
    from safetensors import safe_open

    with safe_open(str(entry), "np") as fh:
        meta = fh.metadata()
    key = json.loads(meta["fitted_key"] if "fitted_key" in meta else
                     next(v for k, v in meta.items() if k != "sha256"))
    field = next(k for k in meta if k != "sha256")
    state = read_arrays(entry, field, key)
    forged = {k: np.ones((3, 2, 5), v.dtype) for k, v in state.items()}
    write_arrays(entry, forged, field, key)
    code, out, err = run(*argv)
    assert code == 0 and "Traceback" not in err, err
    assert "rebuilding the fitted knn state" in err and "does not fit" in err
    assert _ood_table(out) == _ood_table(fresh)


def _val_bundle(root: Path) -> Path:
    """A bundle that ``search`` can use (id_val and ood_val splits), 60 id_fit rows."""
    from bundle_forge import forge

    rng = np.random.default_rng(0)

    def f(n):
        return np.maximum(rng.normal(0.5, 1, (n, 6)), 0)

    return forge(root, rng.normal(size=(3, 6)), np.zeros(3), [
        dict(name="test", role="id", features=f(20), labels=rng.integers(0, 3, 20)),
        dict(name="train", role="id_fit", features=f(60)),
        dict(name="val", role="id_val", features=f(10), labels=rng.integers(0, 3, 10)),
        dict(name="oval", role="ood_val", features=f(10)),
        dict(name="far", role="ood", features=f(10))])


@contextlib.contextmanager
def deadline(seconds: int):
    import signal

    def expired(*_):
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(("argv", "pattern"), [
    (["sweep", "--methods", "ash-s", "--p", "60:90:10", "--format", "csv"], "ash-s-local-*"),
    (["evaluate", "--method", "none", "--score", "knn", "--format", "json"], "fitted-knn-*"),
    (["search", "--all-methods", "--format", "json"], "search-ash-s-local-*"),
])
def test_fifo_at_a_cache_entry_is_not_opened(tmp_path, argv, pattern):
    import os

    b = _val_bundle(tmp_path / "b")
    full = [argv[0], b, *argv[1:]]
    code, first, err = run(*full)
    assert code == 0, err
    [entry] = (b / ".cube_cache").rglob(pattern)
    entry.unlink()
    os.mkfifo(entry)
    with deadline(20):
        code, again, err = run(*full)
    assert code == 0 and "not a regular file" in err, err
    assert again == first


def test_symlinked_manifest_out_of_the_bundle_is_refused(tmp_path):
    b = simple(tmp_path / "b")
    outside = tmp_path / "elsewhere.json"
    (b / "manifest.json").rename(outside)
    (b / "manifest.json").symlink_to(outside)
    refused(b, "evaluate", b, "--method", "ash-s", "--p", "65",
            match="'manifest.json' escapes the bundle directory")


def test_odin_variant_that_is_the_splits_own_file_is_refused(tmp_path):
    def alias(m):
        for s in m["splits"]:
            if "variants" in s:
                s["variants"]["odin"] = s["file"]

    odin = {"variants": {"odin": np.ones((12, 6))}}
    b = simple(tmp_path / "b", test=odin, far={"variants": {"odin": np.ones((8, 6))}},
               variants={"odin": {"temperature": 1000.0, "epsilon": 0.001}}, edit=alias)
    refused(b, "evaluate", b, "--method", "odin",
            match="names 'splits/test.safetensors' twice")


def test_safetensors_header_with_a_duplicate_key_is_refused(tmp_path):
    import hashlib
    import struct

    b = simple(tmp_path / "b")
    rel = "splits/far.safetensors"
    blob = (b / rel).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    entry = json.dumps(header["features"])
    text = json.dumps(header)[:-1] + f', "features": {entry}}}'
    text += " " * (-len(text) % 8)
    (b / rel).write_bytes(struct.pack("<Q", len(text)) + text.encode() + blob[8 + n:])
    m = json.loads((b / "manifest.json").read_text())
    m["files"][rel] = hashlib.sha256((b / rel).read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))
    refused(b, "evaluate", b, "--method", "ash-s", "--p", "65",
            match="the key 'features' appears more than once")


DEAD_PID = 99_999_999  # above any pid_max: a writer that is gone


def _full_bundle(root: Path) -> Path:
    """A bundle with every kind of entry (variants/ and layers/ included)."""
    odin = {"variants": {"odin": np.ones((12, 6))}}
    b = simple(root, test=odin, variants={"odin": {"temperature": 1000.0, "epsilon": 0.001}})
    (b / "layers" / "layer1").mkdir(parents=True)
    (b / "layers" / "layer1" / "test.safetensors").write_bytes(b"maps")
    return b


def test_a_killed_overwrite_leaves_no_old_copy_behind(tmp_path):
    """Killed between the swap and the delete: the next run removes the old copy, variants
    and layers included (nothing else is ever deleted)."""
    from ash_core.extract.leftovers import clean_leftovers

    out = _full_bundle(tmp_path / "out")
    old = shutil.copytree(out, tmp_path / f".out.old-{DEAD_PID}")
    assert clean_leftovers(out) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_kill_at_the_swap_restores_the_old_bundle_on_load(tmp_path):
    from ash_core import load_bundle

    out = _full_bundle(tmp_path / "out")
    out.rename(tmp_path / f".out.old-{DEAD_PID}")
    with pytest.warns(UserWarning, match="restored the previous version"):
        bundle = load_bundle(out)
    assert bundle.variant("odin") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _no_temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


@pytest.mark.parametrize("fault", ["directory", "full_disk"])
def test_search_leaves_no_temporary_file(tmp_path, monkeypatch, fault):
    import errno
    import os

    b = _val_bundle(tmp_path / "b")
    argv = ["search", b, "--all-methods", "--format", "json"]
    code, first, err = run(*argv)
    assert code == 0, err
    entries = sorted((b / ".cube_cache").rglob("search-*.json"))
    for e in entries:
        e.unlink()
    if fault == "directory":
        for e in entries:
            e.mkdir()
    else:
        real = os.fdopen

        class Full(io.StringIO):
            def write(self, text):
                raise OSError(errno.ENOSPC, "No space left on device")

        def fdopen(fd, mode="r", *a, **k):
            if "w" in mode:
                os.close(fd)
                return Full()
            return real(fd, mode, *a, **k)

        monkeypatch.setattr("ash_core.diskcache.os.fdopen", fdopen)
    code, again, err = run(*argv)
    assert code == 0 and "could not cache the search result" in err, err
    assert again == first
    assert _no_temporaries(b) == []


def test_cache_files_are_never_wider_than_the_bundle(tmp_path):
    import os
    import stat

    b = _val_bundle(tmp_path / "b")
    os.chmod(b, 0o770)  # group-writable: the cache still lets nobody else write
    for argv in (["sweep", b, "--methods", "ash-s", "--p", "60:90:10"],
                 ["evaluate", b, "--method", "none", "--score", "knn"]):
        code, _, err = run(*argv)
        assert code == 0, err
    made = list((b / ".cube_cache").rglob("*"))
    assert any(p.is_file() for p in made) and any(p.is_dir() for p in made)
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), p


def test_csv_exports_never_hold_a_formula(tmp_path):
    """A split named "-2-3" is text in a spreadsheet, not -5 (OWASP's CSV injection advice:
    prefix cells starting with = + - @ tab CR); negative numbers stay numbers."""
    import pandas as pd

    from ash_core.reports.tables import render_frame, render_labelled

    b = simple(tmp_path / "b", far={"name": "-2-3"})
    code, out, err = run("sweep", b, "--methods", "ash-s", "--p", "60:90:10", "--format", "csv")
    assert code == 0, err
    header = next(csv.reader(io.StringIO(out)))
    assert "'-2-3/auroc" in header and not any(h.startswith("-") for h in header)
    code, out, err = run("evaluate", b, "--method", "ash-s", "--p", "65", "--format", "csv")
    assert code == 0 and "'-2-3" in out and ",-2-3" not in out, out
    df = pd.DataFrame({"split": ["=1+1", "+x", "@SUM(A1)", "\tx", "\rx", "ok"],
                       "score": [-0.5, 1.0, 2.0, 3.0, 4.0, 5.0]})
    for text in (render_frame(df, "csv"), render_labelled(df, "csv")):
        rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
        assert [r[0][0] for r in rows[:5]] == ["'"] * 5 and rows[5][0] == "ok"
        assert rows[0][1] == "-0.5"


def test_a_nul_byte_in_a_dashboard_url_is_ignored_with_a_note():
    pytest.importorskip("streamlit")
    from dashboard.state import State

    state, notes = State.from_query({"bundle": "a\x00b", "layer": "x\x00", "iset": "\x1b[31m",
                                     "p": "80"}, bundles=["demo"])
    assert state.bundle == "demo" and state.layer == "penultimate" and state.iset == ""
    assert state.p == 80
    assert sum("control character" in n for n in notes) == 3, notes


@pytest.mark.slow  # two small real-data extractions (about 10 s of CPU); CI runs it
def test_extract_onto_a_full_disk_is_a_clear_error_then_resumes(tmp_path, monkeypatch):
    """The writer fails with ENOSPC at the second chunk: one error line, no temporary chunk
    and no bundle; the rerun (space freed) finishes with the bundle an uninterrupted run
    writes."""
    import safetensors.numpy
    from conftest import shared_data_or_skip
    from extract_helpers import R20, assert_same_bundle
    from safetensors import SafetensorError

    data = shared_data_or_skip()

    def small_r20_args(data, out, every):  # 50 CIFAR images and 24 of noise
        return ["--model", "cifar_resnet20", "--weights", str(data / R20), "--data-root",
                str(data), "--id", f"cifar=folder:cifar10/test?every={every}",
                "--ood", "noise=noise:gaussian?n=24&seed=3", "--batch-size", "16",
                "--workers", "0", "--feature-dtype", "float32", "--device", "cpu",
                "--no-progress", "-o", str(out)]

    real, calls = safetensors.numpy.save_file, []

    def full_disk(arrays, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                                  "StorageFull, message: \"No space left on device\" })")
        return real(arrays, filename, metadata=metadata)

    out = tmp_path / "b"
    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    code, _, err = run("extract", *small_r20_args(data, out, every=200))
    assert code == 2 and "Traceback" not in err, err
    assert "No space left on device" in err and "rerun the same command" in err
    assert not out.exists() and not list(tmp_path.rglob("*.tmp*")), list(tmp_path.rglob("*"))
    monkeypatch.setattr(safetensors.numpy, "save_file", real)
    code, _, err = run("extract", *small_r20_args(data, out, every=200))
    assert code == 0, err
    code, _, err = run("extract", *small_r20_args(data, tmp_path / "clean", every=200))
    assert code == 0, err
    assert_same_bundle(out, tmp_path / "clean")


@pytest.mark.parametrize("forgery", ["list", "result_list", "result_list_rehashed"])
def test_a_forged_search_entry_is_searched_again(tmp_path, forgery):
    """An entry replaced by ``[]``, or whose result is ``[]`` (with its checksum made anew,
    as a forger can): a warning, a fresh search, the same numbers."""
    from ash_core.diskcache import text_checksum
    from ash_core.search.many import _body

    b = _val_bundle(tmp_path / "b")
    argv = ["search", b, "--all-methods", "--format", "json"]
    code, first, err = run(*argv)
    assert code == 0, err
    [entry] = (b / ".cube_cache").rglob("search-ash-s-local-*.json")
    stored = json.loads(entry.read_text())
    if forgery == "list":
        entry.write_text("[]")
    else:
        stored["result"] = []
        if forgery == "result_list_rehashed":
            stored["sha256"] = text_checksum(_body(stored["key"], []))
        entry.write_text(json.dumps(stored))
    code, again, err = run(*argv)
    assert code == 0 and "Traceback" not in err, err
    assert "rebuilding the search result" in err
    assert again == first
