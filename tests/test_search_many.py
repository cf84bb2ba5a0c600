"""``ash_core.search.many`` and ``ash-explore search --all-methods``: every method's validated
parameters at once, cached beside the bundle's cubes (JSON, keyed like the cubes)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from test_search import make_val_bundle

import ash_core.search.many as sm
from ash_core import load_bundle
from ash_core.cli import main
from ash_core.errors import ParameterError
from ash_core.search.grid import search
from ash_core.search.many import search_many, searchable_methods
from ash_core.setting import Setting

SOME = ["ash-s", "react", "gen", "nci"]  # cube, clip cube, exact on logits, feature score


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return load_bundle(make_val_bundle(tmp_path_factory.mktemp("many") / "vb"))


def entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("search-*.json"))


def test_each_result_is_the_methods_own_search(bundle, tmp_path):
    got = search_many(bundle, SOME, "fpr95", cache_dir=tmp_path)
    assert list(got) == SOME
    for method, result in got.items():
        want = search(bundle, method, metric="fpr95", cache_dir=tmp_path)
        assert result.to_dict() == want.to_dict(), method


def test_all_methods_leave_out_grids_the_bundle_cannot_serve_with_a_warning(bundle, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = search_many(bundle, cache_dir=tmp_path)
    left_out = {m for m in searchable_methods() if m not in got}
    # D = 16 features, 100 id_fit rows: ViM/Residual's dim 256.., KNN's k up to 1000
    assert left_out == {"knn", "vim", "residual"}
    text = "\n".join(str(w.message) for w in caught)
    for m in left_out:
        assert f"search_many: {m} left out" in text
    assert "exceeds the 100 id_fit samples" in text
    with pytest.raises(ParameterError, match="knn: k=200 exceeds"):
        search_many(bundle, ["knn"], cache_dir=tmp_path)  # asked for by name: an error


def test_results_are_cached_and_read_back_equal(bundle, tmp_path, monkeypatch):
    first = search_many(bundle, SOME, cache_dir=tmp_path)
    assert len(entries(tmp_path)) == len(SOME)

    def no_search(*args, **kwargs):
        raise AssertionError("searched again instead of reading the cache")

    monkeypatch.setattr(sm, "search", no_search)
    again = search_many(bundle, SOME, cache_dir=tmp_path)
    for method in SOME:
        assert again[method].to_dict() == first[method].to_dict()
        assert again[method].test.id_scores is None  # cached results carry no scores


@pytest.mark.parametrize("change", [
    {"metric": "fpr95"},
    {"convention": "ood"},
    {"ood": ["far"]},
    {"threshold_mode": "global"},
])
def test_a_different_request_is_not_served_from_the_cache(bundle, tmp_path, change):
    search_many(bundle, ["ash-b"], cache_dir=tmp_path)
    metric = change.pop("metric", "auroc")
    got = search_many(bundle, ["ash-b"], metric, cache_dir=tmp_path, **change)["ash-b"]
    setting = Setting("ash-b", {}, change.get("threshold_mode", "local"), "energy",
                      change.get("convention", "id"))
    want = search(bundle, setting, metric=metric, ood=change.get("ood"), cache_dir=tmp_path)
    assert got.to_dict() == want.to_dict()


def test_a_broken_or_stale_entry_is_recomputed(bundle, tmp_path):
    fresh = search_many(bundle, ["ash-p"], cache_dir=tmp_path)["ash-p"].to_dict()
    (path,) = entries(tmp_path)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding the search result"):
        assert search_many(bundle, ["ash-p"], cache_dir=tmp_path)["ash-p"].to_dict() == fresh
    entry = json.loads(path.read_text())
    entry["key"]["data"] = "0" * 32  # the bytes read changed: a stale key
    grid = [g["params"] for g in entry["result"]["validation"]["grid"]]
    entry["result"]["selected"] = next(g for g in grid if g != fresh["selected"])  # loadable
    path.write_text(json.dumps(entry))
    assert search_many(bundle, ["ash-p"], cache_dir=tmp_path)["ash-p"].to_dict() == fresh


def test_no_cache_writes_nothing(bundle, tmp_path):
    search_many(bundle, ["ash-s", "gen"], cache_dir=tmp_path, use_cache=False)
    assert entries(tmp_path) == []


def test_bad_metric_is_one_error_not_every_method_left_out(bundle, tmp_path):
    with pytest.raises(ParameterError, match="unknown search metric 'aupr'"):
        search_many(bundle, metric="aupr", cache_dir=tmp_path)


def test_cli_all_methods_json_list(bundle, tmp_path, capsys):
    code = main(["search", str(bundle.root), "--all-methods", "--format", "json",
                 "--cache-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["method"] for r in out] == [m for m in searchable_methods()
                                          if m not in ("knn", "vim", "residual")]
    ash_s = next(r for r in out if r["method"] == "ash-s")
    assert ash_s == search(bundle, "ash-s", cache_dir=tmp_path).to_dict()


def test_cli_all_methods_table_and_grid_conflict(bundle, tmp_path, capsys):
    assert main(["search", str(bundle.root), "--all-methods", "--cache-dir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "validated parameters per method" in out and "gen" in out and "test-optimal" in out
    assert main(["search", str(bundle.root), "--all-methods", "--grid", "p=90"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --grid names one method's parameters") and \
        err.count("\n") == 1


@pytest.mark.parametrize("method", ["nci", "fdbd"])
def test_scores_on_features_are_validated_with_their_own_scorer(bundle, method):
    # the validation splits are scored as evaluate scores any split: by the feature score
    # fitted on id_fit, not by a score on logits (which has no such name)
    import numpy as np

    from ash_core import Evaluator
    from ash_core.maths.metrics import IdScores

    result = search(bundle, method)
    ev = Evaluator(bundle)
    ev.ood_names = ["id_v", "ov_a", "ov_b"]
    for params, value in zip(result.points, result.validation, strict=True):
        scores = ev.evaluate(Setting(method, params)).ood_scores
        pooled = np.concatenate([scores["ov_a"], scores["ov_b"]])
        assert value == IdScores(scores["id_v"]).metric(pooled, "auroc")


def test_a_cached_result_keeps_its_ties(tmp_path, capsys):
    """A result read back from the cache states the large ties the fresh one stated (the
    kill campaign found a warm ``search`` printing less than a cold one)."""
    from test_kill_campaign import _val_bundle

    _val_bundle(tmp_path / "vb")
    outputs = []
    for _ in range(2):  # cold, then every result from the cache
        assert main(["search", str(tmp_path / "vb"), "--all-methods", "--format", "json"]) == 0
        outputs.append(capsys.readouterr().out)
    assert '"ties"' in outputs[0]
    assert outputs[1] == outputs[0]
