"""Values made in the background beside a page's numbers (``dashboard.background``), and
the Overview drawing its numbers before their bootstrap intervals: the intervals, once
there, are the library's bit for bit."""

from __future__ import annotations

import threading

import pytest
from conftest import make_synthetic_bundle
from test_dashboard_app import ok, run_app, texts

from ash_core import Setting, evaluate, load_bundle
from ash_core.reports.intervals import bracket, result_ci
from dashboard import uncertainty
from dashboard.background import Latest


def _until(cond, seconds: float = 60.0) -> None:
    done = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError("condition not met in time")


def test_a_request_is_made_once_in_the_background_and_kept():
    jobs, calls = Latest(4), []
    jobs.request("a", lambda: calls.append("a") or 41)
    _until(lambda: jobs.get("a") is not None)
    jobs.request("a", lambda: calls.append("again") or 0)  # ready: not made again
    assert jobs.value("a", lambda: 0) == 41 and calls == ["a"]


def test_a_newer_request_replaces_one_that_has_not_started():
    jobs, gate, made = Latest(4), threading.Event(), []
    jobs.request("slow", lambda: gate.wait(30) and made.append("slow") or 1)
    _until(lambda: jobs.pending("slow") and jobs._running == "slow")
    jobs.request("b", lambda: made.append("b") or 2)
    jobs.request("c", lambda: made.append("c") or 3)  # b never started: replaced
    assert jobs.pending("c") and not jobs.pending("b")
    gate.set()
    _until(lambda: jobs.get("c") is not None)
    assert made == ["slow", "c"] and jobs.get("b") is None


def test_a_failure_is_kept_and_raised_where_the_value_is_needed():
    jobs = Latest(4)
    jobs.request("bad", lambda: 1 / 0)
    _until(lambda: jobs.get("bad") is not None)
    assert isinstance(jobs.get("bad"), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        jobs.value("bad", lambda: 0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg_bundles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_BUNDLE_ROOTS", str(root))
        yield make_synthetic_bundle(root / "main")


def test_the_overview_shows_its_numbers_before_the_intervals_then_the_same_intervals(
        bundle, monkeypatch):
    monkeypatch.setattr(uncertainty, "INLINE_CELLS", 0)  # every result in the background
    result = evaluate(load_bundle(bundle), Setting("ash-s", {"p": 87.0}))
    expected = result_ci(result, uncertainty.RESAMPLES, uncertainty.SEED)
    at = ok(run_app(bundle, method="ash-s", p=87))
    assert "computing (200 resamples in the background)" in texts(at, "caption")
    assert at.metric[0].value  # the numbers are there already
    assert "auroc_ci" not in at.dataframe[0].value.columns

    def ready() -> bool:
        return any(isinstance(v, type(expected)) and v.average == expected.average
                   for v in uncertainty._intervals().ready._data.values())

    _until(ready)
    at.run()
    ok(at)
    table = at.dataframe[0].value.set_index("ood_set")
    # bit for bit: the same BootstrapCI as the library's blocking call
    kept = [v for v in uncertainty._intervals().ready._data.values() if v == expected]
    assert kept, "the background intervals differ from result_ci's"
    assert table.loc["near", "auroc_ci"] == bracket(*expected.ood["near"]["auroc"])
    assert "computing" not in texts(at, "caption")
