"""The Streamlit app driven through AppTest: every control, every view, the URL state.

Uses small synthetic bundles (fast); ``test_demo_bundle_matches_the_cli`` runs on the
real demo bundle ``cached_features/cifar10_resnet20``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_synthetic_bundle
from streamlit.testing.v1 import AppTest

from ash_core import Evaluator, SplitData, list_methods, list_scores, load_bundle, write_bundle
from ash_core.cli import main as cli_main
from ash_core.samples import inspect_sample
from dashboard.state import VIEWS

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
DEMO = REPO / "cached_features" / "cifar10_resnet20"


def run_app(bundle: Path | str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["bundle"] = str(bundle)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    return at


def ok(at: AppTest) -> AppTest:
    """Assert that the run raised nothing and shows no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A normal bundle, one with another feature dimension, one with thumbnails and image
    paths, and one with an empty OOD split."""
    root = tmp_path_factory.mktemp("app_bundles")
    main = make_synthetic_bundle(root / "main")
    other = make_synthetic_bundle(root / "d48", dim=48, seed=1)
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 16)).astype(np.float32)
    f = lambda n, s: np.maximum(rng.normal(s, 1, (n, 16)), 0).astype(np.float32)  # noqa: E731
    idf = f(200, 0.7)
    meta = pd.DataFrame({"sample_id": range(200), "label": (idf @ w.T).argmax(1),
                         "source": [f"cifar10/test/{i}.png" for i in range(200)]})
    pics = write_bundle(root / "pics", w, np.zeros(3, np.float32), ["a", "b", "c"], [
        SplitData("id_test", "id", idf, meta["label"].to_numpy(), meta=meta),
        SplitData("digits", "ood", f(100, 0.0),
                  thumbnails=rng.integers(0, 255, (100, 28, 28), dtype=np.uint8)),
    ])
    empty = make_synthetic_bundle(root / "empty", seed=2)
    from safetensors.numpy import save_file

    save_file({"features": np.zeros((0, 32), np.float32)}, str(empty / "splits/void.safetensors"))
    manifest = json.loads((empty / "manifest.json").read_text())
    manifest["splits"].append({"name": "void", "role": "ood", "file": "splits/void.safetensors",
                               "n": 0})
    (empty / "manifest.json").write_text(json.dumps(manifest))
    return {"main": main, "d48": other, "pics": pics, "empty": empty}


@pytest.fixture(scope="module")
def ev(bundles):
    return Evaluator(load_bundle(bundles["main"]), warn=False)


def expected_metrics(result: dict) -> dict[str, str]:
    avg = result["average"]
    return {"avg FPR95": f"{100 * avg['fpr95']:.2f}%", "avg AUROC": f"{100 * avg['auroc']:.2f}%",
            "avg AUPR-In": f"{100 * avg['aupr_in']:.2f}%",
            "avg AUPR-Out": f"{100 * avg['aupr_out']:.2f}%",
            "ID accuracy (shaped)": f"{100 * result['id_accuracy']['shaped']:.2f}%"}


def cli_json(bundle: Path, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert cli_main(["evaluate", str(bundle), "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- overview


@pytest.mark.parametrize("engine", ["exact", "cube"])
def test_overview_equals_the_cli(bundles, capsys, engine):
    """exact: the CLI's numbers to the last bit; cube: equal up to float32 rounding."""
    at = ok(run_app(bundles["main"], method="ash-b", p=70, score="msp", convention="ood",
                    engine=engine))
    expected = cli_json(bundles["main"], capsys, "--method", "ash-b", "--p", "70", "--score",
                        "msp", "--fpr-convention", "ood")
    tol = 1e-9 if engine == "exact" else 0.1  # in percent
    shown = metrics(at)
    for label, value in expected_metrics(expected).items():
        assert float(shown[label].rstrip("%")) == pytest.approx(float(value.rstrip("%")),
                                                                abs=max(tol, 0.005)), label
    table = at.dataframe[0].value.set_index("ood_set")
    for name, m in expected["ood"].items():
        for k, v in m.items():
            assert table.loc[name, k] == pytest.approx(100 * v, abs=tol)
    assert charts(at) == 1
    caption = " ".join(c.value for c in at.caption)
    assert ("score cube" in caption) == (engine == "cube")
    assert at.radio(key="engine").value == engine


