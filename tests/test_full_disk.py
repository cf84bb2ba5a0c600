"""Every writer on a full disk: a clear error (a cache: a warning and the computed result),
nothing half-written left behind, and nothing half-written ever read back as valid.

The disk fills deterministically: ``full_disk`` makes the N-th call of the one low-level
write that writer uses (``ash_core.bundle.atomic._write_bytes`` for every atomic file;
``files.write_text`` for a manifest or sidecar; ``Path.write_text`` for extraction's
marker and the PDF report's page) write half its bytes and raise OSError(ENOSPC). What a
cache writer got onto the disk before it failed is kept, so a test can put exactly those
bytes where the entry belongs and check that they are refused and rebuilt.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from test_kill_campaign import RECIPE, _arrays, _images, _val_bundle, temporaries

import ash_core.bundle.atomic as atomic
from ash_core import load_bundle
from ash_core.cli import main

NO_SPACE = "No space left on device"


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


class FullDisk:
    """The disk is full from the ``at``-th atomic write on (1-based)."""

    def __init__(self, at: int = 1):
        self.at, self.calls = at, 0
        self.partial: dict[Path, bytes] = {}  # temporary file -> the bytes it got

    def write_bytes(self, fh, data) -> None:
        data = bytes(data)
        self.calls += 1
        if self.calls >= self.at:
            tmp = Path(os.readlink(f"/proc/self/fd/{fh.fileno()}"))  # the temporary file
            self.partial[tmp] = self.partial.get(tmp, b"") + data[: len(data) // 2]
            fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, NO_SPACE)
        fh.write(data)

    def entries(self) -> dict[Path, bytes]:
        """Entry -> the bytes its failed write had put in its temporary file."""
        return {tmp.with_name(re.sub(r"^\.(.+)\.\d+-[A-Za-z0-9_]+\.tmp$", r"\1", tmp.name)): b
                for tmp, b in self.partial.items()}


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(at)``: the disk is full from the at-th atomic write on; ``.undo()``
    frees it."""
    def fill(at: int = 1) -> FullDisk:
        disk = FullDisk(at)
        monkeypatch.setattr(atomic, "_write_bytes", disk.write_bytes)
        return disk
    return fill


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(code: int, err: str) -> str:
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert NO_SPACE in errors[0] and "free space" in errors[0].lower()
    return errors[0]


# --------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("at", [1, 2, "manifest"])
def test_bundle_create_on_a_full_disk_keeps_the_old_bundle(tmp_path, full_disk, monkeypatch,
                                                           at):
    _arrays(tmp_path, seed=7)
    out = tmp_path / "out"
    argv = ["bundle", "create", out, "--head", tmp_path / "head.npz", "--split",
            f"test:id={tmp_path / 'id.npz'}", "--split", f"far:ood={tmp_path / 'ood.npz'}",
            "--name", "mine"]
    assert run(*argv)[0] == 0
    before = tree(out)
    (tmp_path / "id.npz").unlink()
    _arrays(tmp_path, seed=9)  # new arrays, over the old bundle
    if at == "manifest":
        def no_room(path, text):
            raise OSError(errno.ENOSPC, NO_SPACE)
        monkeypatch.setattr("ash_core.bundle.write.write_text", no_room)
    else:
        full_disk(at)
    code, _, err = run(*argv, "--overwrite")
    assert "cannot write" in one_error(code, err)
    assert tree(out) == before and load_bundle(out)  # the old bundle, whole
    assert temporaries(tmp_path) == [], temporaries(tmp_path)
    monkeypatch.undo()
    code, _, err = run(*argv, "--overwrite")  # space freed: the rerun writes it
    assert code == 0, err
    code, _, err = run(*[a if a != out else tmp_path / "clean" for a in argv])
    assert code == 0, err
    assert tree(out) == tree(tmp_path / "clean") != before


def test_bundle_rehash_on_a_full_disk_leaves_the_manifest(tmp_path, monkeypatch):
    _val_bundle(tmp_path / "b")
    manifest = (tmp_path / "b" / "manifest.json").read_bytes()
    csv = tmp_path / "b" / "splits" / "far.csv"
    csv.write_text(csv.read_text().replace("sample_id", "sample_id", 1) + "\n")

    def no_room(path, text):
        Path(path).write_text(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, NO_SPACE)
    monkeypatch.setattr("ash_core.bundle.rehash.write_text", no_room)
    code, _, err = run("bundle", "rehash", tmp_path / "b")
    one_error(code, err)
    assert (tmp_path / "b" / "manifest.json").read_bytes() == manifest
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> tuple[Path, Path]:
    """The campaign's tiny extraction recipe (layer maps included), and its bundle."""
    d = tmp_path_factory.mktemp("recipe")
    _images(d)
    (d / "recipe.json").write_text(json.dumps({**RECIPE, "data_root": str(d)}))
    code, _, err = run("extract", "--config", d / "recipe.json", "-o", d / "ref")
    assert code == 0, err
    return d / "recipe.json", d / "ref"


