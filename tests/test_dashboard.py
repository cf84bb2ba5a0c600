"""Dashboard logic without a running app: URL state, arguments, exports, the CLI launcher."""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ash_core import Evaluator, Setting, get_method, kept_count, list_methods, load_bundle
from ash_core.cli import build_parser
from ash_core.cli import dashboard as cli_dashboard
from ash_core.errors import BundleError
from ash_core.maths.stats import max_abs_difference, row_zero_counts, share_pruning_only_zeros
from ash_core.policy import ENGINES
from ash_core.reports.tables import evaluation_frame
from dashboard import cache, config, export, figures, offer
from dashboard.paths import BundlePolicy
from dashboard.state import ENGINE_HELP, MAX_PARAM_LEN, VIEWS, State, default_p, p_range
from dashboard.views.common import plain

REPO = Path(__file__).resolve().parents[1]


def test_state_round_trips_through_the_url():
    s = State(bundle="b", ood=("x", "y"), method="ash-b", p=72, threshold="global",
              score="msp", convention="ood", view="curves", iset="x", idx=4, imode="fp",
              step=10, cmode="bundle", bmethod="react", bp=95, bthreshold="local",
              bbundle="c")
    q = s.to_query()
    assert all(isinstance(v, str) for v in q.values())
    back, notes = State.from_query(q)
    assert back == s and notes == []
    short = State(bundle="b", p=80).to_query()
    assert set(short) == {"bundle", "method", "p", "view"}
    assert State.from_query(short)[0] == State(bundle="b", p=80)
    assert len(State(bundle="b").to_query(compact=False)) == len(fields(State)) - 1  # no ood


def test_state_rejects_bad_values_with_notes():
    s, notes = State.from_query({"method": "bogus", "p": "250", "threshold": "nope",
                                 "view": "x", "ood": "a,zz"}, ood_options=["a", "b"],
                                default_bundle="demo")
    assert s.method in list_methods() and s.p == 65 and s.view == "overview"
    assert s.bundle == "demo" and s.ood == ("a",)
    assert len(notes) == 5 and any("zz" in n for n in notes)


@pytest.mark.parametrize("bad", ["inf", "-inf", "1e999", "nan", "x"])
def test_state_ignores_non_finite_integers_in_the_url(bad):
    # regression: int(float("inf")) raised OverflowError, so ?p=inf crashed the page
    s, notes = State.from_query({"p": bad, "idx": bad, "bp": bad, "method": "ash-b"})
    assert (s.p, s.idx, s.bp) == (65, 0, 90)
    assert len(notes) == 3 and all(bad in n for n in notes)


def test_state_threshold_follows_the_method():
    s, _ = State.from_query({"method": "react", "threshold": "global"})
    assert s.threshold == "local"  # react has no global mode
    assert State(method="none").p_value is None and State(method="ash-p", p=3).p_value == 3.0
    assert State(method="ash-s", p=90).setting_label() == "ash-s p=90 local"
    assert set(VIEWS) >= {"overview", "distributions", "curves", "tradeoff", "inspector",
                          "compare", "export"}


def test_the_state_hands_out_one_setting():
    s = State(method="ash-s", p=60, score="msp", convention="ood", bmethod="react", bp=85)
    assert s.setting() == Setting("ash-s", {"p": 60.0}, "local", "msp", "ood")
    assert s.setting(p=72, score="energy") == Setting("ash-s", {"p": 72.0}, "local", "energy",
                                                     "ood")
    assert s.b_setting() == Setting("react", {"p": 85.0}, "local", "msp", "ood")
    assert State(method="none", p=90).setting().params == {}  # no p: none in the setting
    assert State(method="react", threshold="global").setting().threshold_mode == "local"
    # a Setting keys the page's memo; the caches key on its small JSON form
    assert hash(s.setting()) == hash(Setting("ash-s", {"p": 60}, "local", "msp", "ood"))
    key = cache.setting_key(s.setting())
    assert isinstance(key, str) and key == cache.setting_key(s.setting()) and len(key) < 200


def test_the_engine_choices_are_ash_cores():
    # one list of engines (ash_core.policy); the dashboard only adds their descriptions
    assert list(ENGINE_HELP) == list(ENGINES)
    assert State.from_query({"engine": "cube"})[0].engine == "cube"


