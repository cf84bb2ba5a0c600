"""Near-OOD / far-OOD groups of OOD test splits (the manifest's ``groups``),
validated at load and write, and their averages beside the overall one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import edit_manifest

from ash_core import METRIC_NAMES, Setting, create_bundle, load_bundle
from ash_core.cli import main
from ash_core.errors import BundleError
from ash_core.layers import sweep as layer_sweep_module
from ash_core.policy import evaluate_setting
from ash_core.reports.leaderboard import leaderboard
from ash_core.reports.tables import column_label, evaluation_frame, headline
from ash_core.search.grid import search
from ash_core.search.many import search_many
from ash_core.sweep import sweep

REPO = Path(__file__).resolve().parents[1]

GROUPS = {"near": ["n1", "n2"], "far": ["f1"]}


def _bundle(path, groups=GROUPS):
    rng = np.random.default_rng(0)
    dim, c = 16, 4
    weight, bias = rng.normal(size=(c, dim)), np.zeros(c)

    def feats(n, shift):
        return np.abs(rng.normal(size=(n, dim)) + shift).astype(np.float32)

    splits = {"test": ("id", feats(60, 0.0), rng.integers(0, c, 60)),
              "train": ("id_fit", feats(60, 0.0)),
              "n1": ("ood", feats(40, 0.3)), "n2": ("ood", feats(40, 0.5)),
              "f1": ("ood", feats(40, 2.0)), "other": ("ood", feats(40, 1.0)),
              "idv": ("id_val", feats(30, 0.0), rng.integers(0, c, 30)),
              "val": ("ood_val", feats(20, 1.0))}
    return create_bundle(path, (weight, bias), splits, groups=groups).root


def test_groups_round_trip(tmp_path):
    bundle = load_bundle(_bundle(tmp_path / "b"))
    assert bundle.groups == {"near": ("n1", "n2"), "far": ("f1",)}


def test_no_groups_no_key(tmp_path):
    root = _bundle(tmp_path / "b", groups=None)
    assert "groups" not in json.loads((root / "manifest.json").read_text())
    assert load_bundle(root).groups == {}


@pytest.mark.parametrize("groups, words", [
    ({"near": ["missing"]}, "does not have"),
    ({"near": ["val"]}, "role 'ood_val'"),
    ({"near": ["test"]}, "role 'id'"),
    ({"near": ["n1"], "far": ["n1"]}, "at most one group"),
    ({"bad name": ["n1"]}, "group name"),
    ({"": ["n1"]}, "group name"),
    ({".x": ["n1"]}, "group name"),
    ({"near": []}, "at least one"),
    ({"near": "n1"}, "at least one"),
    (["near"], "must be an object"),
])
def test_bad_groups_are_refused_at_load_and_write(tmp_path, groups, words):
    root = _bundle(tmp_path / "b", groups=None)
    edit_manifest(root, lambda m: m.__setitem__("groups", groups))
    with pytest.raises(BundleError, match=words):
        load_bundle(root, verify=False)
    with pytest.raises(BundleError, match=words):
        _bundle(tmp_path / "c", groups=groups)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- results


def _run(capsys, *argv):
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def _mean(per_set, names):
    return {k: float(np.mean([per_set[n][k] for n in names])) for k in METRIC_NAMES}


@pytest.mark.parametrize("ood", [None, "n1,f1,other"])
def test_evaluate_json_group_averages_are_the_means_of_their_sets(tmp_path, capsys, ood):
    root = _bundle(tmp_path / "b")
    extra = [] if ood is None else ["--ood", ood]
    d = json.loads(_run(capsys, "evaluate", root, "--method", "ash-p", "--p", "80",
                        "--format", "json", *extra))
    chosen = list(d["ood"])
    assert set(d["groups"]) == {"near", "far"}
    for group, members in GROUPS.items():
        names = [n for n in members if n in chosen]
        for k, v in _mean(d["ood"], names).items():
            assert d["groups"][group][k] == pytest.approx(v, abs=1e-12)
    assert d["average"] == pytest.approx(_mean(d["ood"], chosen))


def test_group_with_no_selected_set_is_left_out(tmp_path, capsys):
    d = json.loads(_run(capsys, "evaluate", _bundle(tmp_path / "b"), "--method", "none",
                        "--ood", "f1", "--format", "json"))
    assert list(d["groups"]) == ["far"]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown", "latex"])
def test_tables_show_group_rows_after_the_average(tmp_path, capsys, fmt):
    out = _run(capsys, "evaluate", _bundle(tmp_path / "b"), "--method", "ash-s", "--p", "90",
               "--format", fmt)
    at = [out.index(word) for word in ("Average", "Average (near)", "Average (far)")]
    assert at == sorted(at)
    plain = _run(capsys, "evaluate", _bundle(tmp_path / "c", groups=None), "--method", "ash-s",
                 "--p", "90", "--format", fmt)
    assert "Average (" not in plain


def test_bundle_without_groups_has_no_group_keys(tmp_path, capsys):
    root = _bundle(tmp_path / "b", groups=None)
    d = json.loads(_run(capsys, "evaluate", root, "--method", "ash-p", "--p", "80",
                        "--format", "json"))
    assert "groups" not in d
    out = _run(capsys, "sweep", root, "--methods", "ash-p", "--p", "60,90", "--format", "csv")
    assert "avg (" not in out and "average (" not in out


def test_sweep_has_group_average_columns(tmp_path, capsys):
    root = _bundle(tmp_path / "b")
    out = _run(capsys, "sweep", root, "--methods", "ash-p,ash-b", "--p", "60,90",
               "--format", "csv")
    header = out.splitlines()[0].split(",")
    at = [header.index(c) for c in ("average/fpr95", "average (near)/fpr95",
                                    "average (near)/auroc", "average (far)/fpr95")]
    assert at == sorted(at) and "other/fpr95" in header
    table = _run(capsys, "sweep", root, "--methods", "ash-p", "--p", "60,90")
    for group in GROUPS:
        assert f"average ({group})/fpr95" in table and f"average ({group})/auroc" in table
    frame = sweep(load_bundle(root), ["ash-p"], [60.0])
    row = frame.iloc[0]
    for group, members in GROUPS.items():
        want = np.mean([row[f"{n}/fpr95"] for n in members])
        assert row[f"average ({group})/fpr95"] == pytest.approx(want, abs=1e-12)


def test_cube_engine_result_has_the_same_group_averages(tmp_path):
    bundle = load_bundle(_bundle(tmp_path / "b"))
    setting = Setting("ash-p", {"p": 80.0}).validated()
    cube = evaluate_setting(bundle, setting, engine="cube", cache_dir=tmp_path / "cache")
    exact = evaluate_setting(bundle, setting, engine="exact")
    assert cube.engine == "cube" and set(cube.to_dict()["groups"]) == {"near", "far"}
    for group in GROUPS:
        assert cube.group_averages[group] == pytest.approx(exact.group_averages[group])


def test_headline_counts_ood_sets_not_group_rows(tmp_path):
    bundle = load_bundle(_bundle(tmp_path / "b"))
    shaped = evaluate_setting(bundle, Setting("ash-p", {"p": 80.0}).validated()).to_dict()
    base = evaluate_setting(bundle, Setting("none", {}).validated()).to_dict()
    text = headline(evaluation_frame(shaped, base), shaped["id_accuracy"], "ASH-P")
    assert text.startswith("Over 4 OOD set(s)")


# --------------------------------------------------------------------------- everywhere


def _means_of_sets(columns: dict, group_col: str, members, metric: str) -> tuple[float, float]:
    return columns[f"{group_col}/{metric}"], float(np.mean([columns[f"{n}/{metric}"]
                                                             for n in members]))


def test_leaderboard_has_group_averages(tmp_path):
    board = leaderboard(load_bundle(_bundle(tmp_path / "b")), methods=["none", "ash-p", "react"])
    frame = board.frame()
    for _, row in frame.iterrows():
        for group, members in GROUPS.items():
            for metric in ("auroc", "fpr95"):
                got, want = _means_of_sets(row, f"average ({group})", members, metric)
                assert got == pytest.approx(want, abs=1e-12)
    cols = list(frame.columns)
    assert cols.index("average/fpr95") < cols.index("average (near)/auroc") < cols.index(
        "id_acc")
    assert column_label("average (near)/auroc") == "avg (near) AUROC (%)"


def test_leaderboard_without_groups_has_no_group_columns(tmp_path):
    board = leaderboard(load_bundle(_bundle(tmp_path / "b", groups=None)), methods=["ash-p"])
    assert not [c for c in board.frame().columns if c.startswith("average (")]


@pytest.mark.parametrize("engine", ["exact", "cube"])
def test_search_reports_group_averages_fresh_and_from_its_cache(tmp_path, engine):
    bundle = load_bundle(_bundle(tmp_path / "b"))
    runs = [search_many(bundle, ["ash-s"], engine=engine, cache_dir=tmp_path / "cache")["ash-s"]
            for _ in range(2)]
    for result in runs:
        for r in (result.test, result.test_optimal):
            groups = r.to_dict()["groups"]
            assert set(groups) == set(GROUPS)
            for group, members in GROUPS.items():
                want = np.mean([r.ood[n]["auroc"] for n in members])
                assert groups[group]["auroc"] == pytest.approx(want, abs=1e-12)
    assert runs[1].test.id_scores is None  # the second one came from the cache
    assert runs[0].test.to_dict()["groups"] == runs[1].test.to_dict()["groups"]


@pytest.mark.parametrize("engine", ["exact", "cube"])
def test_one_search_reports_group_averages(tmp_path, engine):
    result = search(load_bundle(_bundle(tmp_path / "b")), "ash-b", engine=engine,
                    cache_dir=tmp_path / "cache")
    assert result.engine == engine
    assert set(result.test.group_averages) == set(result.test_optimal.group_averages) == {
        "near", "far"}


def test_search_cli_json_has_group_averages(tmp_path, capsys):
    root = _bundle(tmp_path / "b")
    out = json.loads(_run(capsys, "search", root, "--method", "ash-p", "--format", "json",
                          "--no-cache"))
    assert set(out["test"]["groups"]) == set(GROUPS)


def test_search_cli_table_names_each_groups_test_metrics(tmp_path, capsys):
    root = _bundle(tmp_path / "b")
    one = _run(capsys, "search", root, "--method", "ash-p", "--no-cache")
    result = search(load_bundle(root), "ash-p", use_cache=False)
    near = result.test.group_averages["near"]
    assert f"near: AUROC {100 * near['auroc']:.2f}%, FPR95 {100 * near['fpr95']:.2f}%" in one
    every = _run(capsys, "search", root, "--all-methods", "--no-cache")
    assert "test AUROC (near)" in every and "test AUROC (far)" in every


def test_layer_sweep_frame_has_group_columns(monkeypatch):
    per_set = {n: {k: 0.1 * i + j / 10 for j, k in enumerate(METRIC_NAMES)}
               for i, n in enumerate(["n1", "n2", "f1", "other"])}

    class FakeSweep:
        grid = [60.0]

        def metrics(self, layer, p, convention, ood):
            return per_set

        def accuracy(self, layer):
            return np.array([0.5])

        def unshaped_accuracy(self, layer):
            return 0.5

    class FakeBundle:
        groups = {"near": ("n1", "n2"), "far": ("f1",)}

    monkeypatch.setattr(layer_sweep_module, "layer_sweep", lambda *a, **k: FakeSweep())
    frame = layer_sweep_module.sweep_frame(FakeBundle(), "layer2", ["ash-p"], [60.0])
    row = frame.iloc[0]
    for group, members in GROUPS.items():
        got, want = _means_of_sets(row, f"average ({group})", members, "auroc")
        assert got == pytest.approx(want, abs=1e-12)


def test_demo_bundles_declare_their_recipes_groups():
    for recipe in sorted((REPO / "configs").glob("*.json")):
        manifest_path = REPO / "cached_features" / recipe.stem / "manifest.json"
        if not manifest_path.exists():
            continue
        want = json.loads(recipe.read_text()).get("groups")
        bundle = load_bundle(manifest_path.parent, verify=False)
        assert bundle.manifest.get("groups") == want, recipe.stem
    for name in ("cifar10_resnet20", "cifar10_resnet56"):
        groups = load_bundle(REPO / "cached_features" / name, verify=False).groups
        assert groups["near"] == ("tinyimagenet",)
        assert {"dtd", "mnist", "noise_gaussian"} <= set(groups["far"])
