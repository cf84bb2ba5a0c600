"""Energy, MSP and max-logit scores, the score registry and accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch

from ash_core import accuracy, energy_score, get_score, list_scores, maxlogit_score, msp_score
from ash_core.errors import ParameterError


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
