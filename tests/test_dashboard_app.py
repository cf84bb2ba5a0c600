"""The Streamlit app driven through AppTest: every control, every view, the URL state.

Uses small synthetic bundles (fast); ``test_demo_bundle_matches_the_cli`` runs on the
real demo bundle ``cached_features/cifar10_resnet20``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_synthetic_bundle
from streamlit.testing.v1 import AppTest

from ash_core import (
    Evaluator,
    Setting,
    SplitData,
    get_method,
    kept_count,
    list_methods,
    list_scores,
    load_bundle,
    write_bundle,
)
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


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def numbers_caption(at: AppTest) -> str:
    """The caption that says which engine computed the shown numbers."""
    (caption,) = [c.value for c in at.caption if c.value.startswith("Numbers: ")]
    return caption


def texts(at: AppTest, *kinds: str) -> str:
    """Every markdown-bearing element's source text, unescaped for matching."""
    kinds = kinds or ("markdown", "caption", "subheader", "title", "error", "warning", "info",
                      "success")
    return "\n".join(e.value for k in kinds for e in at.get(k)).replace("\\", "")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A normal bundle, one with another feature dimension, one with thumbnails and image
    paths, one with an empty OOD split, one without id_fit, one with other OOD sets and one
    whose manifest name is a markdown image. Their directory is the app's bundle root."""
    root = tmp_path_factory.mktemp("app_bundles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_BUNDLE_ROOTS", str(root))
        yield _make_bundles(root)


EVIL = "![x](http://evil.example/x.png)"