def test_moving_p_changes_the_numbers_and_the_url(bundles, ev):
    at = ok(run_app(bundles["main"], engine="exact"))
    before = metrics(at)
    at.slider(key="p").set_value(95).run()
    ok(at)
    after = metrics(at)
    assert after["avg AUROC"] != before["avg AUROC"]
    assert after == {**after, **expected_metrics(ev.evaluate("ash-s", 95).to_dict())}
    assert at.query_params["p"] == "95"
    assert at.slider(key="p").label.startswith("p")
    assert (at.slider(key="p").min, at.slider(key="p").max, at.slider(key="p").step) == (0, 99, 1)


def test_url_state_opens_the_exact_view(bundles):
    params = dict(method="ash-p", p=55, threshold="global", score="maxlogit", convention="ood",
                  ood="near", view="curves")
    at = ok(run_app(bundles["main"], **params))
    assert at.selectbox(key="method").value == "ash-p"
    assert at.slider(key="p").value == 55
    assert at.radio(key="threshold").value == "global"
    assert at.selectbox(key="score").value == "maxlogit"
    assert at.radio(key="convention").value == "ood"
    assert at.multiselect(key="ood").value == ["near"]
    assert at.radio(key="view").value == "curves"
    assert charts(at) == 2
    for k, v in params.items():
        assert at.query_params[k] == str(v)
    assert at.query_params["bundle"] == str(bundles["main"])


def test_bad_url_values_fall_back_with_a_note(bundles):
    at = run_app(bundles["main"], method="bogus", p="999", view="nowhere")
    assert not at.exception
    assert any("ignored method" in w.value for w in at.warning)
    assert at.selectbox(key="method").value in list_methods()
    assert at.query_params["view"] == "overview"


def test_every_sidebar_control_changes_state(bundles, ev):
    at = ok(run_app(bundles["main"], engine="exact"))
    seen = {metrics(at)["avg AUROC"]}
    for method in list_methods():
        at.selectbox(key="method").set_value(method).run()
        ok(at)
        assert at.query_params["method"] == method
        seen.add(metrics(at)["avg AUROC"])
        assert at.slider(key="p").disabled == (method == "none")
    assert len(seen) >= len(list_methods()) - 1
    at.selectbox(key="method").set_value("react").run()
    assert at.radio(key="threshold").disabled  # react: local only
    at.selectbox(key="method").set_value("ash-p").run()
    at.radio(key="threshold").set_value("global").run()
    ok(at)
    r = ev.evaluate("ash-p", float(at.slider(key="p").value), "global").to_dict()
    assert metrics(at)["avg AUROC"] == expected_metrics(r)["avg AUROC"]
    for score in list_scores():
        at.selectbox(key="score").set_value(score).run()
        ok(at)
        assert at.query_params.get("score", "energy") == score  # defaults stay implicit
    at.radio(key="convention").set_value("ood").run()
    ok(at)
    assert "OOD positive" in " ".join(c.value for c in at.caption)
    at.multiselect(key="ood").set_value(["far"]).run()
    ok(at)
    assert at.query_params["ood"] == "far"
    assert len(at.dataframe[0].value) == 2  # far + Average
    at.multiselect(key="ood").set_value([]).run()
    assert any("No OOD set" in e.value for e in at.error)


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_view_renders(bundles, view):
    at = ok(run_app(bundles["main"], view=view, step=10, p=80))
    expected_charts = {"overview": 1, "distributions": 1, "curves": 2, "tradeoff": 2,
                       "inspector": 2, "compare": 1, "export": 0, "where": 0}[view]
    assert charts(at) == expected_charts
    assert at.subheader, "every view has a title"


# --------------------------------------------------------------------------- other views


def test_tradeoff_uses_the_sweep_and_marks_p(bundles):
    at = ok(run_app(bundles["main"], view="tradeoff", p=40))
    assert any("settings" in c.value for c in at.caption)
    assert "step" not in at.query_params  # the default (5) is implicit in links
    at.selectbox(key="step").set_value(10).run()
    ok(at)
    assert at.query_params["step"] == "10"
    at.radio(key="pareto").set_value("average/fpr95").run()
    ok(at)
    assert at.query_params["pareto"] == "average/fpr95"
    at.slider(key="p").set_value(60).run()
    ok(at)
    assert charts(at) == 2


