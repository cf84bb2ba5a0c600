"""An independent reference for ASH, the baselines, the scores and the OOD metrics.

Written from the definitions in the issue, in plain numpy with explicit per-row
Python loops, and deliberately NOT calling ash_core, so that the tests pin the
library against a second implementation rather than against itself.

Conventions (from the issue):

* local thresholds: ``k = D - round(D * p / 100)`` with round-half-to-even; the k
  survivors are the k largest units, ties broken towards the lower unit index.
* global thresholds: survivors are the units strictly above the ``cutoff``, the p-th
  percentile (linear interpolation) of all id_fit activations.
* ASH-P keeps survivors; ASH-B sets them to ``s1 / k`` (s1 = sum before pruning);
  ASH-S multiplies them by ``exp(s1 / s2)`` (s2 = sum after pruning); ASH-RAND sets
  them to uniform(0, 10) draws (the draws are passed in, so the reference does not
  depend on torch's generator). No survivor, or ``s2 == 0`` for ASH-S: a zero row.
* scores are "higher = more ID"; metrics are fractions in [0, 1].
"""

from __future__ import annotations

import hashlib
import math

import numpy as np


def kept_count(dim: int, p: float) -> int:
    """``D - round(D * p / 100)``; Python's round() is half-to-even like numpy's."""
    return dim - int(round(dim * p / 100.0))


def top_k_indices(row: np.ndarray, k: int) -> list[int]:
    """The k largest units of ``row``; among equal values the lower index wins.

    Selection sort by hand: repeatedly take the first maximum of what is left.
    """
    remaining = list(range(row.size))
    chosen: list[int] = []
    for _ in range(k):
        best = remaining[0]
        for j in remaining[1:]:
            if row[j] > row[best]:  # strict: an equal value later in the row never wins
                best = j
        chosen.append(best)
        remaining.remove(best)
    return chosen


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def survivors(x: np.ndarray, p: float, cutoff: float | None = None) -> np.ndarray:
    """Boolean survivor mask [N, D] (local top-k, or global ``> cutoff``)."""
    rows = _flat(x)
    n, d = rows.shape
    mask = np.zeros((n, d), dtype=bool)
    for i in range(n):
        if cutoff is None:
            for j in top_k_indices(rows[i], kept_count(d, p)):
                mask[i, j] = True
        else:
            for j in range(d):
                mask[i, j] = rows[i, j] > cutoff
    return mask


def ash_p(x: np.ndarray, p: float, cutoff: float | None = None) -> np.ndarray:
    rows = _flat(x)
    mask = survivors(x, p, cutoff)
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            if mask[i, j]:
                out[i, j] = rows[i, j]
    return out.reshape(np.shape(x))


def ash_b(x: np.ndarray, p: float, cutoff: float | None = None) -> np.ndarray:
    rows = _flat(x)
    mask = survivors(x, p, cutoff)
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        s1 = sum(float(v) for v in rows[i])
        k = int(mask[i].sum())
        if k == 0:
            continue
        for j in range(rows.shape[1]):
            if mask[i, j]:
                out[i, j] = s1 / k
    return out.reshape(np.shape(x))


def ash_s(x: np.ndarray, p: float, cutoff: float | None = None) -> np.ndarray:
    rows = _flat(x)
    mask = survivors(x, p, cutoff)
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        s1 = sum(float(v) for v in rows[i])
        s2 = sum(float(rows[i, j]) for j in range(rows.shape[1]) if mask[i, j])
        if s2 == 0:
            continue
        factor = math.exp(s1 / s2)
        for j in range(rows.shape[1]):
            if mask[i, j]:
                out[i, j] = rows[i, j] * factor
    return out.reshape(np.shape(x))


def rand_draws(seed: int, split: str, n: int, dim: int) -> np.ndarray:
    """ASH-RAND's documented draws of rows 0..n-1 of ``split``, one row at a time: a
    Philox keyed by SeedSequence([seed < 0, |seed|, sha256(split)'s first four
    little-endian uint32 words]), row i from counter i * ceil(dim / 8), 8 float32 uniforms per counter step,
    the first ``dim`` of them times 10."""
    words = [int.from_bytes(hashlib.sha256(split.encode()).digest()[4 * j:4 * j + 4], "little")
             for j in range(4)]
    key = np.random.SeedSequence([int(seed < 0), abs(seed), *words]).generate_state(2, np.uint64)
    steps = (dim + 7) // 8
    out = np.empty((n, dim), dtype=np.float32)
    for i in range(n):
        bits = np.random.Philox(key=key, counter=np.array([i * steps, 0, 0, 0], np.uint64))
        row = np.random.Generator(bits).random(8 * steps, dtype=np.float32)[:dim]
        out[i] = row * np.float32(10.0)
    return out