def _variant(src: Path, dst: Path, name: str | None = None, drop_role: str = "",
             rename: dict[str, str] | None = None) -> Path:
    """A copy of bundle ``src`` without the splits of ``drop_role``, with OOD splits
    renamed and another manifest name (re-written through write_bundle)."""
    b = load_bundle(src)
    rename = rename or {}
    splits = [SplitData(rename.get(s.name, s.name), s.info.role, np.asarray(s.features),
                        s.labels) for s in b.splits if s.info.role != drop_role]
    out = write_bundle(dst, b.head_weight.numpy(), b.head_bias.numpy(), b.classes, splits,
                       {"model": {"name": "synthetic"}})
    if name is not None:
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["name"] = name
        (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _make_bundles(root: Path) -> dict[str, Path]:
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
    manifest["files"]["splits/void.safetensors"] = hashlib.sha256(
        (empty / "splits/void.safetensors").read_bytes()).hexdigest()  # verified on load
    (empty / "manifest.json").write_text(json.dumps(manifest))
    return {"main": main, "d48": other, "pics": pics, "empty": empty,
            "nofit": _variant(main, root / "nofit", drop_role="id_fit"),
            "other": _variant(main, root / "other", rename={"near": "other"}),
            "lonely": _variant(main, root / "lonely", rename={"near": "x1", "far": "x2"}),
            "evil": _variant(main, root / "evil", name=EVIL)}


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
    assert numbers_caption(at) == {"exact": "Numbers: exact, as `ash-explore evaluate`.",
                                   "cube": "Numbers: score cube (float32; equal to "
                                           "`ash-explore evaluate` up to rounding)."}[engine]
    assert at.radio(key="engine").value == engine


def test_moving_p_changes_the_numbers_and_the_url(bundles, ev):
    at = ok(run_app(bundles["main"], engine="exact"))
    before = metrics(at)
    at.slider(key="p").set_value(95).run()
    ok(at)
    after = metrics(at)
    assert after["avg AUROC"] != before["avg AUROC"]
    assert after == {**after, **expected_metrics(ev.evaluate(Setting("ash-s", {"p": 95})).to_dict())}
    assert at.query_params["p"] == "95"
    assert at.slider(key="p").label.startswith("p")
    assert (at.slider(key="p").min, at.slider(key="p").max, at.slider(key="p").step) == (0, 99, 1)


def test_url_state_opens_the_exact_view(bundles):
    params = dict(method="ash-p", p=55, threshold="global", score="maxlogit", convention="ood",
                  ood="near", view="curves", curve="pr")
    at = ok(run_app(bundles["main"], **params))
    assert at.selectbox(key="method").value == "ash-p"
    assert at.slider(key="p").value == 55
    assert at.radio(key="threshold").value == "global"
    assert at.selectbox(key="score").value == "maxlogit"
    assert at.radio(key="convention").value == "ood"
    assert at.multiselect(key="ood").value == ["near"]
    assert at.radio(key="view").value == "curves"
    assert at.radio(key="curve").value == "pr"
    assert charts(at) == 1 and "Precision-recall curves" in chart_titles(at)[0]
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
        assert at.slider(key="p").disabled == (not get_method(method).has_p)
    # one coincidence allowed, and the energy baseline is none under the default score
    assert len(seen) >= len(list_methods()) - 2
    at.selectbox(key="method").set_value("react").run()
    assert at.radio(key="threshold").disabled  # react: local only
    at.selectbox(key="method").set_value("ash-p").run()
    at.radio(key="threshold").set_value("global").run()
    ok(at)
    r = ev.evaluate(Setting("ash-p", {"p": float(at.slider(key="p").value)}, "global")).to_dict()
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
    expected_charts = {"overview": 1, "distributions": 1, "curves": 1, "tradeoff": 2,
                       "inspector": 2, "compare": 1, "export": 0, "where": 0,
                       "leaderboard": 1, "across": 0}[view]
    assert charts(at) == expected_charts
    assert at.subheader, "every view has a title"


# --------------------------------------------------------------------------- other views


def test_curves_show_roc_or_pr_one_figure_at_a_time(bundles):
    # two 8-panel figures took the browser over 0.5 s per slider move
    at = ok(run_app(bundles["main"], view="curves", p=70))
    assert at.radio(key="curve").value == "roc" and "curve" not in at.query_params
    (title,) = chart_titles(at)
    assert title.startswith("ROC curves per OOD set")
    at.radio(key="curve").set_value("pr").run()
    ok(at)
    assert at.query_params["curve"] == "pr"
    (title,) = chart_titles(at)
    assert title.startswith("Precision-recall curves per OOD set")
    at.slider(key="p").set_value(75).run()  # the choice survives a slider move
    assert chart_titles(at)[0].startswith("Precision-recall") and ok(at)


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
    shaper = ev.shaper(Setting("ash-p", {"p": 75.0}))
    insp = inspect_sample(ev.features("far")[7:8], shaper, ev.weight, ev.bias,
                          ev.bundle.classes, ev.evaluate(Setting("none")).id_scores,
                          ev.evaluate(Setting("ash-p", {"p": 75.0})).id_scores)
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
    expected = ev.evaluate(Setting("ash-rand", {"p": 70.0})).id_scores[9]
    assert metrics(at)["energy after"] == f"{expected:.3f}"


def test_inspector_shows_the_odin_variant_the_method_read(bundles):
    # regression: for ODIN the inspector showed the unperturbed features (shaped by the
    # identity), not the stored 'odin' variant its scores are computed from
    at = ok(run_app(DEMO, view="inspector", method="odin", iset="cifar10_test", idx=5,
                    engine="exact"))
    bundle = load_bundle(DEMO)
    w = bundle.head_weight.numpy().astype(np.float64)
    b = bundle.head_bias.numpy().astype(np.float64)
    split = bundle.split("cifar10_test")

    def energy(x: np.ndarray) -> float:
        z = x.astype(np.float64) @ w.T + b
        return float(z.max() + np.log(np.exp(z - z.max()).sum()))

    read = split.variant_features_tensor("odin").numpy()[5]
    m = metrics(at)
    assert m["energy after"] == f"{energy(read):.3f}"
    assert m["energy before"] == f"{energy(split.features[5]):.3f}"
    assert m["energy after"] != m["energy before"]
    ids = np.array([energy(x) for x in split.variant_features_tensor("odin").numpy()])
    after = energy(read)
    share = 100 * (np.sum(ids < after) + 0.5 * np.sum(ids == after)) / ids.size
    assert m["ID percentile after"] == f"{share:.1f}%"
    caption = texts(at, "caption")
    assert "odin reads the stored 'odin' feature variant (extracted with " \
           "temperature=1000, epsilon=0.0014)" in caption
    assert "units kept" not in caption
    panels = [a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
              ["annotations"]]
    assert "stored features" in panels and "features odin read (odin)" in panels
    # a bundle without the variant: the existing reason, nothing else
    at = ok(run_app(bundles["pics"], view="inspector", method="odin"))
    assert "odin is not available for this bundle" in texts(at, "warning")


@pytest.mark.parametrize("method", ["gen", "knn", "temp-scaling"])
def test_inspector_ranks_energy_among_energies_for_methods_that_are_their_own_score(
        bundles, method):
    # regression: "ID percentile after" placed the sample's energy among the method's own
    # scores (GEN, KNN, ...), e.g. 100% for an energy these methods leave unchanged
    at = ok(run_app(bundles["main"], view="inspector", method=method, iset="far", idx=3,
                    engine="exact"))
    m = metrics(at)
    assert m["energy after"] == m["energy before"]  # they leave the logits alone
    assert m["ID percentile after"] == m["ID percentile before"]


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
    a = ev.evaluate(Setting("ash-s", {"p": 90})).to_dict()
    b = ev.evaluate(Setting("ash-p", {"p": 60})).to_dict()
    aurocs = [m.value for m in at.metric if m.label == "avg AUROC"]
    assert aurocs == [f"{100 * a['average']['auroc']:.2f}%", f"{100 * b['average']['auroc']:.2f}%"]
    at.slider(key="bp").set_value(80).run()
    ok(at)
    assert at.query_params["bp"] == "80"
    assert "B: p = 80 keeps k = 6 of D = 32 units" in texts(at, "caption")  # k beside B's p
    at.selectbox(key="bmethod").set_value("react").run()
    assert at.radio(key="bthreshold").disabled
    assert at.slider(key="bp").value == 90  # B's method starts at its own default p too
    assert charts(at) == 1


def test_compare_bundles_of_different_dimensions(bundles):
    at = run_app(bundles["main"], view="compare", cmode="bundle", bbundle=str(bundles["d48"]))
    assert not at.exception
    # a caveat (info), not a red error: the metrics below it are valid
    assert any("different feature dimensions" in e.value for e in at.info)
    assert not any("different feature dimensions" in e.value for e in at.error)
    assert len([m for m in at.metric if m.label == "avg AUROC"]) == 2  # still compared
    assert charts(at) == 1


def test_export_offers_report_tables_and_figures(bundles):
    at = ok(run_app(bundles["main"], view="export", method="ash-s", p=85))
    # the leaderboard's table files join once that view has computed it (another test may)
    keys = [b.key for b in at.get("download_button") if not b.key.startswith("dl_lb_")]
    assert keys == ["dl_report", "dl_report_pdf", "dl_csv", "dl_latex", "dl_markdown",
                    *(f"dl_fig_{i}" for i in range(4))]  # report (HTML, PDF), tables, figures
    codes = [c.value for c in at.code]
    assert any("method=ash-s" in c and "p=85" in c for c in codes)
    at.radio(key="export_preview").set_value("latex").run()
    assert any("\\begin{tabular}" in c.value for c in at.code)


# --------------------------------------------------------------------------- bad input


def test_unreadable_bundle_shows_an_error_and_the_app_keeps_working(bundles, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", os.pathsep.join([str(bundles["main"].parent),
                                                            str(tmp_path)]))
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
    assert any("is not available" in e.value for e in at.error)
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
    assert at.radio(key="engine").value == "auto"  # small bundle: exact numbers
    assert numbers_caption(at).startswith("Numbers: exact")
    at.radio(key="engine").set_value("cube").run()
    ok(at)
    assert at.query_params["engine"] == "cube"
    seen = []
    for p in (60, 75, 95):
        at.slider(key="p").set_value(p).run()
        ok(at)
        shown = float(metrics(at)["avg AUROC"].rstrip("%"))
        assert numbers_caption(at).startswith("Numbers: score cube")
        exact = 100 * ev.evaluate(Setting("ash-s", {"p": float(p)})).average["auroc"]
        assert shown == pytest.approx(exact, abs=0.01)
        seen.append(shown)
    assert len(set(seen)) == 3
    at.radio(key="engine").set_value("exact").run()
    ok(at)
    assert at.query_params["engine"] == "exact"
    assert numbers_caption(at).startswith("Numbers: exact")
    at.radio(key="engine").set_value("auto").run()
    assert "engine" not in at.query_params  # the default is implicit in the link
    exact = ev.evaluate(Setting("ash-s", {"p": 95.0})).to_dict()
    assert metrics(at)["avg AUROC"] == expected_metrics(exact)["avg AUROC"]


