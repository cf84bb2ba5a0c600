"""Where a setting gains and where it loses: per OOD set and per near/far group, so an
average never hides a regression (``ash_core.reports.gains``)."""

from __future__ import annotations

import pytest

from ash_core.engine.result import EvalResult
from ash_core.maths.metrics import OODMetrics
from ash_core.reports.gains import gain_sentences, gains_frame, groups_text
from ash_core.setting import Setting


def _result(method: str, aurocs: dict[str, float]) -> EvalResult:
    ood = {n: OODMetrics(fpr95=1 - a, auroc=a, aupr_in=a, aupr_out=a) for n, a in aurocs.items()}
    return EvalResult("b", Setting(method, {"p": 90} if method != "none" else {}),
                      {"shaped": 0.8, "unshaped": 0.81}, ood,
                      groups={"near": ("tin",), "far": ("noise", "dtd")})


@pytest.fixture
def pair():
    # the shape of ASH-S@90 on cifar10_resnet20: far-OOD noise up, near-OOD down
    base = _result("none", {"tin": 0.767, "noise": 0.670, "dtd": 0.787})
    shaped = _result("ash-s", {"tin": 0.441, "noise": 0.987, "dtd": 0.789})
    return shaped, base


def test_gains_per_set_and_group(pair):
    df = gains_frame(*pair)
    rows = {(r.kind, r.name): r for r in df.itertuples(index=False)}
    assert rows[("set", "tin")].verdict == "loss"
    assert rows[("set", "noise")].verdict == "gain"
    assert rows[("set", "dtd")].verdict == "unchanged"  # +0.2 pp is within 0.5 pp
    assert rows[("group", "near")].delta == pytest.approx(0.441 - 0.767)
    assert rows[("group", "far")].before == pytest.approx((0.670 + 0.787) / 2)
    assert rows[("group", "far")].sets == "noise, dtd"
    assert list(df["kind"]) == ["set"] * 3 + ["group"] * 2 + ["average"]
    # FPR95: lower is better, so a higher FPR95 is a loss
    fpr = gains_frame(*pair, metric="fpr95").set_index("name")
    assert fpr.loc["tin", "verdict"] == "loss" and fpr.loc["noise", "verdict"] == "gain"
    with pytest.raises(ValueError, match="unknown metric"):
        gains_frame(*pair, metric="accuracy")


def test_sentences_name_the_loss_the_average_hides(pair):
    text = " ".join(gain_sentences(*pair, "ash-s p=90"))
    assert "ash-s p=90 gains AUROC on 1 of 3 OOD set(s): noise 67.0% to 98.7% (+31.7 pp)" in text
    assert "loses AUROC on 1 of 3 OOD set(s): tin 76.7% to 44.1% (-32.6 pp)" in text
    assert "near-OOD (tin) loses: 76.7% to 44.1% (-32.6 pp)" in text
    assert "far-OOD (noise, dtd) gains" in text
    none = " ".join(gain_sentences(pair[1], pair[1], "none"))
    assert "gains AUROC on none of the 3" in none and "loses AUROC on none of the 3" in none
    assert groups_text({"near": ("a",), "far": ("b", "c")}) == "near: a; far: b, c"
