"""Energy, MSP and max-logit scores, the score registry and accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch

from ash_core import (
    accuracy,
    energy_score,
    get_score,
    list_scores,
    maxlogit_score,
    msp_score,
)
from ash_core.errors import ParameterError
from ash_core.maths.scores import gen_score, temperature_msp_score


def logits(seed: int = 0, n: int = 20, c: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 4


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 1000.0])
def test_energy_matches_reference(temperature):
    z = logits(1)
    out = energy_score(z, temperature)
    assert out.shape == (20,) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref.energy(z.numpy(), temperature), rtol=1e-5)


def test_energy_default_temperature_is_one_and_is_logsumexp():
    z = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = torch.tensor([np.log(2.0), 2.0 + np.log1p(np.exp(-1.0))], dtype=torch.float32)
    torch.testing.assert_close(energy_score(z), expected)


def test_energy_is_stable_for_huge_logits():
    z = torch.tensor([[1000.0, 999.0], [-1000.0, -1000.0]])
    out = energy_score(z)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy(), ref.energy(z.numpy()), rtol=1e-6)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan")])
def test_energy_rejects_bad_temperature(temperature):
    with pytest.raises(ParameterError, match="temperature must be > 0"):
        energy_score(logits(), temperature)


def test_msp_and_maxlogit_match_reference():
    z = logits(2)
    np.testing.assert_allclose(msp_score(z).numpy(), ref.msp(z.numpy()), rtol=1e-5)
    np.testing.assert_allclose(maxlogit_score(z).numpy(), ref.maxlogit(z.numpy()), rtol=0)
    assert bool(((msp_score(z) > 0) & (msp_score(z) <= 1)).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scores_compute_in_at_least_fp32(dtype):
    z = logits(3).to(dtype)
    for name in list_scores():
        out = get_score(name)(z)
        assert out.dtype in (torch.float32, torch.float64)
        torch.testing.assert_close(out, get_score(name)(z.float()))


def test_msp_does_not_saturate_at_float32_resolution():
    # top-2 gaps of 18 and 25: float32 softmax rounds both to exactly 1.0 (a tie that
    # changes AUROC/FPR95); the two samples must still rank correctly.
    z = torch.tensor([[18.0, 0.0, 0.0], [25.0, 0.0, 0.0]])
    assert bool((torch.softmax(z, 1).amax(1) == 1.0).all())  # the float32 pitfall
    out = msp_score(z)
    assert float(out[1]) > float(out[0])
    np.testing.assert_allclose(out.numpy(), ref.msp(z.numpy()), rtol=1e-12)


def test_higher_score_means_more_in_distribution():
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    unsure = torch.tensor([[1.0, 1.0, 1.0]])
    for name in list_scores():
        fn = get_score(name)
        assert float(fn(confident)) > float(fn(unsure)), name


def test_score_registry():
    assert list_scores() == ["energy", "msp", "maxlogit"]
    assert get_score("energy") is energy_score
    assert get_score("msp") is msp_score
    assert get_score("maxlogit") is maxlogit_score
    with pytest.raises(ParameterError, match=r"unknown score 'odin'.*energy, msp, maxlogit"):
        get_score("odin")


def test_accuracy():
    z = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert accuracy(z, torch.tensor([0, 1, 1, 1])) == 0.75
    assert accuracy(z, torch.tensor([0, 1, 0, 1], dtype=torch.int32)) == 1.0
    with pytest.raises(ParameterError, match="empty split"):
        accuracy(torch.empty(0, 2), torch.empty(0, dtype=torch.long))


# --------------------------------------------------------------------------- temperature, GEN


@pytest.mark.parametrize("t", [0.5, 1.0, 3.0, 1000.0])
def test_temperature_msp_matches_reference(t):
    z = logits(4)
    out = temperature_msp_score(z, t)
    np.testing.assert_allclose(out.numpy(), ref.temperature_msp(z.numpy(), t), rtol=1e-12)
    if t == 1.0:
        torch.testing.assert_close(out, msp_score(z))


@pytest.mark.parametrize(("gamma", "m"), [(0.1, 100), (0.1, 3), (1.0, 1), (2.0, 7), (0.01, 5)])
def test_gen_matches_reference(gamma, m):
    z = logits(5)
    out = gen_score(z, gamma, m)
    np.testing.assert_allclose(out.numpy(), ref.gen(z.numpy(), gamma, m), rtol=1e-10)


def test_gen_by_hand_and_direction():
    # p = (0.5, 0.5): each term 0.5^g * 0.5^g; gamma = 1 -> -(0.25 + 0.25)
    z = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    out = gen_score(z, 1.0, 100)
    assert out[0].item() == pytest.approx(-0.5)
    assert out[1] > out[0]  # the confident row is more ID


@pytest.mark.parametrize(("fn", "kwargs"), [(temperature_msp_score, {"temperature": 0.0}),
                                             (gen_score, {"gamma": 0.0}),
                                             (gen_score, {"m": 0})])
def test_logit_scores_refuse_bad_parameters(fn, kwargs):
    with pytest.raises(ParameterError):
        fn(logits(), **kwargs)


@pytest.mark.parametrize(("method", "params", "ref_score"), [
    ("gen", {"gamma": 0.5, "M": 3}, lambda z: ref.gen(z, 0.5, 3)),
    ("temp-scaling", {"T": 2.5}, lambda z: ref.temperature_msp(z, 2.5)),
])
def test_logit_methods_evaluate_like_the_reference(synthetic_bundle, method, params, ref_score):
    from ash_core import Setting, evaluate, load_bundle, ood_metrics

    b = load_bundle(synthetic_bundle)
    w, bias = b.head_weight.numpy().astype(np.float64), b.head_bias.numpy().astype(np.float64)

    def head(split):
        return np.asarray(split.features, dtype=np.float64) @ w.T + bias

    r = evaluate(b, Setting(method, params))
    assert r.score == method and r.params == {k: float(v) for k, v in params.items()}
    id_scores = ref_score(head(b.id_split))
    np.testing.assert_allclose(r.id_scores, id_scores, rtol=1e-4, atol=1e-6)
    for s in b.ood_splits:
        want = ood_metrics(id_scores, ref_score(head(s)))
        for k in ("auroc", "fpr95"):
            assert r.ood[s.name][k] == pytest.approx(want[k], abs=2 / len(id_scores)), k
    assert r.id_accuracy["shaped"] == r.id_accuracy["unshaped"]


def test_a_logit_method_is_its_own_score(synthetic_bundle):
    from ash_core import Evaluator, Setting, load_bundle

    assert Setting("gen", {}, "local", "msp").validated().score == "gen"
    assert Setting("gen").validated().label(detail=True).endswith(
        "score=gen, FPR convention=id (ID positive)")
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    assert ev.evaluate(Setting("gen", {}, "local", "msp")).to_dict() == ev.evaluate(Setting("gen")).to_dict()
    assert ev.evaluate(Setting("gen")).ood != ev.evaluate(Setting("none", {}, "local", "msp")).ood  # GEN, not MSP
