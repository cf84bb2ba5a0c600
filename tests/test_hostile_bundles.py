"""Hostile bundles, caches and files found by a hostile user's campaign: each gives a clear
error (exit 2, one ``error:`` line, nothing written) or, where the input is legal, a correct
result; never a traceback, a hang or a leftover."""

from __future__ import annotations

import contextlib
import io
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