# --------------------------------------------------------------------------- engine choice


def test_a_cube_failure_is_shown_and_the_numbers_labelled_exact(bundles, ev, monkeypatch):
    # regression: any cube exception fell back to exact while the caption said "score cube"
    from dashboard import penultimate

    def broken(*args, **kwargs):
        raise OSError("disk full")

    # both the build and the lookup fail (another test may have built this cube already)
    monkeypatch.setattr(penultimate, "get_cube", broken)
    monkeypatch.setattr(penultimate, "point_result", broken)
    at = run_app(bundles["main"], method="ash-p", p=43, engine="cube")
    assert not at.exception and not at.error
    assert any("Score cube not used" in w.value and "disk full" in w.value for w in at.warning)
    assert numbers_caption(at).startswith("Numbers: exact")
    assert metrics(at) == {**metrics(at),
                           **expected_metrics(ev.evaluate(Setting("ash-p", {"p": 43.0})).to_dict())}


def _cube_shown(at: AppTest, tries: int = 200) -> AppTest:
    """Rerun (as the page's polling fragment does) until the numbers come from the cube."""
    import time

    for _ in range(tries):
        if numbers_caption(at).startswith("Numbers: score cube"):
            break
        time.sleep(0.05)
        at.run()
    return at


def _slow_build(monkeypatch, gate, calls, error: Exception | None = None):
    """Make the app's cube builds large (in the background) and wait for ``gate``."""
    from dashboard import penultimate

    real = penultimate.get_cube

    def gated(*args, **kwargs):
        calls.append(args[1:4])
        assert gate.wait(60)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    penultimate._builds.clear()
    monkeypatch.setattr(penultimate, "BACKGROUND_MIN_WORK", 0)
    monkeypatch.setattr(penultimate, "get_cube", gated)


