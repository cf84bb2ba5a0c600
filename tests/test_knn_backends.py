"""KNN's two exact backends, faiss's flat L2 index and torch, against the numpy reference
(tests/reference_features.py) and each other on data with ties, duplicate and all-zero rows
and k up to the whole bank; without faiss the torch path is used."""

from __future__ import annotations

import os

import numpy as np
import pytest
import reference_features as ref
from test_methods_features import f32, make_data, run

from ash_core.features import knn as neighbours

if neighbours.faiss_module() is None:  # a dependency: CI has it, a stale venv may not
    if os.environ.get("CI"):
        raise RuntimeError("CI must have faiss-cpu installed (a dependency in pyproject.toml)")
    pytest.skip("faiss-cpu is not installed (pip install -e .); CI has it",
                allow_module_level=True)


@pytest.fixture(params=["faiss", "torch"])
def knn_backend(request, monkeypatch):
    monkeypatch.setenv("ASH_KNN_BACKEND", request.param)
    assert neighbours.backend() == request.param
    return request.param


@pytest.mark.parametrize("k", [1, 5, 59, 60])
def test_each_backend_equals_the_reference(knn_backend, k):
    data = make_data(6)
    fit, _, _, _, x = data
    got = run("knn", {"k": k}, data)
    np.testing.assert_allclose(got, ref.knn(f32(fit), f32(x), k), atol=2e-6)


def test_backends_agree_to_float32_rounding(monkeypatch):
    rng = np.random.default_rng(7)
    fit = np.maximum(rng.normal(size=(3000, 64)), 0).astype(np.float32)
    fit[10:20] = fit[0]                               # a block of duplicates: tied distances
    x = np.maximum(rng.normal(size=(5000, 64)), 0).astype(np.float32)
    x[0] = 0.0
    data = (fit, None, np.zeros((3, 64)), np.zeros(3), x)
    out = {}
    for name in ("faiss", "torch"):
        monkeypatch.setenv("ASH_KNN_BACKEND", name)
        out[name] = run("knn", {"k": 50}, data, labels=False)
    np.testing.assert_allclose(out["faiss"], out["torch"], rtol=0, atol=1e-6)


def test_without_faiss_the_torch_path_is_used(monkeypatch):
    monkeypatch.setattr(neighbours, "faiss_module", lambda: None)
    monkeypatch.delenv("ASH_KNN_BACKEND", raising=False)
    assert neighbours.backend() == "torch"
    data = make_data(8)
    got = run("knn", {"k": 5}, data)
    np.testing.assert_allclose(got, ref.knn(f32(data[0]), f32(data[4]), 5), atol=2e-6)


def test_faiss_is_the_default_when_installed(monkeypatch):
    monkeypatch.delenv("ASH_KNN_BACKEND", raising=False)
    assert neighbours.backend() == "faiss"
