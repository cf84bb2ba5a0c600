"""Tolerances for "equal up to float32 rounding" between the score cube and exact evaluation.

Scores: relative 1e-5, with an absolute floor of 4e-6 x the split's largest |score| (the
fp32 resolution of the logits themselves, for scores near 0). Metrics "within one
sample": rounding may reorder scores that are within rounding of each other (MSP near 1
at small p has many), so a metric may move by at most what one sample moved anywhere in
the ranking could cause: FPR95 by 1/n of the negative set, AUROC and the APs by
1/max(n_id, n_ood). Accuracies and fitted thresholds: exact.
"""

from __future__ import annotations

import numpy as np


def assert_scores_close(got: np.ndarray, want: np.ndarray, what: object = "") -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    floor = 4e-6 * max(1.0, float(np.abs(want).max(initial=0.0)))
    bad = np.abs(got - want) > 1e-5 * np.abs(want) + floor
    assert not bad.any(), (what, got[bad][:5], want[bad][:5])


def metric_tolerance(metric: str, n_id: int, n_ood: int, convention: str = "id") -> float:
    """How far a metric may move when rounding reorders near-tied scores (one sample)."""
    if metric == "fpr95":
        return 1.0 / (n_ood if convention == "id" else n_id) + 1e-12
    return 1.0 / max(n_id, n_ood) + 1e-12


def assert_metrics_close(got: dict, want: dict, n_id: int, n_ood: dict[str, int],
                         convention: str, what: object = "") -> None:
    """Per-set metrics dicts ``{set: {metric: value}}`` within ``metric_tolerance``."""
    assert set(got) == set(want), what
    for name, metrics in want.items():
        assert set(got[name]) == set(metrics), (what, name)
        for k, v in metrics.items():
            tol = metric_tolerance(k, n_id, n_ood[name], convention)
            assert abs(got[name][k] - v) <= tol, (what, name, k, got[name][k], v, tol)


def assert_sweep_frames_close(got, want, n_id: int, n_ood: dict[str, int],
                              convention: str = "id") -> None:
    """Sweep frames: every ``{set}/{metric}`` cell (and ``average/...``) within
    ``metric_tolerance`` of the same cell, accuracies exactly."""
    assert list(got.columns) == list(want.columns)
    assert got["id_acc"].tolist() == want["id_acc"].tolist()
    assert got["id_acc_unshaped"].tolist() == want["id_acc_unshaped"].tolist()
    for col in (c for c in want.columns if "/" in c):
        name, metric = col.split("/")
        n = min(n_ood.values()) if name == "average" else n_ood[name]
        tol = metric_tolerance(metric, n_id, n, convention)
        diff = np.abs(got[col].to_numpy(float) - want[col].to_numpy(float))
        assert np.all(diff <= tol), (col, diff.max(), tol)