def test_inspector_shows_a_sample(bundles, ev):
    at = ok(run_app(bundles["main"], view="inspector", method="ash-p", p=75, iset="far",
                    idx=7, engine="exact"))
    assert at.selectbox(key="iset").value == "far" and at.number_input(key="idx").value == 7
    shaper = ev.shaper("ash-p", 75.0)
    insp = inspect_sample(ev.features("far")[7:8], shaper, ev.weight, ev.bias,
                          ev.bundle.classes, ev.evaluate("none").id_scores,
                          ev.evaluate("ash-p", 75.0).id_scores)
    m = metrics(at)
    assert m["energy before"] == f"{insp.energy_before:.3f}"
    assert m["energy after"] == f"{insp.energy_after:.3f}"
    assert m["ID percentile after"] == f"{insp.percentile_after:.1f}%"
    assert any("No image" in i.value for i in at.info)  # placeholder, with the reason
    at.number_input(key="idx").set_value(8).run()
    ok(at)
    assert at.query_params["idx"] == "8"
    assert metrics(at)["energy before"] != m["energy before"]
    for mode in ("fp", "fn"):
        at.radio(key="imode").set_value(mode).run()
        ok(at)
        assert len(at.dataframe[0].value) == 10
        at.selectbox(key="ipick").set_value(2).run()
        ok(at)
        assert charts(at) == 2
        row = at.dataframe[0].value.iloc[2]
        assert (at.query_params["iset"], at.query_params["idx"]) == (row["set"],
                                                                     str(row["index"]))
        # the link reopens the same sample in the same list
        again = ok(run_app(bundles["main"], **{k: v for k, v in at.query_params.items()
                                               if k != "bundle"}))
        assert again.selectbox(key="ipick").value == 2


def test_inspector_ash_rand_shows_the_evaluated_row(bundles, ev):
    # regression: ASH-RAND rows were shaped alone (row 0's draws), not as in the split
    at = ok(run_app(bundles["main"], view="inspector", method="ash-rand", p=70, iset="id_test",
                    idx=9, engine="exact"))
    expected = ev.evaluate("ash-rand", 70.0).id_scores[9]
    assert metrics(at)["energy after"] == f"{expected:.3f}"


def test_inspector_images_and_missing_data_root(bundles, monkeypatch):
    at = ok(run_app(bundles["pics"], view="inspector", iset="digits", idx=3))
    assert len(at.get("image")) == 1 and not at.info
    monkeypatch.setenv("ASH_DATA_ROOT", "/nonexistent/data")
    at = ok(run_app(bundles["pics"], view="inspector", iset="id_test", idx=3))
    assert any("data root /nonexistent/data does not exist" in i.value for i in at.info)
    assert len(at.get("image")) == 1  # the placeholder
    assert metrics(at)["energy before"]  # the rest of the inspector still works


def test_inspector_reads_images_under_the_data_root(bundles, monkeypatch, tmp_path):
    from PIL import Image

    (tmp_path / "cifar10" / "test").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "cifar10" / "test" / "3.png")
    monkeypatch.setenv("ASH_DATA_ROOT", str(tmp_path))
    at = ok(run_app(bundles["pics"], view="inspector", iset="id_test", idx=3))
    assert len(at.get("image")) == 1 and not at.info
    at.number_input(key="idx").set_value(4).run()  # not on disk: a clear placeholder
    assert any("not found under the data root" in i.value for i in at.info)


def test_compare_two_settings(bundles, ev):
    at = ok(run_app(bundles["main"], view="compare", method="ash-s", p=90, bmethod="ash-p",
                    bp=60, engine="exact"))
    a = ev.evaluate("ash-s", 90).to_dict()
    b = ev.evaluate("ash-p", 60).to_dict()
    aurocs = [m.value for m in at.metric if m.label == "avg AUROC"]
    assert aurocs == [f"{100 * a['average']['auroc']:.2f}%", f"{100 * b['average']['auroc']:.2f}%"]
    at.slider(key="bp").set_value(80).run()
    ok(at)
    assert at.query_params["bp"] == "80"
    at.selectbox(key="bmethod").set_value("react").run()
    assert at.radio(key="bthreshold").disabled
    assert charts(at) == 1


