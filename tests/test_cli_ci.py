"""``ash-explore evaluate --ci``: intervals and counts in every format, the same as the
library's; without --ci the output is what it always was."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from ash_core import Setting, evaluate, load_bundle
from ash_core.cli import main
from ash_core.maths.metrics import METRIC_NAMES
from ash_core.reports.intervals import result_ci
from ash_core.reports.tables import dumps_json, evaluation_frame, render_frame

BASE = ("--method", "ash-s", "--p", "85")


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def expected(bundle):
    return evaluate(load_bundle(bundle), Setting("ash-s", {"p": 85.0}))


def test_without_ci_the_output_is_unchanged(capsys, synthetic_bundle):
    result = expected(synthetic_bundle)
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, *BASE, "--format", "json")
    assert rc == 0 and out == dumps_json(result.to_dict()) + "\n"  # byte for byte
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, *BASE, "--format", "csv")
    assert out == render_frame(evaluation_frame(result.to_dict()), "csv")
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, *BASE)
    assert "n_ood" not in out and "[" not in out


def test_ci_json_has_intervals_and_counts_beside_every_metric(capsys, synthetic_bundle):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, *BASE, "--format", "json",
                       "--ci", "--ci-resamples", "60", "--ci-seed", "4")
    assert rc == 0, err
    got = json.loads(out)
    result = expected(synthetic_bundle)
    ci = result_ci(result, 60, 4)
    plain = result.to_dict()
    assert got["n_id"] == 400
    assert got["ci_method"]["resamples"] == 60 and got["ci_method"]["seed"] == 4
    for name in ("near", "far"):
        row = got["ood"][name]
        assert row["n_ood"] == 300
        assert {k: row[k] for k in METRIC_NAMES} == plain["ood"][name]  # points unchanged
        for m in METRIC_NAMES:
            assert row["ci"][m] == list(ci.ood[name][m])
            assert row["ci"][m][0] <= row["ci"][m][1]
    assert got["average"]["n_ood"] == 600
    assert got["average"]["ci"]["auroc"] == list(ci.average["auroc"])


def test_ci_table_and_csv(capsys, synthetic_bundle):
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, *BASE, "--ci", "--ci-resamples",
                     "50", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert {"n_id", "n_ood", "auroc_lo", "auroc_hi", "fpr95_lo"} <= set(frame.columns)
    ci = result_ci(expected(synthetic_bundle), 50, 0)
    for m in METRIC_NAMES:
        near = frame.loc[frame["ood_set"] == "near"].iloc[0]
        assert (near[f"{m}_lo"], near[f"{m}_hi"]) == pytest.approx(ci.ood["near"][m])
        avg = frame.loc[frame["ood_set"] == "Average"].iloc[0]
        assert (avg[f"{m}_lo"], avg[f"{m}_hi"]) == pytest.approx(ci.average[m])
    assert list(frame["n_ood"]) == [300, 300, 600]
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, *BASE, "--ci", "--ci-resamples",
                     "50")
    assert rc == 0 and "auroc_ci" in out and "50 resamples (seed 0)" in out
    lo, hi = frame.loc[frame["ood_set"] == "near", ["auroc_lo", "auroc_hi"]].iloc[0]
    assert f"[{100 * lo:.2f}, {100 * hi:.2f}]" in out


@pytest.mark.parametrize(("args", "match"), [
    (["--ci-seed", "3"], "--ci-seed only applies with --ci"),
    (["--ci-resamples", "10", "--ci-seed", "3"], "only apply with --ci"),
    (["--ci", "--ci-resamples", "0"], "resamples must be an integer >= 1"),
])
def test_ci_options_errors_exit_2(capsys, synthetic_bundle, args, match):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, *args)
    assert rc == 2 and out == "" and match in err


def test_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "bootstrap resamples with --ci (default 1000)" in text
    assert "resampling with --ci (default 0)" in text