def test_app_args_from_argv_and_env(tmp_path):
    a = config.parse_app_args(["b1", "b2", "--data-root", "/d", "--bundle-root", "/r1",
                               "--bundle-root", "/r2"], env={})
    assert a.bundles == ("b1", "b2") and a.data_root == "/d"
    assert a.bundle_roots == ("/r1", "/r2")
    e = config.parse_app_args([], env={config.ENV_BUNDLES: "x:y", config.ENV_DATA_ROOT: "/r",
                                       config.ENV_BUNDLE_ROOTS: "/a:/b"})
    assert e.bundles == ("x", "y") and e.data_root == "/r" and e.bundle_roots == ("/a", "/b")


def test_discover_bundles_lists_the_bundle_roots(tmp_path, monkeypatch, synthetic_bundle):
    import shutil

    (tmp_path / "mine").mkdir()
    shutil.copytree(synthetic_bundle, tmp_path / "mine" / "syn")
    (tmp_path / "mine" / "not_a_bundle").mkdir()
    monkeypatch.chdir(tmp_path)
    policy = BundlePolicy.from_args(config.AppArgs((), None, (str(tmp_path / "mine"),)))
    found = policy.discover(("given",))
    assert found[0] == "given" and "mine/syn" in found
    assert not any("not_a_bundle" in f for f in found)


def _policy(*roots: Path, bundles: tuple[str, ...] = ()) -> BundlePolicy:
    return BundlePolicy.from_args(config.AppArgs(bundles, None, tuple(map(str, roots))))


def test_path_policy_opens_only_given_bundles_and_those_under_the_roots(tmp_path,
                                                                         synthetic_bundle):
    # regression: ?bundle=/etc or ~ was opened and said whether paths exist
    root = tmp_path / "root"
    (root / "b").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    policy = _policy(root)
    assert policy.resolve(str(root / "b")) == str((root / "b").resolve())
    messages = set()
    for bad in ("/etc", "/etc/passwd", "~", "/does/not/exist", str(root / "escape"),
                str(root / "missing"), str(root / "b" / ".." / ".." / "elsewhere")):
        with pytest.raises(BundleError, match="is not available") as err:
            policy.resolve(bad)
        messages.add(re.sub(r"^bundle '.*' is not", "PATH", str(err.value)))
    assert len(messages) == 1  # missing and not allowed read the same
    # a given bundle is allowed by itself; by default its directory is a root too
    given = _policy(bundles=(str(synthetic_bundle),))
    assert given.resolve(str(synthetic_bundle)) == str(synthetic_bundle.resolve())
    assert synthetic_bundle.parent.resolve() in given.roots
    assert (REPO / "cached_features").resolve() in given.roots
    with pytest.raises(BundleError):
        given.resolve("/etc")


def test_plain_text_helper_disarms_markdown():
    # regression: bundle names rendered as markdown loaded outside images
    evil = "![x](http://evil.example/x.png) <img src=x> [link](http://e) :red[big] `c` *b*"
    out = plain(evil)
    assert re.search(r"(?<!\\)[\[\]()<>`*!_]", out) is None  # every one escaped
    assert out.replace("\\", "") == evil.replace("\n", " ")


def test_state_bounds_url_lengths_and_ood_count():
    # regression: a 100k-character method= never rendered
    s, notes = State.from_query({"method": "x" * 100_000, "p": "80", "bundle": "b" * 300})
    assert s.method == "ash-s" and s.p == 80 and s.bundle == ""
    assert len(notes) == 2 and all(len(n) < 200 for n in notes)
    assert all(f"longer than {MAX_PARAM_LEN}" in n for n in notes)
    many = ",".join(f"s{i}" for i in range(65))
    s, notes = State.from_query({"ood": many})
    assert s.ood is None and any("more than 64" in n for n in notes)


def test_state_p_starts_at_each_methods_declared_default_and_range():
    # regression: p was one number for all methods, range hard-coded 0..99
    for m in list_methods():
        spec = get_method(m)
        if spec.has_p:
            param = next(q for q in spec.params if q.name == "p")
            assert default_p(m) == round(param.default)
            assert p_range(m) == (int(np.ceil(param.low)), int(np.ceil(param.high)) - 1)
            assert State.from_query({"method": m})[0].p == default_p(m)
    assert default_p("react") == 90 and default_p("scale") == 85
    assert State.from_query({"method": "react", "p": "57"})[0].p == 57  # explicit p kept


def test_state_drops_unknown_ood_names_with_a_note():
    s = State(ood=("tinyimagenet", "foo"))
    assert s.drop_unknown_ood(["tinyimagenet", "dtd"]) == ["ignored unknown OOD set(s): 'foo'"]
    assert s.ood == ("tinyimagenet",)


