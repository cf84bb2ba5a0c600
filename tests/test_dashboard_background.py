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


def test_the_overview_draws_the_intervals_made_in_the_background_bit_for_bit(
        bundle, monkeypatch):
    monkeypatch.setattr(uncertainty, "INLINE_CELLS", 0)  # every result in the background
    result = evaluate(load_bundle(bundle), Setting("ash-s", {"p": 87.0}))
    expected = result_ci(result, uncertainty.RESAMPLES, uncertainty.SEED)
    at = ok(run_app(bundle, method="ash-s", p=87))
    kept = [v for v in uncertainty._intervals().ready._data.values() if v == expected]
    assert kept, "the background intervals differ from result_ci's"
    table = at.dataframe[0].value.set_index("ood_set")
    assert table.loc["near", "auroc_ci"] == bracket(*expected.ood["near"]["auroc"])
    assert f"AUROC {bracket(*expected.average['auroc'])}" in texts(at, "caption")
    assert "computing" not in texts(at, "caption")


class _Slot:
    def __init__(self):
        self.lines = []

    def caption(self, text):
        self.lines.append(text)


def test_a_page_waits_for_a_background_value_redrawing_its_slot_meanwhile(monkeypatch):
    from dashboard.views import common

    monkeypatch.setattr(common, "AWAIT_EVERY_S", 0.001)
    answers, slot = iter([None, None, None, "done"]), _Slot()
    assert common.await_value(lambda: next(answers), slot, "waiting") == "done"
    # each look redraws the slot: where Streamlit may stop the run for a newer move
    assert len(slot.lines) == 3 and all(t.startswith("waiting ...") for t in slot.lines)
    monkeypatch.setattr(common, "AWAIT_AT_MOST_S", 0.0)
    slot = _Slot()
    assert common.await_value(lambda: None, slot, "waiting") is None
    assert "not ready after" in slot.lines[-1]