def test_a_large_cube_builds_in_the_background_behind_exact_numbers(bundles, ev, monkeypatch):
    # the first page waited for the default method's cube (113 s at ImageNet scale)
    import threading

    gate, calls = threading.Event(), []
    _slow_build(monkeypatch, gate, calls)
    at = ok(run_app(bundles["main"], method="ash-p", p=44, engine="cube"))
    assert numbers_caption(at).startswith("Numbers: exact")  # labelled for what they are
    assert metrics(at) == {**metrics(at), **expected_metrics(ev.evaluate(Setting("ash-p", {"p": 44.0})).to_dict())}
    (bar,) = at.get("progress")
    assert "Preparing the score cube" in bar.proto.text
    other = ok(run_app(bundles["main"], method="ash-p", p=45, engine="cube"))  # 2nd session
    assert numbers_caption(other).startswith("Numbers: exact")
    gate.set()
    assert numbers_caption(_cube_shown(ok(at))).startswith("Numbers: score cube")
    assert numbers_caption(_cube_shown(ok(other))).startswith("Numbers: score cube")
    assert not at.get("progress") and len(calls) == 1  # one build, shared by both sessions
    cube = {k: float(v.rstrip("%")) for k, v in metrics(at).items() if v.endswith("%")}
    exact = {k: float(v.rstrip("%"))
             for k, v in expected_metrics(ev.evaluate(Setting("ash-p", {"p": 44.0})).to_dict()).items()}
    assert all(abs(cube[k] - v) < 0.1 for k, v in exact.items())