def test_offer_hides_what_needs_an_id_fit_split(synthetic_bundle, tmp_path):
    from conftest import make_synthetic_bundle

    with_fit = load_bundle(synthetic_bundle)
    assert offer.methods_for(with_fit) == list_methods()
    assert offer.thresholds_for(with_fit, "ash-s") == ["local", "global"]
    assert offer.missing_caption(with_fit) == ""
    no_fit = load_bundle(_without_id_fit(make_synthetic_bundle(tmp_path / "b"), tmp_path))
    assert "react" not in offer.methods_for(no_fit) and "ash-s" in offer.methods_for(no_fit)
    assert offer.thresholds_for(no_fit, "ash-s") == ["local"]
    caption = offer.missing_caption(no_fit)
    assert "method react" in caption and "threshold global" in caption
    assert "threshold local" not in caption


def _without_id_fit(path: Path, tmp_path: Path) -> Path:
    import json

    from ash_core import SplitData, write_bundle

    b = load_bundle(path)
    splits = [SplitData(s.name, s.info.role, np.asarray(s.features), s.labels)
              for s in b.splits if s.info.role != "id_fit"]
    return write_bundle(tmp_path / "nofit", b.head_weight.numpy(), b.head_bias.numpy(),
                        b.classes, splits, json.loads(json.dumps({"model": {"name": "x"}})))


def test_p_caption_shows_k_repeated_steps_and_zero_only_pruning(synthetic_bundle):
    # regression: repeated numbers on narrow layers, zero-only pruning
    b = load_bundle(synthetic_bundle)  # D = 32
    counts = row_zero_counts(b.id_split.features)
    text = offer.p_caption(b, "ash-s", 60, "local", counts)
    assert f"k = {kept_count(32, 60)} of D = 32" in text
    assert "% of the ID activations are exactly 0" in text
    same = [p for p in range(1, 99) if kept_count(32, p) == kept_count(32, p - 1)]
    assert "the same k as p" in offer.p_caption(b, "ash-s", same[0], "local", counts)
    wide = SimpleNamespace(dim=200)  # D >= 100: every step of p changes k
    assert "the same k" not in offer.p_caption(wide, "ash-s", 60, "local", np.zeros(5))
    zeros = np.full(10, 20)  # 20 zeros of 32 per row: p with D - k <= 20 prunes only zeros
    assert "removes only zeros in 100.0%" in offer.p_caption(b, "ash-s", 60, "local", zeros)
    assert "removes only zeros" not in offer.p_caption(b, "ash-s", 90, "local", zeros)


def test_stats_zero_counts_and_differences():
    x = np.array([[0, 1, 0, 2], [3, 4, 5, 0]], dtype=np.float32)
    assert row_zero_counts(x).tolist() == [2, 1]
    assert share_pruning_only_zeros(np.array([2, 1]), 4, 50) == 0.5  # prunes 2 units
    assert share_pruning_only_zeros(np.array([2, 1]), 4, 25) == 1.0
    assert share_pruning_only_zeros(np.array([2, 1]), 4, 0) == 0.0
    d, n = max_abs_difference({"ood": {"a": {"auroc": 0.5}}, "average": {"auroc": 0.5}},
                              {"ood": {"a": {"auroc": 0.52}}, "average": {"auroc": 0.5}})
    assert (round(d, 6), n) == (0.02, 2)


def test_report_is_self_contained(synthetic_bundle):
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    r = ev.evaluate(Setting("ash-s", {"p": 80}))
    frame = evaluation_frame(r.to_dict(), ev.evaluate(Setting("none")).to_dict())
    fig = figures.overview_figure(frame, {}, "ash-s p=80", "id")
    html = export.build_report("Report <x>", {"method": "ash-s", "p": 80},
                               {"model": {"name": "synthetic"}}, {"Metrics": frame},
                               {"Overview": fig, "Again": fig}, link="?p=80")
    assert html.startswith("<!DOCTYPE html>") and "Report &lt;x&gt;" in html
    assert "<script src=\"http" not in html and "<script src=\"https" not in html
    assert html.count("Plotly.newPlot") == 2
    assert len(html) > 1_000_000  # plotly.js is embedded (once)
    assert f"{100 * r.average['auroc']:.2f}" in html
    assert "synthetic" in html and "?p=80" in html


def test_table_exports_reuse_the_cli_renderer():
    df = pd.DataFrame({"ood_set": ["a", "Average"], "auroc": [0.91234, 0.8], "fpr95": [0.1, 0.2]})
    csv = export.table_text(df, "csv")
    assert "0.91234" in csv
    md = export.table_text(df, "markdown", caption="cap")
    assert "| 91.23 |" in md and md.startswith("cap")
    tex = export.table_text(df, "latex")
    assert "\\begin{tabular}" in tex and "91.23" in tex
    with pytest.raises(ValueError):
        export.table_text(df, "xlsx")


