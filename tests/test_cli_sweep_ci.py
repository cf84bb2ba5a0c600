"""``ash-explore sweep --ci``: every row's intervals and counts are those ``evaluate --ci``
prints for the row's setting (JSON, CSV and text), for cube rows, exact rows and rows of an
inner layer; without --ci the sweep prints what it always did.

Rows the exact engine computes (and layer rows, which replay bit for bit) print evaluate's
JSON byte for byte. Cube rows bootstrap the cube's scores, which equal the exact engine's up
to float32 rounding (tests/cube_helpers.py), so their intervals match evaluate's within the
tolerance the cube's point metrics already have."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from cube_helpers import metric_tolerance
from test_layers_dashboard import make_layer_bundle

from ash_core.cli import main
from ash_core.maths.metrics import METRIC_NAMES

CI = ("--ci", "--ci-resamples", "40", "--ci-seed", "3")


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def evaluate_json(capsys, bundle, row: dict, *extra) -> dict:
    """``evaluate --ci --format json`` of a sweep row's setting."""
    params = [a for k, v in row["params"].items() for a in ("--param", f"{k}={v}")]
    rc, out, err = run(capsys, "evaluate", bundle, "--method", row["method"], *params,
                       "--threshold", row["threshold"], "--score", row["score"], *CI,
                       "--format", "json", *extra)
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("threshold", ["local", "global"])
def test_every_row_has_the_intervals_evaluate_gives(capsys, synthetic_bundle, threshold):
    rc, out, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s,ash-p,react,none",
                       "--p", "60,90", "--threshold", threshold, *CI, "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    assert [(r["method"], r["p"]) for r in rows] == [
        ("ash-s", 60), ("ash-s", 90), ("ash-p", 60), ("ash-p", 90), ("react", 60),
        ("react", 90), ("none", None)]
    for row in rows:
        want = evaluate_json(capsys, synthetic_bundle, row)
        assert row["n_id"] == want["n_id"] == 400
        assert row["ci_method"] == want["ci_method"]
        for name in ("far", "near"):
            assert row["ood"][name]["n_ood"] == 300
            assert_intervals_close(row["ood"][name]["ci"], want["ood"][name]["ci"], 300)
        assert_intervals_close(row["average"]["ci"], want["average"]["ci"], 300)
        assert row["average"]["n_ood"] == 600
        if row["method"] in ("react", "none"):  # exact rows: evaluate's JSON, every byte
            assert row == want


def assert_intervals_close(got: dict, want: dict, n_ood: int) -> None:
    """Each metric's [lo, hi] within the cube's float32 tolerance of evaluate's."""
    assert set(got) == set(want) == set(METRIC_NAMES)
    for m in METRIC_NAMES:
        tol = metric_tolerance(m, 400, n_ood)
        assert got[m] == pytest.approx(want[m], abs=tol, rel=0), (m, got[m], want[m])


def test_csv_and_table_columns(capsys, synthetic_bundle):
    args = ("sweep", synthetic_bundle, "--methods", "ash-s,none", "--p", "80", *CI)
    rc, out, _ = run(capsys, *args, "--format", "json")
    rows = json.loads(out)
    rc, out, err = run(capsys, *args, "--format", "csv")
    assert rc == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns[:9]) == [
        "method", "p", "far/fpr95", "far/fpr95_lo", "far/fpr95_hi", "far/auroc",
        "far/auroc_lo", "far/auroc_hi", "far/n_ood"]
    assert frame.columns[-1] == "n_id" and list(frame["n_id"]) == [400, 400]
    for i, row in enumerate(rows):
        for name, where in (("far", row["ood"]["far"]), ("near", row["ood"]["near"]),
                            ("average", row["average"])):
            assert frame[f"{name}/n_ood"][i] == where["n_ood"]
            for m in ("fpr95", "auroc"):
                lo, hi = frame[f"{name}/{m}_lo"][i], frame[f"{name}/{m}_hi"][i]
                assert [lo, hi] == pytest.approx(where["ci"][m], abs=1e-12)
    rc, out, _ = run(capsys, *args)
    assert rc == 0 and "40 resamples (seed 3)" in out
    assert "far/auroc_ci" in out and "average/n_ood" in out and "_lo" not in out
    lo, hi = rows[0]["ood"]["near"]["ci"]["auroc"]
    assert f"[{100 * lo:.2f}, {100 * hi:.2f}]" in out


def test_group_averages_carry_intervals(capsys, tmp_path, synthetic_bundle):
    """A bundle with near/far groups: each group's average has its own interval and
    count, as evaluate's."""
    import shutil
    path = tmp_path / "grouped"
    shutil.copytree(synthetic_bundle, path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["groups"] = {"near": ["near"], "far": ["far"]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    rc, out, err = run(capsys, "sweep", path, "--methods", "react", "--p", "85", *CI,
                       "--format", "json")
    assert rc == 0, err
    row = json.loads(out)[0]
    want = evaluate_json(capsys, path, row)
    assert set(row["groups"]) == {"near", "far"} and row["groups"] == want["groups"]
    assert row["groups"]["near"]["n_ood"] == 300
    rc, out, _ = run(capsys, "sweep", path, "--methods", "react", "--p", "85", *CI,
                     "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    got = [frame["average (near)/auroc_lo"][0], frame["average (near)/auroc_hi"][0]]
    assert got == pytest.approx(row["groups"]["near"]["ci"]["auroc"], abs=1e-12)


def test_layer_rows_have_the_intervals_of_evaluate_at_the_layer(capsys, tmp_path):
    path, _ = make_layer_bundle(tmp_path / "rn20.layers")
    rc, out, err = run(capsys, "sweep", path, "--layer", "layer3", "--methods", "ash-s",
                       "--p", "0,50", "--device", "cpu", *CI, "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["p"] for r in rows] == [0, 50]
    for row in rows:
        want = evaluate_json(capsys, path, row, "--layer", "layer3", "--device", "cpu")
        for name in want["ood"]:
            assert row["ood"][name]["ci"] == want["ood"][name]["ci"]
            assert row["ood"][name]["n_ood"] == want["ood"][name]["n_ood"]
        assert row["average"]["ci"] == want["average"]["ci"]
    rc, out, _ = run(capsys, "sweep", path, "--layer", "layer3", "--methods", "ash-s",
                     "--p", "50", "--device", "cpu", *CI, "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    got = [frame["far/fpr95_lo"][0], frame["far/fpr95_hi"][0]]
    assert got == pytest.approx(rows[1]["ood"]["far"]["ci"]["fpr95"], abs=1e-12)


def test_without_ci_no_interval_columns(capsys, synthetic_bundle):
    rc, out, _ = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s", "--p", "80",
                     "--format", "csv")
    assert rc == 0 and "_lo" not in out and "n_ood" not in out and "n_id" not in out
    rc, out, _ = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s", "--p", "80",
                     "--format", "json")
    row = json.loads(out)[0]
    assert "ci" not in row["ood"]["far"] and set(METRIC_NAMES) <= set(row["ood"]["far"])


@pytest.mark.parametrize(("args", "match"), [
    (["--ci-seed", "3"], "--ci-seed only applies with --ci"),
    (["--ci", "--ci-resamples", "0"], "resamples must be an integer >= 1"),
])
def test_ci_option_errors_exit_2(capsys, synthetic_bundle, args, match):
    rc, out, err = run(capsys, "sweep", synthetic_bundle, *args)
    assert rc == 2 and out == "" and err.startswith("error: ") and match in err
