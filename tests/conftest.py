"""Shared fixtures: a small synthetic bundle and the path to ../shared/data; the set-up
of a parallel run (pytest-xdist, ``-n 2`` in pyproject's addopts: see docs/testing.md)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ash_core import SplitData, write_bundle

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASH_SHARED_DATA", REPO.parent / "shared" / "data"))

#: set in each pytest-xdist worker ("gw0", "gw1", ...); absent in a serial run
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if XDIST_WORKER:
    # N workers on N cores: one intra-op thread each, or torch's (and BLAS's) thread pools
    # oversubscribe the cores and everything slows down several-fold. Only this process:
    # the environment is left alone, so a subprocess a test starts (the CLI, the dashboard
    # server, torchrun) keeps its own defaults, which some tests check.
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - sklearn always brings it
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the files marked ``slow`` first (browser, real-data extraction): the parallel
    run hands out whole files (``--dist loadfile``), so a long file started last would
    leave the other worker idle at the end. The order is stable otherwise."""
    def slow(item: pytest.Item) -> bool:
        return any(m.name == "slow" for m in item.iter_markers())

    files_slow = {item.path for item in items if slow(item)}
    items.sort(key=lambda item: item.path not in files_slow)


def shared_data_or_skip() -> Path:
    """../shared/data, or skip with a reason (it is always present in CI)."""
    if not (SHARED_DATA / "README.md").is_file():
        if os.environ.get("CI"):
            raise RuntimeError(f"CI must have the shared data at {SHARED_DATA}")
        pytest.skip(f"real data not found at {SHARED_DATA} (set ASH_SHARED_DATA); CI has it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_or_skip()


def make_synthetic_bundle(path: Path, n_id: int = 400, n_ood: int = 300, dim: int = 32,
                          classes: int = 5, seed: int = 0) -> Path:
    """A small post-ReLU bundle whose OOD sets are shifted, so metrics are non-trivial."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(classes, dim)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=classes).astype(np.float32)

    def feats(n: int, shift: float) -> np.ndarray:
        return np.maximum(rng.normal(shift, 1.0, size=(n, dim)), 0).astype(np.float32)

    id_feats = feats(n_id, 0.6)
    labels = (id_feats @ weight.T + bias).argmax(1)
    labels[: n_id // 10] = (labels[: n_id // 10] + 1) % classes  # some errors
    splits = [
        SplitData("id_test", "id", id_feats, labels),
        SplitData("id_train", "id_fit", feats(n_id, 0.6), rng.integers(0, classes, n_id)),
        SplitData("far", "ood", feats(n_ood, 0.0)),
        SplitData("near", "ood", feats(n_ood, 0.4)),
    ]
    # an "odin" variant (stand-in perturbed features, from a stream of its own so the
    # splits above are what they always were) on the evaluation splits, as extracted
    odin = np.random.default_rng(seed + 1)
    for s in (splits[0], splits[2], splits[3]):
        s.variants = {"odin": np.maximum(s.features + odin.normal(0.1, 0.2, s.features.shape),
                                         0).astype(np.float32)}
    return write_bundle(path, weight, bias, [f"class{i}" for i in range(classes)], splits,
                        {"model": {"name": "synthetic"}, "layer": {"name": "penultimate"}},
                        variants={"odin": {"temperature": 1000.0, "epsilon": 0.0014}})


@pytest.fixture(scope="session")
def synthetic_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "synthetic")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make any attempt to unpickle fail loudly: the loader must never need it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("ash_core tried to unpickle a file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