def test_figure_bytes_renders_png_or_falls_back_to_html(monkeypatch):
    # fixed: the renderer branch accepted html as well, so it could not fail
    fig = figures.compare_figure(
        pd.DataFrame({"ood_set": ["a"], "auroc": [0.5], "fpr95": [0.5]}),
        pd.DataFrame({"ood_set": ["a"], "auroc": [0.6], "fpr95": [0.4]}), "A", "B", "id")
    monkeypatch.setattr(export, "renderer_available", lambda: False)
    data, mime, ext = export.figure_bytes(fig, "png")
    assert (mime, ext) == ("text/html", "html") and b"<html>" in data
    monkeypatch.setattr(export, "renderer_available", lambda: True)
    monkeypatch.setattr(export, "static_figure", lambda f, fmt: b"\x89PNG fake " + fmt.encode())
    assert export.figure_bytes(fig, "png") == (b"\x89PNG fake png", "image/png", "png")


def test_cli_dashboard_builds_the_streamlit_command():
    args = build_parser().parse_args(["dashboard", "b1", "b2", "--data-root", "/d",
                                      "--port", "8765"])
    assert args.func is cli_dashboard.run
    cmd = cli_dashboard.command(args)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboard/app.py")
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--client.toolbarMode") + 1] == "minimal"  # no Deploy button
    shipped = (Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    assert 'toolbarMode = "minimal"' in shipped  # `streamlit run dashboard/app.py` too
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--") + 1:] == ["b1", "b2", "--data-root", "/d"]
    default = cli_dashboard.command(argparse.Namespace(bundles=[], data_root=None, port=1,
                                                       address="127.0.0.1"))
    assert default[-1] == cli_dashboard.DEFAULT_BUNDLE
    roots = build_parser().parse_args(["dashboard", "b", "--bundle-root", "/r1",
                                       "--bundle-root", "/r2"])
    cmd = cli_dashboard.command(roots)
    assert cmd[cmd.index("--") + 1:] == ["b", "--bundle-root", "/r1", "--bundle-root", "/r2"]
    assert config.parse_app_args(cmd[cmd.index("--") + 1:], env={}).bundle_roots == \
        ("/r1", "/r2")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_no_streamlit_or_dashboard_import_anywhere_in_ash_core():
    files = sorted((REPO / "ash_core").rglob("*.py"))
    assert len(files) > 20
    offenders = {str(f.relative_to(REPO)): sorted(_imports(f) & {"streamlit", "dashboard"})
                 for f in files if _imports(f) & {"streamlit", "dashboard"}}
    assert offenders == {}
    # and at run time: importing every ash_core module loads neither
    modules = [".".join(f.relative_to(REPO).with_suffix("").parts) for f in files
               if f.name != "__main__.py"]
    code = ("import importlib, sys\n"
            f"for m in {[m.removesuffix('.__init__') for m in modules]!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('streamlit', 'dashboard')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_importing_the_dashboard_leaves_torch_threads_alone():
    # regression: services.py called torch.set_num_threads at import time
    code = ("import os, torch; os.environ['ASH_TORCH_THREADS'] = '1'; n = torch.get_num_threads()\n"
            "import dashboard.config, dashboard.cache, dashboard.replay, dashboard.plotdata\n"
            "assert torch.get_num_threads() == n, (torch.get_num_threads(), n)\n"
            "dashboard.config.apply_torch_threads(); assert torch.get_num_threads() == 1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                        "OMP_NUM_THREADS": "2"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_torch_threads_env_is_parsed_and_a_bad_value_ignored():
    # regression: a non-integer ASH_TORCH_THREADS crashed the dashboard at import
    assert config.torch_threads_from_env({}) is None
    assert config.torch_threads_from_env({"ASH_TORCH_THREADS": " 3 "}) == 3
    assert config.torch_threads_from_env({"ASH_TORCH_THREADS": "0"}) == 1
    with pytest.warns(UserWarning, match="ignoring ASH_TORCH_THREADS='four'"):
        assert config.torch_threads_from_env({"ASH_TORCH_THREADS": "four"}) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_streamlit_child(tmp_path):
    # regression: SIGTERM to `ash-explore dashboard` left Streamlit running
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-m", "ash_core.cli", "dashboard", "--port",
                               str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert parent.poll() is None, "the dashboard command exited early"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)
        children = _children(parent.pid)
        assert children, "streamlit runs as a child of the command"
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(timeout=20)
        deadline = time.monotonic() + 5
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "the Streamlit child is still running"
        assert code == 128 + signal.SIGTERM  # exited by itself, after the child
    finally:  # the command and its child share the session started above
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)


def test_engine_choice_is_automatic_with_an_override(synthetic_bundle, monkeypatch,
                                                     tmp_path):
    import shutil

    from ash_core import policy
    from dashboard import replay

    monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / "cubes"))
    b = load_bundle(shutil.copytree(synthetic_bundle, tmp_path / "b"))

    def engine(method, p, override="auto"):
        rep = replay.replay(b, ["far", "near"], Setting(method, {} if p is None else {"p": p}),
                            override)
        return rep.engine, rep.note

    assert engine("ash-s", 60) == ("exact", "")  # small: one exact pass is cheap
    assert engine("ash-s", 60, "cube") == ("cube", "")
    monkeypatch.setattr(policy, "EXACT_MAX_WORK", 0)  # as if the bundle were large
    assert engine("ash-s", 61) == ("cube", "")
    assert engine("ash-s", 62, "exact") == ("exact", "")
    for method, p in (("none", None), ("ash-s", 60.5)):  # the cube cannot serve these
        used, note = engine(method, p, "cube")
        assert used == "exact" and "the score cube cannot serve this setting" in note


