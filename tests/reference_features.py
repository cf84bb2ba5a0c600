"""Independent plain-numpy references of the scores on features (float64, loops where the
library vectorises, other decompositions where it decomposes: SVD instead of eigh,
``np.linalg.pinv`` instead of an eigenvalue cut, explicit differences instead of the
quadratic expansion). Every score: higher = more in-distribution.

Formulas as cited in ``ash_core/detectors`` (OpenOOD's postprocessors and the papers).
"""

from __future__ import annotations

import numpy as np

CHUNK = 1024


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def knn(fit: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Minus the k-th smallest squared L2 distance between x / (||x|| + 1e-10) and the
    equally normalised id_fit rows (Sun et al., 2022; OpenOOD's knn postprocessor)."""
    def norm(a):
        a = _f64(a)
        return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-10)

    bank, q = norm(fit), norm(x)
    out = np.empty(len(q))
    for i in range(0, len(q), CHUNK):
        c = q[i:i + CHUNK]
        d2 = (c ** 2).sum(1)[:, None] - 2 * c @ bank.T + (bank ** 2).sum(1)[None, :]
        out[i:i + CHUNK] = -np.maximum(np.partition(d2, k - 1, axis=1)[:, k - 1], 0.0)
    return out


def _class_gaussian(fit: np.ndarray, labels: np.ndarray):
    fit = _f64(fit)
    classes = [c for c in range(labels.max() + 1) if (labels == c).any()]
    means = np.stack([fit[labels == c].mean(0) for c in classes])
    centred = np.concatenate([fit[labels == c] - means[j] for j, c in enumerate(classes)])
    cov = np.cov(centred, rowvar=False, bias=True) if len(centred) > 1 else \
        np.zeros((fit.shape[1], fit.shape[1]))
    return means, np.linalg.pinv(np.atleast_2d(cov), hermitian=True)


def _maha(x: np.ndarray, mean: np.ndarray, prec: np.ndarray) -> np.ndarray:
    d = x - mean
    # (d P) . d row by row: the same sum as einsum("nd,de,ne->n"), whose unoptimised
    # three-operand loop took ~5 s per call on the demo bundles' 70k rows
    return ((d @ prec) * d).sum(1)


def mahalanobis(fit: np.ndarray, labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    """max over classes of minus the Mahalanobis distance, class means and one covariance
    of class-centred id_fit (Lee et al., 2018; OpenOOD's mds postprocessor)."""
    means, prec = _class_gaussian(fit, labels)
    x = _f64(x)
    return np.max([-_maha(x, m, prec) for m in means], axis=0)


def rmds(fit: np.ndarray, labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    """max over classes of -(MD_c - MD_background) (Ren et al., 2021)."""
    means, prec = _class_gaussian(fit, labels)
    f = _f64(fit)
    bg_prec = np.linalg.pinv(np.atleast_2d(np.cov(f, rowvar=False, bias=True)), hermitian=True)
    x = _f64(x)
    background = _maha(x, f.mean(0), bg_prec)
    return np.max([background - _maha(x, m, prec) for m in means], axis=0)


def _residual(fit: np.ndarray, weight: np.ndarray, bias: np.ndarray, x: np.ndarray,
              dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(||residual|| of x, of id_fit): the part of x - u outside the top-``dim`` right
    singular vectors of id_fit - u, as sqrt(||v||^2 - ||projection||^2)."""
    u = -np.linalg.pinv(_f64(weight)) @ np.asarray(bias, dtype=np.float64)
    centred = _f64(fit) - u  # every right singular vector needed only when rows < units
    _, _, vt = np.linalg.svd(centred, full_matrices=centred.shape[0] < centred.shape[1])
    top = vt[:dim]

    def norm(a):
        v = _f64(a) - u
        return np.sqrt(np.maximum((v ** 2).sum(1) - ((v @ top.T) ** 2).sum(1), 0.0))

    return norm(x), norm(fit)


def vim(fit, weight, bias, x, dim: int) -> np.ndarray:
    """logsumexp(logits) - alpha ||residual||, alpha = mean id_fit max logit / mean id_fit
    residual (Wang et al., 2022)."""
    res_x, res_fit = _residual(fit, weight, bias, x, dim)
    w, b = _f64(weight), np.asarray(bias, dtype=np.float64)
    fit_logits = _f64(fit) @ w.T + b
    alpha = fit_logits.max(1).mean() / res_fit.mean() if res_fit.mean() > 0 else 0.0
    z = _f64(x) @ w.T + b
    zmax = z.max(1)
    energy = zmax + np.log(np.exp(z - zmax[:, None]).sum(1))
    return energy - alpha * res_x


def residual(fit, weight, bias, x, dim: int) -> np.ndarray:
    return -_residual(fit, weight, bias, x, dim)[0]


def nci(fit, weight, bias, x, alpha: float) -> np.ndarray:
    """W_pred . (x - m) / ||x - m|| + alpha ||x||_1 (Liu & Qin, CVPR 2025)."""
    x, w = _f64(x), _f64(weight)
    pred = np.argmax(x @ w.T + np.asarray(bias, dtype=np.float64), axis=1)
    c = x - _f64(fit).mean(0)
    out = np.zeros(len(x))
    for k in range(len(w)):  # per predicted class
        rows = pred == k
        out[rows] = c[rows] @ w[k]
    return out / np.maximum(np.linalg.norm(c, axis=1), 1e-12) + alpha * np.abs(x).sum(1)


def fdbd(fit, weight, bias, x, distance: bool = True) -> np.ndarray:
    """sum_j |z_c - z_j| / ||W_c - W_j|| over ||x - m|| (or ||x||) (Liu & Qin, ICML 2024)."""
    x, w = _f64(x), _f64(weight)
    z = x @ w.T + np.asarray(bias, dtype=np.float64)
    pred = np.argmax(z, axis=1)
    total = np.zeros(len(x))
    for c in range(len(w)):
        rows = pred == c
        for j in range(len(w)):
            if j != c:
                dist = max(np.linalg.norm(w[c] - w[j]), 1e-12)
                total[rows] += np.abs(z[rows, c] - z[rows, j]) / dist
    m = _f64(fit).mean(0) if distance else 0.0
    return total / np.maximum(np.linalg.norm(x - m, axis=1), 1e-12)