def ash_rand(x: np.ndarray, p: float, draws: np.ndarray,
             cutoff: float | None = None) -> np.ndarray:
    """``draws`` [N, D] are the uniform(0, 10) values the survivors take."""
    rows = _flat(x)
    mask = survivors(x, p, cutoff)
    draws = _flat(draws)
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            if mask[i, j]:
                out[i, j] = draws[i, j]
    return out.reshape(np.shape(x))


def global_threshold(id_fit: np.ndarray, p: float) -> float:
    """The p-th percentile (linear interpolation) of every id_fit activation."""
    values = sorted(float(v) for v in np.asarray(id_fit, dtype=np.float32).reshape(-1))
    pos = (len(values) - 1) * p / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def react(x: np.ndarray, id_fit: np.ndarray, c: float = 90.0) -> np.ndarray:
    clip = global_threshold(id_fit, c)
    rows = _flat(x)
    out = rows.copy()
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[i, j] = min(rows[i, j], clip)
    return out.reshape(np.shape(x))


def scale(x: np.ndarray, p: float) -> np.ndarray:
    """SCALE: every unit times exp(s1 / s2(p)); a row with s2 == 0 is left unchanged."""
    rows = _flat(x)
    mask = survivors(x, p)
    out = rows.copy()
    for i in range(rows.shape[0]):
        s1 = sum(float(v) for v in rows[i])
        s2 = sum(float(rows[i, j]) for j in range(rows.shape[1]) if mask[i, j])
        factor = 1.0 if s2 == 0 else math.exp(s1 / s2)
        for j in range(rows.shape[1]):
            out[i, j] = rows[i, j] * factor
    return out.reshape(np.shape(x))


# --------------------------------------------------------------------------- scores


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    out = []
    for row in np.asarray(logits, dtype=np.float64):
        z = row / temperature
        m = max(z)
        out.append(temperature * (m + math.log(sum(math.exp(v - m) for v in z))))
    return np.array(out)


def msp(logits: np.ndarray) -> np.ndarray:
    out = []
    for row in np.asarray(logits, dtype=np.float64):
        m = max(row)
        exps = [math.exp(v - m) for v in row]
        out.append(max(exps) / sum(exps))
    return np.array(out)


def maxlogit(logits: np.ndarray) -> np.ndarray:
    return np.array([max(row) for row in np.asarray(logits, dtype=np.float64)])


# --------------------------------------------------------------------------- metrics


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg), by counting every pair."""
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def fpr_at_tpr(pos: np.ndarray, neg: np.ndarray, tpr: float = 0.95) -> float:
    """Scan thresholds from high to low ("accept score >= t"); the FPR at the first
    threshold whose TPR reaches ``tpr``."""
    for t in sorted(set(map(float, pos)) | set(map(float, neg)), reverse=True):
        tp = sum(1 for v in pos if v >= t)
        if tp / len(pos) >= tpr:
            return sum(1 for v in neg if v >= t) / len(neg)
    return 1.0


def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Sum over distinct thresholds (high to low) of (R_n - R_{n-1}) * P_n."""
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(map(float, pos)) | set(map(float, neg)), reverse=True):
        tp = sum(1 for v in pos if v >= t)
        fp = sum(1 for v in neg if v >= t)
        recall = tp / len(pos)
        ap += (recall - prev_recall) * (tp / (tp + fp))
        prev_recall = recall
    return ap


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray,
                convention: str = "id") -> dict[str, float]:
    """Scores are "higher = more ID". ``id``: ID positive; ``ood``: OOD positive."""
    ind = np.asarray(id_scores, dtype=np.float64)
    ood = np.asarray(ood_scores, dtype=np.float64)
    # "ood": OOD positive; negating the scores makes "higher = more OOD".
    fpr = fpr_at_tpr(ind, ood) if convention == "id" else fpr_at_tpr(-ood, -ind)
    return {
        "fpr95": fpr,
        "auroc": auroc(ind, ood),
        "aupr_in": average_precision(ind, ood),
        "aupr_out": average_precision(-ood, -ind),
    }