def test_the_baseline_reuses_the_unshaped_logits(synthetic_bundle, monkeypatch):
    # regression: "none" shaped a copy of the features and ran the head again, so every
    # page's "no shaping" baseline cost one more dense pass (4 s at ImageNet scale)
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    expected = ev.evaluate(Setting("none")).to_dict()
    monkeypatch.setattr(Evaluator, "logits",
                        lambda *a, **k: pytest.fail("the unshaped logits were recomputed"))
    assert ev.evaluate(Setting("none")).to_dict() == expected


def test_a_cube_build_reports_progress(synthetic_bundle, tmp_path, monkeypatch):
    import shutil

    from dashboard import replay

    monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / "cubes"))
    b = load_bundle(shutil.copytree(synthetic_bundle, tmp_path / "b"))
    calls: list[tuple[int, int]] = []
    rep = replay.replay(b, ["far", "near"], Setting("ash-p", {"p": 50}), "cube",
                        progress=lambda done, total: calls.append((done, total)))
    assert rep.engine == "cube" and rep.note == ""
    assert calls and calls[-1][0] == calls[-1][1] == 400 + 300 + 300  # every scored row
    exact = Evaluator(b, ["far", "near"], warn=False).evaluate(Setting("ash-p", {"p": 50.0})).to_dict()
    assert max_abs_difference(rep.result.to_dict(), exact)[0] < 1e-4


def test_context_result_follows_p_across_fragment_reruns(synthetic_bundle, monkeypatch):
    # regression: the result was memoised on the Context, which a fragment rerun (p moved)
    # reuses, so the numbers stayed at the old p in the browser
    from dashboard.views import common

    calls = []
    monkeypatch.setattr(common.replay, "replay", lambda bundle, ood, setting, *a:
                        calls.append(setting.p) or SimpleNamespace(preparing=None))
    ctx = common.Context(state=State(method="ash-s", p=60), args=config.AppArgs((), None),
                         bundles=[], policy=_policy(), bundle=load_bundle(synthetic_bundle),
                         ood=["far"])
    first = ctx.replay()
    assert ctx.replay() is first and calls == [60.0]  # once per setting
    ctx.state.p = 70
    assert ctx.replay() is not first and calls == [60.0, 70.0]


def test_inspector_class_names_read_wordnet_ids_through_the_data_root(tmp_path):
    # regression: Tiny-ImageNet classes showed as WordNet ids although words.txt is there
    from types import SimpleNamespace

    from dashboard import inspection
    (tmp_path / "tinyimagenet" / "val" / "images").mkdir(parents=True)
    (tmp_path / "tinyimagenet" / "words.txt").write_text("n01443537\tgoldfish, Carassius\n")
    bundle = SimpleNamespace(classes=["n01443537"], manifest={"splits": [
        {"role": "id", "data": {"path": "tinyimagenet/val/images"}},
        {"role": "ood", "data": {"path": "elsewhere"}}]})
    names, used = inspection.class_names(bundle, str(tmp_path))
    assert names == ["goldfish"] and used.endswith("tinyimagenet/words.txt")
    assert inspection.class_names(bundle, None) == (["n01443537"], None)
