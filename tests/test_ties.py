"""Ties stated where they decide a number: the AUROC range over tie orders
(``ash_core.maths.ties``) against brute force and scikit-learn, and the warning beside the
number in ``evaluate``, ``sweep`` (text, JSON) and the dashboard's overview."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from ash_core import Setting, create_bundle, evaluate, load_bundle
from ash_core.cli import main
from ash_core.maths.ties import TIE_LEVEL, auroc_range, large_ties

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def test_auroc_range_is_ties_broken_against_and_for_id():
    rng = np.random.default_rng(0)
    ids, ood = rng.integers(0, 6, 300).astype(float), rng.integers(0, 5, 200).astype(float)
    r = auroc_range(ids, ood)
    assert r.auroc_min == pytest.approx(np.mean(ids[:, None] > ood[None, :]), abs=1e-15)
    assert r.auroc_max == pytest.approx(np.mean(ids[:, None] >= ood[None, :]), abs=1e-15)
    assert r.tied == pytest.approx(np.mean(ids[:, None] == ood[None, :]), abs=1e-15)
    sk = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[ids, ood])
    assert (r.auroc_min + r.auroc_max) / 2 == pytest.approx(sk, abs=1e-12)  # ties count 1/2


def test_only_sets_with_ties_above_the_level_are_named():
    ids = np.repeat(np.arange(100.0), 10)                  # each value 10 times
    def ood(tied: int) -> np.ndarray:                      # ``tied`` scores equal an ID one
        return np.r_[np.arange(tied) % 100, np.arange(1000 - tied) + 0.5]
    assert TIE_LEVEL == 1e-3  # 1,000 of the 10^6 pairs
    got = large_ties(ids, {"below": ood(99), "above": ood(101)})  # 990 and 1,010 pairs
    assert list(got) == ["above"]
    assert got["above"].tied == pytest.approx(1010 / 1e6, abs=1e-15)


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """A bundle whose OOD split is a byte copy of the ID split: every OOD score ties."""
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(300, 16))).astype(np.float32)
    head = (rng.normal(size=(4, 16)), np.zeros(4))
    path = tmp_path_factory.mktemp("ties") / "copied"
    create_bundle(path, head, {"test": ("id", x, rng.integers(0, 4, 300)),
                               "twin": ("ood", x.copy()),
                               "other": ("ood", x * 2.0 + 1.0)})
    return path


def test_result_json_carries_the_ties(copied):
    got = evaluate(load_bundle(copied), Setting("ash-p", {"p": 50})).to_dict()
    assert list(got["ties"]["ood"]) == ["twin"] and got["ties"]["level"] == TIE_LEVEL
    tie = got["ties"]["ood"]["twin"]
    assert tie["auroc_min"] < got["ood"]["twin"]["auroc"] < tie["auroc_max"]


def test_evaluate_and_sweep_print_the_warning(copied, capsys):
    assert main(["evaluate", str(copied), "--method", "ash-p", "--p", "50"]) == 0
    out = capsys.readouterr().out
    assert "warning: ties decide the AUROC of twin" in out and "of other" not in out
    assert main(["evaluate", str(copied), "--method", "ash-p", "--format", "json"]) == 0
    assert "twin" in json.loads(capsys.readouterr().out)["ties"]["ood"]
    assert main(["sweep", str(copied), "--methods", "ash-p", "--p", "50,60",
                 "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: ties decide the AUROC of twin") == 2
    assert "ash-p p=60 local: warning" in out


def test_dashboard_overview_shows_the_warning(copied, monkeypatch):
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(copied.parent))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["bundle"] = str(copied)
    at.query_params["method"] = "ash-p"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert any("ties decide the AUROC of twin" in w for w in warnings), warnings