def test_a_failed_background_build_is_reported(bundles, ev, monkeypatch):
    import threading

    gate, calls = threading.Event(), []
    _slow_build(monkeypatch, gate, calls, error=OSError("disk full"))
    at = ok(run_app(bundles["main"], method="ash-b", p=41, engine="cube"))
    assert numbers_caption(at).startswith("Numbers: exact") and at.get("progress")
    gate.set()
    for _ in range(200):
        at.run()
        if at.warning or not at.get("progress"):
            break
    assert any("Score cube not used" in w.value and "disk full" in w.value for w in at.warning)
    assert numbers_caption(at).startswith("Numbers: exact") and not at.get("progress")
    assert metrics(at) == {**metrics(at), **expected_metrics(ev.evaluate(Setting("ash-b", {"p": 41.0})).to_dict())}


def test_verify_at_this_p_compares_the_cube_with_the_exact_numbers(bundles):
    at = ok(run_app(bundles["main"], method="ash-b", p=66, engine="cube"))
    assert numbers_caption(at).startswith("Numbers: score cube")
    at.button(key="verify").click().run()
    ok(at)
    (note,) = [i.value for i in at.info if "max |Δ|" in i.value]
    diff = float(note.split("max |Δ| = ")[1].split(" pp")[0])
    assert 0 <= diff < 0.01 and " over 14 numbers" in note  # 2 sets x 4, average 4, 2 acc
    exact = ok(run_app(bundles["main"], method="ash-b", p=66, engine="exact"))
    assert not any(b.key == "verify" for b in exact.button)  # nothing to verify


# --------------------------------------------------------------------------- pages and offers


def test_tradeoff_on_a_bundle_without_id_fit(bundles):
    # regression: the sweep ran ReAct, which needs id_fit, and the view stopped
    at = ok(run_app(bundles["nofit"], view="tradeoff", step=10))
    assert charts(at) == 2
    sweep_caption = next(c.value for c in at.caption if "settings of" in c.value)
    assert "react" not in sweep_caption and "ash-s" in sweep_caption


def test_methods_and_modes_a_bundle_cannot_serve_are_not_offered(bundles):
    # regression: react and global were offered on a bundle without id_fit
    at = ok(run_app(bundles["nofit"]))
    assert "react" not in at.selectbox(key="method").options
    assert at.radio(key="threshold").options == ["local"]
    assert "method react" in texts(at, "caption") and "threshold global" in texts(at, "caption")
    at = ok(run_app(bundles["nofit"], method="react", threshold="global", view="inspector"))
    assert at.selectbox(key="method").value == "ash-s"
    assert "react is not available for this bundle" in texts(at, "warning")
    full = ok(run_app(bundles["main"]))
    assert "react" in full.selectbox(key="method").options
    assert full.radio(key="threshold").options == ["local", "global"]


def test_compare_shows_a_when_b_cannot_serve_the_setting(bundles):
    # regression: one failing side replaced the whole page with errors
    at = run_app(bundles["main"], method="ash-b", threshold="global", view="compare",
                 cmode="bundle", bbundle=str(bundles["nofit"]))
    assert not at.exception
    assert len([m for m in at.metric if m.label == "avg AUROC"]) == 1  # A is shown
    err = texts(at, "error")
    assert err.startswith("B cannot be shown") and "no id_fit split" in err


def test_compare_two_bundles_on_their_common_ood_sets(bundles):
    # regression: averages over different OOD lists were shown side by side
    at = ok(run_app(bundles["main"], view="compare", cmode="bundle",
                    bbundle=str(bundles["other"])))
    assert "over the 1 OOD set(s) both bundles have: far" in texts(at, "info")
    assert [len(d.value) for d in at.dataframe] == [2, 2]  # far + Average, each side
    at = ok(run_app(bundles["main"], view="compare", cmode="bundle",
                    bbundle=str(bundles["lonely"])))
    assert "no OOD set in common" in texts(at, "warning")