def test_compare_bundles_of_different_dimensions(bundles):
    at = run_app(bundles["main"], view="compare", cmode="bundle", bbundle=str(bundles["d48"]))
    assert not at.exception
    assert any("different feature dimensions" in e.value for e in at.error)
    assert len([m for m in at.metric if m.label == "avg AUROC"]) == 2  # still compared
    assert charts(at) == 1


def test_export_offers_report_tables_and_figures(bundles):
    at = ok(run_app(bundles["main"], view="export", method="ash-s", p=85))
    assert len(at.get("download_button")) == 1 + 3 + 4
    codes = [c.value for c in at.code]
    assert any("method=ash-s" in c and "p=85" in c for c in codes)
    at.radio(key="export_preview").set_value("latex").run()
    assert any("\\begin{tabular}" in c.value for c in at.code)


# --------------------------------------------------------------------------- bad input


def test_unreadable_bundle_shows_an_error_and_the_app_keeps_working(bundles, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    at = run_app(broken)
    assert not at.exception
    assert any("not valid JSON" in e.value for e in at.error)
    at.text_input(key="bundle_path").input(str(bundles["main"])).run()
    ok(at)
    assert metrics(at)["avg AUROC"].endswith("%")
    at.text_input(key="bundle_path").input("/does/not/exist").run()
    assert any("does not exist" in e.value for e in at.error)
    assert at.query_params["bundle"] == "/does/not/exist"


def test_empty_ood_set_is_left_out_with_a_warning(bundles):
    at = ok(run_app(bundles["empty"]))
    assert any("no samples" in w.value and "void" in w.value for w in at.warning)
    assert "void" not in at.multiselect(key="ood").options
    assert metrics(at)["avg AUROC"].endswith("%")


def test_demo_bundle_matches_the_cli(capsys):
    assert (DEMO / "manifest.json").is_file(), (
        f"the demo bundle {DEMO} is missing: build it with `make bundles` (it is committed "
        "in the repository)")
    os.environ.pop("ASH_DASHBOARD_BUNDLES", None)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(method="ash-s", p="90", engine="exact")
    ok(at.run())
    assert Path(at.query_params["bundle"]).name == "cifar10_resnet20"
    expected = cli_json(DEMO, capsys, "--method", "ash-s", "--p", "90")
    for label, value in expected_metrics(expected).items():
        assert metrics(at)[label] == value
    at.slider(key="p").set_value(60).run()
    ok(at)
    assert metrics(at)["avg AUROC"] != expected_metrics(expected)["avg AUROC"]


def test_bundles_from_the_command_line_are_listed_and_selectable(bundles, monkeypatch):
    monkeypatch.setenv("ASH_DASHBOARD_BUNDLES", os.pathsep.join(
        [str(bundles["main"]), str(bundles["d48"])]))
    at = AppTest.from_file(APP, default_timeout=120)
    ok(at.run())
    box = at.selectbox(key="bundle")
    assert box.value == str(bundles["main"])  # the first one given opens
    assert str(bundles["d48"]) in box.options
    before = metrics(at)["avg AUROC"]
    box.set_value(str(bundles["d48"])).run()
    ok(at)
    assert at.query_params["bundle"] == str(bundles["d48"])
    assert metrics(at)["avg AUROC"] != before
    assert at.selectbox(key="id_split").value == "id_test"
    assert at.multiselect(key="ood").value == ["far", "near"]


def test_cube_engine_slider_tracks_the_exact_numbers(bundles, ev):
    at = ok(run_app(bundles["main"], method="ash-s", p=60))
    assert at.radio(key="engine").value == "exact"  # the CLI's numbers are the default
    at.radio(key="engine").set_value("cube").run()
    ok(at)
    assert at.query_params["engine"] == "cube"
    seen = []
    for p in (60, 75, 95):
        at.slider(key="p").set_value(p).run()
        ok(at)
        shown = float(metrics(at)["avg AUROC"].rstrip("%"))
        exact = 100 * ev.evaluate("ash-s", float(p)).average["auroc"]
        assert shown == pytest.approx(exact, abs=0.01)
        seen.append(shown)
    assert len(set(seen)) == 3
    at.radio(key="engine").set_value("exact").run()
    ok(at)
    assert "engine" not in at.query_params  # the default is implicit in the link
    exact = ev.evaluate("ash-s", 95.0).to_dict()
    assert metrics(at)["avg AUROC"] == expected_metrics(exact)["avg AUROC"]
