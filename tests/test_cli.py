"""``ash-explore``: evaluate/sweep/methods through ``main([...])`` and one real subprocess."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import reference as ref

from ash_core import (
    METRIC_NAMES,
    Setting,
    SplitData,
    evaluate,
    get_method,
    list_methods,
    load_bundle,
    write_bundle,
)
from ash_core.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def expected_dict(bundle, setting: Setting, ood=None) -> dict:
    return evaluate(load_bundle(bundle), setting, ood).to_dict()


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize(
    ("args", "setting", "ood"),
    [
        ([], Setting("ash-s", {"p": 90.0}), None),
        (["--threshold", "global"], Setting("ash-s", {"p": 90.0}, "global"), None),
        (["--score", "msp", "--fpr-convention", "ood"],
         Setting("ash-s", {"p": 90.0}, "local", "msp", "ood"), None),
        (["--score", "maxlogit", "--ood", "near"],
         Setting("ash-s", {"p": 90.0}, "local", "maxlogit"), ["near"]),
    ],
)
def test_evaluate_json_equals_evaluate(capsys, synthetic_bundle, args, setting, ood):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-s", "--p", "90",
                       "--format", "json", *args)
    assert rc == 0, err
    got = json.loads(out)
    for key in ("method", "p", "threshold", "score", "id_accuracy", "ood", "average"):
        assert key in got
    assert set(got["id_accuracy"]) == {"shaped", "unshaped"}
    for metrics in [*got["ood"].values(), got["average"]]:
        assert set(metrics) == set(METRIC_NAMES)
    assert got == expected_dict(synthetic_bundle, setting, ood)  # exact: JSON floats round-trip


@pytest.mark.parametrize("method", list_methods())
def test_evaluate_every_method_default_p(capsys, synthetic_bundle, method):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", method, "--format",
                       "json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["method"] == method
    assert got == expected_dict(synthetic_bundle, Setting(method))


def test_evaluate_csv_parses_to_the_same_fractions(capsys, synthetic_bundle):
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-b", "--p", "70",
                     "--format", "csv")
    assert rc == 0
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["ood_set", *METRIC_NAMES]
    assert list(frame["ood_set"]) == ["far", "near", "Average"]
    exp = expected_dict(synthetic_bundle, Setting("ash-b", {"p": 70.0}))
    rows = {r["ood_set"]: r for r in frame.to_dict("records")}
    for name in ("far", "near"):
        for k in METRIC_NAMES:
            assert rows[name][k] == pytest.approx(exp["ood"][name][k], abs=1e-15)
    for k in METRIC_NAMES:
        assert rows["Average"][k] == pytest.approx(exp["average"][k], abs=1e-15)


def test_evaluate_table_shows_percentages_and_accuracy(capsys, synthetic_bundle):
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-s", "--p", "90")
    assert rc == 0
    exp = expected_dict(synthetic_bundle, Setting("ash-s", {"p": 90.0}))
    assert "ash-s p=90" in out and "threshold=local" in out and "values in %" in out
    lines = out.splitlines()
    far = next(line for line in lines if line.split()[:1] == ["far"]).split()
    assert far[1:] == [f"{100 * exp['ood']['far'][k]:.2f}" for k in METRIC_NAMES]
    avg = next(line for line in lines if line.split()[:1] == ["Average"]).split()
    assert avg[1:] == [f"{100 * exp['average'][k]:.2f}" for k in METRIC_NAMES]
    acc = exp["id_accuracy"]
    assert (f"ID accuracy: shaped {100 * acc['shaped']:.2f}%  "
            f"unshaped {100 * acc['unshaped']:.2f}%") in out


def test_evaluate_markdown_and_latex_parse(capsys, synthetic_bundle):
    exp = expected_dict(synthetic_bundle, Setting("ash-p", {"p": 65.0}))
    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-p", "--p", "65",
                     "--format", "markdown")
    assert rc == 0
    table = [line for line in out.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0] == ["ood_set", *METRIC_NAMES]
    assert set(cells[1]) == {"---"}
    assert [row[0] for row in cells[2:]] == ["far", "near", "Average"]
    assert cells[2][1:] == [f"{100 * exp['ood']['far'][k]:.2f}" for k in METRIC_NAMES]

    rc, out, _ = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-p", "--p", "65",
                     "--format", "latex")
    assert rc == 0
    assert "\\begin{tabular}{lrrrr}" in out
    # everything after the table is a LaTeX comment: the output pastes into a paper as is
    tail = out.split("\\end{table}\n", 1)[1]
    assert all(line.startswith("%") for line in tail.splitlines())
    assert "% ID accuracy: shaped" in tail
    rows = [line for line in out.splitlines() if line.endswith("\\\\")]
    assert rows[0] == "ood\\_set & fpr95 & auroc & aupr\\_in & aupr\\_out \\\\"
    near = rows[2].removesuffix(" \\\\").split(" & ")
    assert near == ["near", *[f"{100 * exp['ood']['near'][k]:.2f}" for k in METRIC_NAMES]]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--p", "150"], "p must be in [0, 100)"),
        (["--p", "-1"], "p must be in [0, 100)"),
        (["--p", "100"], "p must be in [0, 100)"),
        (["--p", "nan"], "p must be in [0, 100)"),
        (["--ood", "mars"], "unknown OOD split(s) 'mars'"),
    ],
)
def test_evaluate_errors_exit_2_with_a_message(capsys, synthetic_bundle, args, match):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, *args)
    assert rc == 2
    assert out == ""
    assert err.startswith("error: ") and match in err


def test_bundle_errors_exit_2(capsys, tmp_path):
    rc, _, err = run(capsys, "evaluate", tmp_path / "missing")
    assert rc == 2 and err.startswith("error: ") and "does not exist" in err
    pkl = tmp_path / "features.pkl"
    pkl.write_bytes(pickle.dumps({"features": [1, 2, 3]}))
    rc, _, err = run(capsys, "evaluate", pkl)
    assert rc == 2 and "never unpickles" in err


def test_global_without_id_fit_exits_2(capsys, tmp_path):
    rng = np.random.default_rng(0)
    feats = np.maximum(rng.normal(size=(30, 6)), 0).astype(np.float32)
    path = write_bundle(tmp_path / "nofit", rng.normal(size=(3, 6)), np.zeros(3), "abc",
                        [SplitData("id", "id", feats, rng.integers(0, 3, 30)),
                         SplitData("ood", "ood", feats * 2)])
    rc, _, err = run(capsys, "evaluate", path, "--threshold", "global", "--method", "ash-p")
    assert rc == 2 and "needs an 'id_fit' split" in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--method", "ash-x"], "invalid choice: 'ash-x'"),
        (["--p", "abc"], "invalid float value: 'abc'"),
        (["--threshold", "median"], "invalid choice: 'median'"),
        (["--score", "odin"], "invalid choice: 'odin'"),
        (["--fpr-convention", "both"], "invalid choice: 'both'"),
        (["--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_argument_errors_exit_2(capsys, synthetic_bundle, args, match):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(synthetic_bundle), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and match in err


def test_negative_features_warn_on_stderr_and_still_compute(capsys, tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 6)).astype(np.float32)  # not post-ReLU
    path = write_bundle(tmp_path / "neg", rng.normal(size=(3, 6)), np.zeros(3), "abc",
                        [SplitData("id", "id", feats, rng.integers(0, 3, 40)),
                         SplitData("ood", "ood", feats + 1)])
    before = warnings.formatwarning
    rc, out, err = run(capsys, "evaluate", path, "--format", "json")
    assert rc == 0 and "warning: " in err and "negative" in err
    # computed anyway, and right: the reference pipeline on the same (negative) features
    b = load_bundle(path)
    want = ref.evaluate(feats, {"ood": feats + 1}, b.head_weight.numpy(), b.head_bias.numpy(),
                        "ash-s", 65.0)
    got = json.loads(out)["ood"]["ood"]
    for k in METRIC_NAMES:
        assert got[k] == pytest.approx(want["ood"]["ood"][k], abs=1e-9), k
    assert warnings.formatwarning is before  # the CLI does not leak global state


def test_no_command_prints_help_and_exits_2(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "evaluate" in out and "sweep" in out and "methods" in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "ash-explore" in capsys.readouterr().out


# --------------------------------------------------------------------------- methods, sweep


def test_methods_lists_the_registry(capsys):
    rc, out, _ = run(capsys, "methods")
    assert rc == 0
    listed = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    assert listed == list_methods()
    blocks = {}  # method -> its lines
    for line in out.splitlines():
        if line and not line[0].isspace():
            name = line.split()[0]
        blocks.setdefault(name, []).append(line)
    for name in list_methods():
        text = "\n".join(blocks[name])
        for q in get_method(name).params:
            assert f"{q.name} in {q.range_text}, default {q.default:g}" in text
            for family, value in q.recommended.items():
                assert f"{family} {value:g}" in text
            assert ",".join(f"{v:g}" for v in q.search_grid) in text
    assert "no parameters" in "\n".join(blocks["none"])
    assert "recommended imagenet 90, cifar10 95, cifar100 90" in "\n".join(blocks["ash-s"])
    assert "recommended imagenet 65, cifar10 95, cifar100 85" in "\n".join(blocks["ash-b"])
    assert "search grid 85,90,95,99" in "\n".join(blocks["react"])
    assert "local/global" in "\n".join(blocks["ash-p"])


def test_evaluate_param_equals_p_shorthand_and_json_lists_params(capsys, synthetic_bundle):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-b",
                       "--param", "p=80", "--format", "json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["params"] == {"p": 80.0} and got["p"] == 80.0
    assert got == expected_dict(synthetic_bundle, Setting("ash-b", {"p": 80.0}))
    rc, out2, _ = run(capsys, "evaluate", synthetic_bundle, "--method", "ash-b", "--p", "80",
                      "--format", "json")
    assert rc == 0 and json.loads(out2) == got


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--method", "ash-s", "--param", "q=3"], "ash-s: unknown parameter 'q'; its parameters are: p"),
        (["--method", "none", "--param", "p=50"], "none: unknown parameter 'p'; it takes no parameters"),
        (["--method", "ash-s", "--param", "p=100"], r"ash-s: p must be in [0, 100)"),
        (["--method", "ash-s", "--param", "p"], "cannot parse --param 'p'; use NAME=VALUE"),
        (["--method", "ash-s", "--param", "p=x"], "cannot parse --param 'p=x'"),
        (["--method", "ash-s", "--param", "p=60", "--param", "p=70"], "--param p is given twice"),
        (["--method", "ash-s", "--p", "60", "--param", "p=70"], "p is given twice"),
    ],
)
def test_bad_params_are_one_line_errors(capsys, synthetic_bundle, argv, match):
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err, err


def test_sweep_param_errors(capsys, synthetic_bundle):
    rc, _, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s", "--param", "p=3")
    assert rc == 2 and "p is the swept parameter" in err
    rc, _, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s,react",
                     "--param", "gamma=3")
    assert rc == 2 and "none of ash-s, react has a parameter 'gamma'" in err


def test_dashboard_without_its_extra_names_the_pip_extra(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "streamlit" else real(name, *a))
    started = []  # never start a server, whatever happens
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: started.append(a) or 0)
    rc, out, err = run(capsys, "dashboard", "--port", "1")
    assert not started
    assert rc == 2 and out == ""
    assert err == "error: `ash-explore dashboard` needs streamlit, which is not installed; " \
                  "install the extra: pip install 'ash-explorer[dashboard]'.\n"


def test_sweep_csv_matches_evaluate(capsys, synthetic_bundle):
    rc, out, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-p,ash-s,none",
                       "--p", "60,90", "--format", "csv")
    assert rc == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert list(zip(frame["method"], frame["p"].fillna(-1), strict=True)) == [
        ("ash-p", 60), ("ash-p", 90), ("ash-s", 60), ("ash-s", 90), ("none", -1)]
    row = frame[(frame["method"] == "ash-s") & (frame["p"] == 90)].iloc[0]
    exp = expected_dict(synthetic_bundle, Setting("ash-s", {"p": 90.0}))
    assert row["far/auroc"] == pytest.approx(exp["ood"]["far"]["auroc"], abs=1e-12)
    assert row["average/fpr95"] == pytest.approx(exp["average"]["fpr95"], abs=1e-12)
    assert row["id_acc"] == pytest.approx(exp["id_accuracy"]["shaped"], abs=1e-12)


def test_sweep_bad_grid_exits_2(capsys, synthetic_bundle):
    rc, _, err = run(capsys, "sweep", synthetic_bundle, "--p", "60:120:20")
    assert rc == 2 and err.startswith("error: ") and "outside [0, 100)" in err


@pytest.mark.parametrize("command", ["evaluate", "sweep"])
def test_out_of_range_seed_exits_2(capsys, synthetic_bundle, command):
    # regression: torch's "Overflow when unpacking long long" traceback
    extra = ["--method", "ash-rand"] if command == "evaluate" else ["--methods", "ash-rand"]
    rc, _, err = run(capsys, command, synthetic_bundle, *extra, "--seed", str(2**64))
    assert rc == 2 and err.startswith("error: seed must be an integer")


@pytest.mark.parametrize("methods", ["", ",", " , "])
def test_sweep_without_methods_exits_2(capsys, synthetic_bundle, methods):
    # regression: an empty --methods list crashed with a pandas KeyError traceback
    rc, out, err = run(capsys, "sweep", synthetic_bundle, "--methods", methods)
    assert rc == 2 and err.startswith("error: ") and "no methods to sweep" in err
    assert out == ""


# --------------------------------------------------------------------------- real process


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "ash-explore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ash_core.cli"]


def test_console_script_subprocess(synthetic_bundle):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [*_console_script(), "evaluate", str(synthetic_bundle), "--method", "ash-s", "--p", "90",
         "--format", "json"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected_dict(synthetic_bundle, Setting("ash-s", {"p": 90.0}))
    bad = subprocess.run([*_console_script(), "evaluate", str(synthetic_bundle), "--p", "100"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stdout == ""


def test_python_dash_m(synthetic_bundle):
    proc = subprocess.run([sys.executable, "-m", "ash_core.cli", "methods"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "none"


def test_a_reader_that_leaves_early_gets_no_traceback():
    # regression: `ash-explore methods | head -1` printed a BrokenPipeError traceback
    proc = subprocess.Popen([sys.executable, "-m", "ash_core.cli", "methods"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err


def test_latex_escapes_every_special_character_once():
    # regression: braces, ~ and ^ (e.g. in a bundle name in the caption) went through raw
    # and broke the table; a backslash must become \textbackslash{} with its braces intact
    from ash_core.reports.tables import render_frame

    frame = pd.DataFrame({"ood_set": ["a_{b}~c^d\\e&f#g$h%"], "auroc": [0.5]})
    tex = render_frame(frame, "latex", caption="my~bundle{x}")
    row = next(line for line in tex.splitlines() if "50.00" in line)
    assert row == ("a\\_\\{b\\}\\textasciitilde{}c\\textasciicircum{}d\\textbackslash{}e\\&f"
                   "\\#g\\$h\\% & 50.00 \\\\")
    assert "\\caption{my\\textasciitilde{}bundle\\{x\\}}" in tex


def test_evaluation_frame_deltas_are_result_minus_base(synthetic_bundle):
    from ash_core.errors import ParameterError
    from ash_core.reports.tables import evaluation_frame

    r = evaluate(load_bundle(synthetic_bundle), Setting("ash-s", {"p": 80})).to_dict()
    b = evaluate(load_bundle(synthetic_bundle), Setting("none")).to_dict()
    frame = evaluation_frame(r, b)
    assert frame["ood_set"].tolist() == [*r["ood"], "Average"]
    for m in METRIC_NAMES:
        want = [r["ood"][n][m] - b["ood"][n][m] for n in r["ood"]]
        want.append(r["average"][m] - b["average"][m])
        assert frame[f"{m}_delta"].tolist() == pytest.approx(want, abs=1e-15)
    assert "auroc_delta" not in evaluation_frame(r).columns
    one = evaluate(load_bundle(synthetic_bundle), Setting("none"), ood=["far"]).to_dict()
    with pytest.raises(ParameterError, match="base result lacks OOD set"):
        evaluation_frame(r, one)


def test_sweep_names_parameters_other_than_p(capsys, synthetic_bundle):
    rc, out, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s,gen",
                       "--param", "gamma=0.5", "--p", "80", "--format", "csv", "--no-cache")
    assert rc == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert frame["setting"].tolist() == ["ash-s p=80 local", "gen gamma=0.5 M=100"]
    want = evaluate(load_bundle(synthetic_bundle), Setting("gen", {"gamma": 0.5}))
    assert frame["average/auroc"].iloc[1] == pytest.approx(want.average["auroc"], abs=1e-12)
    rc, out, _ = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s", "--p", "80",
                     "--format", "csv", "--no-cache")
    assert "setting" not in pd.read_csv(io.StringIO(out)).columns  # p says it all