def test_switching_method_starts_at_its_declared_default_p(bundles):
    # regression: ASH-S@57 -> ReAct showed ReAct at p = 57
    at = ok(run_app(bundles["main"], method="ash-s", p=57))
    at.selectbox(key="method").set_value("react").run()
    ok(at)
    assert at.slider(key="p").value == 90 and at.query_params["p"] == "90"
    at.selectbox(key="method").set_value("scale").run()
    assert at.slider(key="p").value == 85
    at.selectbox(key="method").set_value("ash-b").run()
    assert at.slider(key="p").value == 65
    linked = ok(run_app(bundles["main"], method="react", p=57))
    assert linked.slider(key="p").value == 57  # an explicit p in a link is kept


def test_p_shows_the_kept_count_and_repeated_steps(bundles):
    # regression: on narrow layers neighbouring p gave the same numbers unexplained
    at = ok(run_app(bundles["main"], method="ash-s", p=65))  # D = 32: k = 11 for p = 65, 66
    caption = texts(at, "caption")
    assert "p = 65 keeps k = 11 of D = 32 units" in caption
    assert "the same k as p = 66: no change in the numbers" in caption
    assert "of the ID activations are exactly 0" in caption


def test_mnist_pruning_only_zeros_is_said(bundles, monkeypatch):
    # regression: mnist_cnn at ASH-S@65 prunes only zero activations, silently
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(REPO / "cached_features"))
    at = ok(run_app(REPO / "cached_features" / "mnist_cnn", method="ash-s", p=65))
    caption = texts(at, "caption")
    assert "pruning removes only zeros in 100.0% of ID samples" in caption
    assert "80.3% of the ID activations are exactly 0" in caption


def test_inspector_neutral_energy_delta_headers_and_gallery(bundles):
    # regression: green up-arrow for energy, raw headers, no pictures of the worst
    at = ok(run_app(bundles["pics"], view="inspector", imode="fp"))
    (after,) = [m for m in at.metric if m.label == "energy after"]
    assert after.proto.color == after.proto.MetricColor.GRAY
    config = at.dataframe[0].proto.columns
    for header in ("Sample index", "Score (energy)", "Percentile within ID scores (%)"):
        assert header in config
    assert '"%.3f"' in config and '"%.1f"' in config
    assert len(at.get("image")) == 10 + 1  # the gallery (digits have thumbnails) + sample


def test_unknown_ood_names_in_a_link_are_reported(bundles):
    # regression: ?ood=far,foo dropped foo silently
    at = ok(run_app(bundles["main"], ood="far,foo"))
    assert "ignored unknown OOD set(s): 'foo'" in texts(at, "warning")
    assert at.multiselect(key="ood").value == ["far"]


def test_opening_another_bundle_starts_from_its_own_ood_sets(bundles):
    # regression: the previous bundle's selection was kept where names overlapped
    at = ok(run_app(bundles["main"], ood="far"))
    at.text_input(key="bundle_path").input(str(bundles["other"])).run()
    ok(at)
    assert at.multiselect(key="ood").value == ["far", "other"]


# --------------------------------------------------------------------------- hostile links


@pytest.mark.parametrize("path", ["/etc", "/etc/passwd", "~", "/does/not/exist", "..",
                                  "cached_features/../../shared"])
def test_links_cannot_open_or_probe_paths_outside_the_bundle_roots(bundles, path):
    # regression: ?bundle=/etc was opened and said whether paths exist
    at = run_app(path)
    assert not at.exception
    shown = texts(at)
    assert "is not available" in shown
    for leak in ("is a file", "does not exist", "not a directory", "manifest.json"):
        assert leak not in shown


def test_a_cube_is_never_written_into_a_bundle_outside_the_roots(bundles, tmp_path):
    import shutil

    outside = shutil.copytree(bundles["main"], tmp_path / "outside",
                              ignore=shutil.ignore_patterns(".cube_cache"))
    at = run_app(outside, engine="cube", method="ash-s", p=70)
    assert not at.exception and any("is not available" in e.value for e in at.error)
    assert not (outside / ".cube_cache").exists()