@pytest.mark.parametrize("where", ["bundle", "work-directory"])
def test_extract_on_a_full_disk_is_a_clear_error_then_resumes(recipe, tmp_path, full_disk,
                                                              monkeypatch, where):
    config, ref = recipe
    out = tmp_path / "b"
    if where == "bundle":
        full_disk(1)  # the chunks are written, then the bundle's first file fails
    else:
        def no_room(self, text, *a, **k):
            raise OSError(errno.ENOSPC, NO_SPACE)
        monkeypatch.setattr(Path, "write_text", no_room)  # the work directory's marker
    code, _, err = run("extract", "--config", config, "-o", out)
    one_error(code, err)
    assert "rerun the same command" in err and not out.exists()
    assert temporaries(tmp_path) == (["b.partial"] if where == "bundle" else []), \
        temporaries(tmp_path)  # the chunks are kept for the rerun, nothing else
    monkeypatch.undo()
    code, out_text, err = run("extract", "--config", config, "-o", out)
    assert code == 0, err
    assert ("already done" in out_text) == (where == "bundle"), out_text
    got, want = tree(out), tree(ref)
    assert got.keys() == want.keys()
    assert {k: v for k, v in got.items() if k != "manifest.json"} == \
        {k: v for k, v in want.items() if k != "manifest.json"}
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- caches


def cache_case(bundle: Path, argv: list, full_disk, monkeypatch, what: str,
               entry: str) -> None:
    """``argv`` on a full disk: exit 0, a warning naming the ``what`` cache and the full
    disk, the output of a run with space, no ``entry`` file and no temporary one. Then the
    half-written bytes, put where the entries belong, are refused with a warning and
    rebuilt; the run after that reads them silently."""
    clean = bundle.with_name("clean")
    shutil.copytree(bundle, clean)
    code, want, err = run(*[clean if a == bundle else a for a in argv])
    assert code == 0, err
    disk = full_disk(1)
    code, got, err = run(*argv)
    assert code == 0 and got == want, err
    assert f"could not cache the {what}" in err and NO_SPACE in err, err
    assert not list(bundle.rglob(entry)) and temporaries(bundle.parent) == []
    halves = {p: b for p, b in disk.entries().items() if p.match(entry)}
    assert halves, disk.partial
    monkeypatch.undo()  # space freed; the half-written entries appear as if renamed
    for path, data in halves.items():
        path.write_bytes(data)
    code, got, err = run(*argv)
    assert code == 0 and got == want, err
    assert f"rebuilding the {what}" in err, err
    code, got, err = run(*argv)
    assert code == 0 and got == want, err
    assert "rebuilding" not in err and "could not cache" not in err, err
    assert temporaries(bundle.parent) == []


def test_cube_cache_on_a_full_disk(tmp_path, full_disk, monkeypatch):
    from conftest import make_synthetic_bundle

    b = make_synthetic_bundle(tmp_path / "b", n_id=40, n_ood=30, dim=12, classes=3)
    cache_case(b, ["sweep", b, "--methods", "ash-p,react", "--p", "60:90:10"], full_disk,
               monkeypatch, "score cube", "*-local-*.safetensors")


def test_fitted_state_cache_on_a_full_disk(tmp_path, full_disk, monkeypatch):
    _val_bundle(tmp_path / "b")
    b = tmp_path / "b"
    cache_case(b, ["evaluate", b, "--method", "none", "--score", "mahalanobis"], full_disk,
               monkeypatch, "fitted mahalanobis state", "fitted-*")


def test_search_cache_on_a_full_disk(tmp_path, full_disk, monkeypatch):
    _val_bundle(tmp_path / "b")
    b = tmp_path / "b"
    cache_case(b, ["search", b, "--all-methods", "--format", "json"], full_disk, monkeypatch,
               "search result", "search-*.json")


def test_layer_cache_on_a_full_disk(recipe, tmp_path, full_disk, monkeypatch):
    shutil.copytree(recipe[1], tmp_path / "lb")
    b = tmp_path / "lb"
    cache_case(b, ["sweep", b, "--layer", "layer2", "--methods", "ash-s", "--p", "60:90:10"],
               full_disk, monkeypatch, "layer sweep", "layer-*")


# --------------------------------------------------------------------------- dashboard


def test_the_pdf_report_on_a_full_disk_is_a_clear_error(monkeypatch):
    pytest.importorskip("plotly")
    from ash_core.errors import AshError
    from dashboard import export

    def no_room(self, text, *a, **k):
        raise OSError(errno.ENOSPC, NO_SPACE)
    monkeypatch.setattr(export, "browser_path", lambda: "/nonexistent/chromium")
    monkeypatch.setattr(Path, "write_text", no_room)
    with pytest.raises(AshError, match="cannot write the report.*No space left.*HTML report"):
        export.report_pdf("<html></html>")