def softmax_row(row: np.ndarray) -> list[float]:
    m = max(float(v) for v in row)
    e = [math.exp(float(v) - m) for v in row]
    total = sum(e)
    return [v / total for v in e]


def temperature_msp(logits: np.ndarray, t: float) -> np.ndarray:
    """max softmax(logits / T) per row (Guo et al., 2017)."""
    return np.array([max(softmax_row(np.asarray(row, dtype=np.float64) / t)) for row in logits])


def gen(logits: np.ndarray, gamma: float, m: int) -> np.ndarray:
    """GEN (Liu et al., CVPR 2023, Eq. 6-7): minus the sum over the M largest softmax
    probabilities of p^gamma (1 - p)^gamma; all of them when M exceeds the classes."""
    out = []
    for row in logits:
        probs = sorted(softmax_row(row), reverse=True)[:m]
        out.append(-sum(p**gamma * (1.0 - p) ** gamma for p in probs))
    return np.array(out)


def dice_weight(id_fit: np.ndarray, weight: np.ndarray, p: float) -> np.ndarray:
    """DICE (Sun & Li, ECCV 2022): keep W[c, d] where mean_d * W[c, d] (mean over id_fit
    rows) is above the p-th percentile (linear interpolation) of all those products."""
    rows = np.asarray(id_fit, dtype=np.float64).reshape(len(id_fit), -1)
    n, d = rows.shape
    mean = [sum(float(rows[i, j]) for i in range(n)) / n for j in range(d)]
    contrib = [[mean[j] * float(weight[c, j]) for j in range(d)] for c in range(len(weight))]
    values = sorted(v for row in contrib for v in row)
    pos = (len(values) - 1) * p / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(values) - 1)
    cut = values[lo] + (values[hi] - values[lo]) * (pos - lo)
    return np.array([[float(weight[c, j]) if contrib[c][j] > cut else 0.0 for j in range(d)]
                     for c in range(len(weight))], dtype=np.float32)


# --------------------------------------------------------------------------- evaluation


#: methods whose shaping function passes features through unchanged (the baselines, scores on
#: logits, on the head, on features; odin, whose perturbed features are stored in the bundle)
FEATURES_UNCHANGED = ("none", "energy", "msp", "maxlogit", "temp-scaling", "gen", "dice", "knn",
                      "mahalanobis", "rmds", "vim", "residual", "nci", "fdbd", "odin")


def shape(method: str, x: np.ndarray, p: float | None, threshold: str = "local",
          id_fit: np.ndarray | None = None) -> np.ndarray:
    """Shape ``x`` with a deterministic method (none, ash-p/b/s, react, scale)."""
    if method in FEATURES_UNCHANGED:
        return np.asarray(x, dtype=np.float64)
    if method == "react":
        return react(x, id_fit, p)
    if method == "scale":
        return scale(x, p)
    variants = {"ash-p": ash_p, "ash-b": ash_b, "ash-s": ash_s}
    thr = global_threshold(id_fit, p) if threshold == "global" else None
    return variants[method](x, p, cutoff=thr)


def evaluate(id_features: np.ndarray, ood_features: dict[str, np.ndarray],
             weight: np.ndarray, bias: np.ndarray, method: str, p: float | None,
             threshold: str = "local", id_fit: np.ndarray | None = None,
             score: str = "energy", convention: str = "id",
             labels: np.ndarray | None = None) -> dict:
    """Shape, apply the linear head in float64, score, and compute the metrics per OOD set."""
    score_fn = {"energy": energy, "msp": msp, "maxlogit": maxlogit}[score]
    w = np.asarray(weight, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64)

    def logits(x):
        return shape(method, np.asarray(x, dtype=np.float32), p, threshold, id_fit) @ w.T + b

    id_logits = logits(id_features)
    id_scores = score_fn(id_logits)
    out = {"id_scores": id_scores, "ood": {}, "acc": None}
    if labels is not None:
        out["acc"] = float(np.mean([int(np.argmax(row)) == int(y)
                                    for row, y in zip(id_logits, labels, strict=True)]))
    for name, x in ood_features.items():
        out["ood"][name] = ood_metrics(id_scores, score_fn(logits(x)), convention)
    return out