def test_bundle_supplied_strings_are_plain_text(bundles):
    # regression: a manifest name "![x](http://...)" rendered an outside image
    for view, extra in (("overview", {}), ("compare", {"cmode": "bundle",
                                                       "bbundle": str(bundles["main"])})):
        at = ok(run_app(bundles["evil"], view=view, **extra))
        raw = "\n".join(e.value for k in ("markdown", "caption", "subheader", "error",
                                          "warning", "info") for e in at.get(k))
        assert "![x](http" not in raw
        assert EVIL in texts(at)  # shown, literally


def test_an_overlong_url_parameter_is_ignored_with_a_note(bundles):
    # regression: a 100k-character method= never rendered
    at = ok(run_app(bundles["main"], method="x" * 100_000, ood=",".join(["far"] * 70)))
    assert at.selectbox(key="method").value == "ash-s"
    notes = texts(at, "warning")
    assert "longer than 256 characters" in notes and len(notes) < 2000
    assert metrics(at)["avg AUROC"].endswith("%")


@pytest.mark.parametrize(("view", "extra"), [
    ("overview", {}), ("distributions", {}), ("curves", {}), ("tradeoff", {"step": 10}),
    ("inspector", {"iset": "far", "idx": 2}), ("compare", {"cmode": "setting"}),
    ("compare", {"cmode": "methods", "cmethods": "ash-s,none"})])
def test_every_figure_exports_png_svg_and_its_data(bundles, view, extra):
    # regression: only 4 figures (on the Export page) could be exported
    at = ok(run_app(bundles["main"], view=view, method="ash-s", p=80, engine="exact", **extra))
    keys = [b.key for b in at.get("download_button")]
    assert charts(at) >= 1
    for fmt in ("png", "svg", "csv"):
        assert len([k for k in keys if k.endswith(f"_dl_{fmt}")]) == charts(at), (fmt, keys)


def test_inspector_shows_a_score_methods_own_score_and_one_kept_count(bundles, ev):
    # regression: for KNN the cards showed the energy of the logits as its score, and
    # "kept" counted non-zero survivors while the caption above said k
    at = ok(run_app(bundles["main"], view="inspector", method="knn", iset="far", idx=3,
                    engine="exact"))
    knn = ev.evaluate(Setting("knn").validated())
    m = metrics(at)
    assert m["knn after"] == f"{float(knn.ood_scores['far'][3]):.4g}"
    assert m["knn before"] == m["knn after"]  # KNN does not shape
    assert "energy before" in m  # still there, said to be the logits' energy, not the score
    at = ok(run_app(bundles["main"], view="inspector", method="ash-s", p=75, iset="far",
                    idx=3, engine="exact"))
    k = kept_count(ev.bundle.dim, 75)
    caption = texts(at, "caption")
    assert f"{k} of {ev.bundle.dim} units kept (kept: the k = {k} of D = {ev.bundle.dim}" \
        in caption
    assert f"p = 75 keeps k = {k} of D = {ev.bundle.dim} units" in caption  # the same k


def test_across_bundles_heatmaps_and_gains_over_every_bundle(bundles):
    # every bundle under the app's root: method x bundle heatmaps and gains against none
    at = ok(run_app(bundles["main"], view="across"))
    assert charts(at) == 0  # computed only when asked: a minute or more on real bundles
    at.button(key="across_run").click().run()
    ok(at)
    assert charts(at) == 2
    table = at.dataframe[0].value
    names = set(table["bundle"])
    assert {"main", "d48"} <= names and {"near", "far", "all"} >= set(table["group"])
    main = table[(table["bundle"] == "main") & (table["method"] == "ash-s")]
    ev = Evaluator(load_bundle(bundles["main"]), warn=False)
    ref = ev.evaluate(Setting("ash-s", {"p": 65.0}))
    got = main[main["group"] == "all"]["auroc"].iloc[0]
    assert got == pytest.approx(100 * ref.average["auroc"], abs=1e-9)  # the CLI's numbers
    caption = texts(at, "caption")
    assert "at its declared defaults" in caption and "Left out" in caption  # no id_fit etc.
    spec = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert spec["data"][0]["type"] == "heatmap" and spec["data"][0]["zmin"] < 0
    again = ok(run_app(bundles["main"], view="across"))  # kept: shown at once next time
    assert charts(again) == 2
