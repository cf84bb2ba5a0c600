"""scripts/compare_bundles.py: how close a rebuilt bundle comes to the committed one. On small
synthetic bundles: a bundle against itself differs by nothing, a copy with one OOD set's
features moved differs there (features, that set's AUROC) and nowhere else, and bundles of
different recipes are refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import make_synthetic_bundle

from ash_core import create_bundle, load_bundle

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compare_bundles",
                                                  REPO / "scripts" / "compare_bundles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy(bundle, out: Path, moved: str | None = None, drop: str | None = None):
    """The bundle rewritten as float32, with split ``moved``'s features shifted by 0.5 and
    split ``drop`` left out."""
    splits = {}
    for s in bundle.splits:
        if s.name == drop:
            continue
        x = np.asarray(s.features, dtype=np.float32) + (0.5 if s.name == moved else 0.0)
        splits[s.name] = (s.role, x) if s.labels is None else (s.role, x, s.labels)
    return create_bundle(out, (bundle.head_weight, bundle.head_bias), splits,
                         classes=bundle.classes)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    old = load_bundle(make_synthetic_bundle(tmp / "old"))
    return _copy(old, tmp / "same"), _copy(old, tmp / "moved", moved="near"), tmp


def test_a_bundle_against_its_copy_differs_by_nothing(pair):
    script = _script()
    same, _, _ = pair
    result = script.compare(same, same)
    assert [label for label, _, _ in script.METHODS] == list(result["committed"])
    assert result["committed"] == result["new"]
    assert all(f["max_abs_diff"] == 0 and f["correlation"] == pytest.approx(1)
               for f in result["features"].values())
    assert result["id_prediction_agreement"] == 1 and result["head_max_abs_diff"] == 0
    text = script.markdown(result)
    assert "| energy | " in text and "| KNN k=50 | " in text and "+0.00 | 0.00 |" in text


def test_a_moved_ood_set_shows_where_it_moved(pair):
    script = _script()
    same, moved, _ = pair
    result = script.compare(same, moved)
    feats = result["features"]
    assert feats["near"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-6)
    assert feats["near"]["correlation"] > 0.9  # a shift: still perfectly related values
    assert all(f["max_abs_diff"] == 0 for n, f in feats.items() if n != "near")
    old, new = result["committed"]["energy"], result["new"]["energy"]
    assert new["auroc"]["far"] == old["auroc"]["far"]
    assert new["auroc"]["near"] != old["auroc"]["near"]  # larger features: larger energy
    assert new["id_accuracy"] == old["id_accuracy"]
    text = script.markdown(result)
    assert f"| near | {100 * old['auroc']['near']:.2f} | {100 * new['auroc']['near']:.2f} |" \
        in text


def test_bundles_of_different_recipes_are_refused(pair):
    script = _script()
    same, _, tmp = pair
    other = _copy(same, tmp / "fewer", drop="far")
    with pytest.raises(SystemExit, match="same splits and rows"):
        script.compare(same, other)


def test_an_unknown_demo_name_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exc:
        _script().main(["no_such_bundle"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no demo bundle 'no_such_bundle'")


def test_every_kth_row_of_the_committed_bundle_matches_a_subset_extraction(pair):
    """--every K: the committed side is cut to the rows that an extraction with ``every=K``
    reads (row i there is row i*K of the full split), groups kept."""
    script = _script()
    same, _, _ = pair
    cut = script.every_row(same, 3)
    for s in same.splits:
        got = cut.split(s.name)
        np.testing.assert_array_equal(got.features, np.asarray(s.features)[::3])
        if s.labels is not None:
            np.testing.assert_array_equal(got.labels, s.labels[::3])
    assert cut.groups == same.groups
    with pytest.raises(SystemExit) as exc:
        script.main(["cifar10_vit_hybrid", "--every", "0"])
    assert exc.value.code == 2
