"""Scores on features through the engines: plug-and-play with shaping, the fitted-state
cache beside the bundle, parameter validation, the CLI's --score."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import reference_features as rf
from conftest import make_synthetic_bundle

from ash_core import Evaluator, Setting, load_bundle
from ash_core.cli import main
from ash_core.errors import ParameterError
from ash_core.features import get_feature_score, list_feature_scores
from ash_core.setting import compatible_scores, split_params


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASH_CUBE_CACHE", raising=False)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return make_synthetic_bundle(tmp_path / "b", n_id=120, n_ood=80, dim=12, classes=4)


def fitted_files(root: Path) -> list[Path]:
    return sorted(root.glob(".cube_cache/*/fitted-*.safetensors"))


def test_shaping_then_score_matches_the_reference(bundle_dir: Path):
    """ash-s at p=80 on id_fit and on every split, then KNN (k=5), as one pipeline."""
    b = load_bundle(bundle_dir)
    r = Evaluator(b).evaluate(Setting("ash-s", {"p": 80, "k": 5}, score="knn"))
    fit = ref.ash_s(b.id_fit.features.astype(np.float64), 80)
    want_id = rf.knn(fit, ref.ash_s(b.id_split.features.astype(np.float64), 80), 5)
    np.testing.assert_allclose(r.id_scores, want_id, atol=1e-5)
    for name in ("far", "near"):
        want = rf.knn(fit, ref.ash_s(b.split(name).features.astype(np.float64), 80), 5)
        np.testing.assert_allclose(r.ood_scores[name], want, atol=1e-5)
        assert abs(r.ood[name].auroc - ref.auroc(want_id, want)) < 1e-4
    assert r.score == "knn" and r.params == {"p": 80.0, "k": 5.0}
    assert r.to_dict()["label"] == "ash-s p=80 k=5 local"


def test_dice_head_feeds_vim(bundle_dir: Path):
    """A method on the head (DICE) composes with a score that reads the head (ViM)."""
    b = load_bundle(bundle_dir)
    r = Evaluator(b).evaluate(Setting("dice", {"p": 50, "dim": 4}, score="vim"))
    masked = ref.dice_weight(b.id_fit.features.astype(np.float64), b.head_weight.numpy(), 50)
    want = rf.vim(b.id_fit.features, masked, b.head_bias.numpy(), b.id_split.features, 4)
    np.testing.assert_allclose(r.id_scores, want, rtol=1e-5, atol=1e-5)


def test_every_feature_score_is_a_method_and_combines_with_every_shaping():
    for name in list_feature_scores():
        assert compatible_scores(name) == [name]
        assert name in compatible_scores("ash-s") and name in compatible_scores("none")
    assert compatible_scores("gen") == ["gen"]


def test_parameters_split_between_method_and_score():
    assert split_params("ash-s", "knn", {"p": 90, "k": 7}) == ({"p": 90.0}, {"k": 7.0})
    assert split_params("knn", "knn", {"k": 7}) == ({"k": 7.0}, {"k": 7.0})
    assert Setting("react", {}, score="vim").validated().params == {"p": 90.0, "dim": 0.0}
    with pytest.raises(ParameterError, match="k must be in"):
        Setting("ash-s", {"k": 0}, score="knn").validated()
    with pytest.raises(ParameterError, match="unknown parameter.*bogus.*valid: p, k"):
        Setting("ash-s", {"bogus": 1}, score="knn").validated()
    with pytest.raises(ParameterError, match="unknown parameter 'k'"):
        Setting("ash-s", {"k": 5}).validated()  # energy takes no k
    with pytest.raises(ParameterError, match="unknown score 'nope'"):
        Setting("ash-s", score="nope").validated()


@pytest.mark.parametrize("name", list_feature_scores())
def test_out_of_range_score_parameters_are_refused(name):
    for q in get_feature_score(name).params:
        for bad in (q.low - 1, q.high, float("nan")):
            with pytest.raises(ParameterError, match=q.name):
                Setting("ash-p", {q.name: bad}, score=name).validated()


def test_state_is_cached_beside_the_bundle_and_reused(bundle_dir: Path):
    setting = Setting("none", {"k": 3}, score="knn")
    first = Evaluator(load_bundle(bundle_dir)).evaluate(setting)
    files = fitted_files(bundle_dir)
    assert len(files) == 1 and files[0].name.startswith("fitted-knn-")
    spec = get_feature_score("knn")
    calls = []
    original = spec.fit
    object.__setattr__(spec, "fit", lambda *a: calls.append(1) or original(*a))
    try:
        again = Evaluator(load_bundle(bundle_dir)).evaluate(setting)
        # KNN's bank does not depend on k (``FeatureScore.fit_params``): k=4 reads it too
        other_k = Evaluator(load_bundle(bundle_dir)).evaluate(setting.with_params(k=4))
        assert calls == [] and len(fitted_files(bundle_dir)) == 1
        other = Evaluator(load_bundle(bundle_dir)).evaluate(
            Setting("ash-s", {"p": 80.0, "k": 3}, score="knn"))
    finally:
        object.__setattr__(spec, "fit", original)
    np.testing.assert_array_equal(first.id_scores, again.id_scores)
    assert calls == [1]  # only the shaped bank was fitted; k=3 and k=4 came from the cache
    assert len(fitted_files(bundle_dir)) == 2
    assert not np.array_equal(first.id_scores, other.id_scores)
    assert not np.array_equal(first.id_scores, other_k.id_scores)


@pytest.mark.parametrize("damage", ["garbage", "flip", "truncate", "stale"])
def test_a_broken_entry_is_rebuilt_with_a_warning(bundle_dir: Path, damage: str):
    setting = Setting("none", score="mahalanobis")
    first = Evaluator(load_bundle(bundle_dir)).evaluate(setting)
    path = fitted_files(bundle_dir)[0]
    blob = bytearray(path.read_bytes())
    if damage == "garbage":
        blob = bytearray(b"\x80\x04not a safetensors file")
    elif damage == "flip":
        blob[-3] ^= 0xFF
    elif damage == "truncate":
        blob = blob[:-8]
    else:  # a valid file whose key names another bundle
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        key = json.loads(header["__metadata__"]["ash_fitted"])
        key["bundle"] = "0" * len(key["bundle"])
        header["__metadata__"]["ash_fitted"] = json.dumps(key, sort_keys=True)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        blob = bytearray(len(text).to_bytes(8, "little")) + text + blob[8 + n:]
    path.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="rebuilding the fitted mahalanobis state"):
        again = Evaluator(load_bundle(bundle_dir)).evaluate(setting)
    np.testing.assert_array_equal(first.id_scores, again.id_scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replaced in place: the next load is clean
        Evaluator(load_bundle(bundle_dir)).evaluate(setting)


def test_an_unwritable_cache_dir_means_no_cache_with_a_warning(bundle_dir: Path, tmp_path,
                                                               monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("ASH_CUBE_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache the fitted nci state"):
        r = Evaluator(load_bundle(bundle_dir)).evaluate(Setting("ash-b", score="nci"))
    assert np.isfinite(r.id_scores).all()


def test_a_symlinked_cache_dir_is_not_followed(bundle_dir: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, bundle_dir / ".cube_cache")
    with pytest.warns(UserWarning, match="symbolic link"):
        Evaluator(load_bundle(bundle_dir)).evaluate(Setting("none", score="fdbd"))
    assert list(elsewhere.iterdir()) == []


def test_missing_id_fit_is_a_clear_error(tmp_path: Path):
    src = make_synthetic_bundle(tmp_path / "b", n_id=50, n_ood=40, dim=6, classes=3)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["splits"] = [s for s in manifest["splits"] if s["role"] != "id_fit"]
    (src / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ParameterError, match="no 'id_fit' split; choose a score on logits"):
        Evaluator(load_bundle(src)).evaluate(Setting("ash-s", score="knn"))


def test_cli_score_and_param(bundle_dir: Path, capsys):
    assert main(["evaluate", str(bundle_dir), "--method", "ash-s", "--score", "knn",
                 "--param", "k=4", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score"] == "knn" and out["params"] == {"p": 65.0, "k": 4.0}
    assert main(["sweep", str(bundle_dir), "--methods", "none,ash-s", "--p", "70:80:10",
                 "--score", "residual", "--param", "dim=3", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # header + 3 rows
    assert main(["evaluate", str(bundle_dir), "--score", "knn", "--param", "k=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: score knn: k must be in")
    shutil.rmtree(bundle_dir / ".cube_cache")
