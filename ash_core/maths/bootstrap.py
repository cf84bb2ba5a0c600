"""Bootstrap confidence intervals for FPR95, AUROC, AUPR-In and AUPR-Out.

A replicate resamples the ID scores and each OOD set's scores separately, with
replacement and at their own sizes (stratified: every replicate keeps the ID/OOD mix of
the data). The ID resample is shared by every OOD set of a replicate, since the sets are
all measured against the same ID images; so the average over sets has its own interval,
taken from the per-replicate averages. Intervals are percentile intervals.

A resample is a vector of counts (how often each original sample is drawn), so a
replicate's metrics come from prefix sums of counts over the scores sorted once, never
from sorting the resampled scores: every replicate equals ``ood_metrics`` on the
resampled arrays (ties counted as scikit-learn does), for all ``B`` replicates in a few
array passes. Each stream of draws is seeded by (seed, role, split name), so a set's
interval does not change when other sets are selected, and two methods scored on the
same samples can be resampled with the same counts (``paired_bootstrap``).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ash_core.errors import ParameterError
from ash_core.maths.metrics import (
    METRIC_NAMES,
    _as_scores,
    _kept_count,
    check_convention,
    ood_metrics,
)

#: resamples the CLI and the library draw unless told otherwise
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
#: count cells (rows x samples) of one block of replicates: bounds the memory to ~100 MB
BLOCK_CELLS = 4_000_000
#: draws of at most this many count cells (bytes, as uint8) are kept for the next call
DRAW_CACHE_BYTES = 64_000_000
#: splits of at least this many samples draw their counts one replicate at a time
ROW_AT_A_TIME = 4096

Scores = Any  # numpy array or torch tensor of one split's scores
Interval = tuple[float, float]


def check_resamples(resamples: int, level: float = DEFAULT_LEVEL) -> None:
    """A ParameterError unless ``resamples`` >= 1 and ``level`` is in (0, 1)."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise ParameterError(f"the number of bootstrap resamples must be an integer >= 1, got "
                             f"{resamples!r} (1000 is usual).")
    if not 0.0 < level < 1.0:
        raise ParameterError(f"the interval's level must be in (0, 1), got {level!r} "
                             "(0.95 for a 95% interval).")


def _stream(seed: int, role: int, name: str) -> np.random.Generator:
    """The draws of one split: seeded by (seed, role, name), not by the split's position."""
    return np.random.default_rng([int(seed), role, zlib.crc32(name.encode())])


def _counts(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """``rows`` resamples of ``n`` items with replacement, as counts per item ``[rows, n]``
    (uint8 where every count fits, as nearly always: a quarter of the memory traffic).
    Large ``n`` one row at a time (a row's counts stay in cache: several times faster than
    one ``bincount`` over the block); the draws are the same either way."""
    if n < ROW_AT_A_TIME:
        flat = rng.integers(0, n, size=(rows, n), dtype=np.uint32).astype(np.intp)
        flat += np.arange(rows)[:, None] * n
        out = np.bincount(flat.reshape(-1), minlength=rows * n).reshape(rows, n)
    else:
        out = np.empty((rows, n), dtype=np.int64)
        for r in range(rows):
            out[r] = np.bincount(rng.integers(0, n, size=n, dtype=np.uint32), minlength=n)
    return out.astype(np.uint8) if out.max() <= 255 else out


def _prefix(counts: np.ndarray) -> np.ndarray:
    """Prefix sums ``[rows, n + 1]`` with a leading zero column (int32: a count of samples;
    int64 from 2**31 samples on)."""
    dtype = np.int32 if counts.shape[1] < 2**31 else np.int64
    out = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=dtype)
    np.cumsum(counts, axis=1, dtype=dtype, out=out[:, 1:])
    return out


class _Side:
    """One split's scores sorted once: the order, and where equal values start and end."""

    def __init__(self, scores: Scores, what: str, tpr: float):
        arr = _as_scores(scores, what)
        self.order = np.argsort(arr, kind="stable")
        self.asc = arr[self.order]
        self.n = arr.size
        self.k = _kept_count(self.n, tpr)
        self.tied = bool(np.any(self.asc[1:] == self.asc[:-1]))
        self.first = np.searchsorted(self.asc, self.asc, "left")
        self.after = np.searchsorted(self.asc, self.asc, "right")


class _Pair:
    """One OOD set against the ID split: where each side's values fall in the other."""

    def __init__(self, ids: _Side, ood: _Side):
        self.ids, self.ood = ids, ood
        # ID values below / up to each OOD value; OOD values below / up to each ID value
        self.id_below = np.searchsorted(ids.asc, ood.asc, "left")
        self.id_upto = np.searchsorted(ids.asc, ood.asc, "right")
        self.ood_below = np.searchsorted(ood.asc, ids.asc, "left")
        self.cross_tied = bool(np.any(self.id_below != self.id_upto))

    def metrics(self, block: _IdBlock, c_ood: np.ndarray, convention: str
                ) -> dict[str, np.ndarray]:
        """The four metrics of each replicate of ``block``; ``c_ood`` this set's counts in
        sorted order."""
        ids, ood = self.ids, self.ood
        n, m, rows = ids.n, ood.n, np.arange(c_ood.shape[0])
        p_id, p_ood = block.prefix, _prefix(c_ood)
        up = np.take(p_id, self.id_upto, axis=1)  # resampled ID <= each OOD value
        # AUROC: ID above each OOD value, ties 1/2, in integers until the one division
        wins = n * m - _dot(c_ood, up)
        if self.cross_tied:
            wins = wins + 0.5 * _dot(c_ood, up - np.take(p_id, self.id_below, axis=1))
        auroc = wins / (n * m)
        ood_ge = m - np.take(p_ood, self.ood_below, axis=1)  # OOD >= each ID value
        aupr_in = _ap(block.counts, block.id_ge, ood_ge) / n
        # OOD <= each OOD value
        ood_le = np.take(p_ood, ood.after, axis=1) if ood.tied else p_ood[:, 1:]
        aupr_out = _ap(c_ood, ood_le, up) / m
        if convention == "id":  # OOD accepted at the k-th largest resampled ID score
            fpr = (m - p_ood[rows, self.ood_below[block.kth]]) / m
        else:  # ID rejected at the k-th smallest resampled OOD score
            at = np.count_nonzero(p_ood[:, 1:] < ood.k, axis=1)
            fpr = p_id[rows, self.id_upto[at]] / n
        return {"fpr95": fpr, "auroc": auroc, "aupr_in": aupr_in, "aupr_out": aupr_out}


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of two integer blocks, in float64: exact, the sums being at
    most n x m < 2**53."""
    return np.einsum("ij,ij->i", a, b, dtype=np.float64, casting="same_kind")


def _ap(counts: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Sum over positives of count x precision at its value (AP without the 1/n):
    precision = positives / (positives + negatives) at or beyond the value. Where both are
    0 the item was drawn no time (``pos`` counts it when it was): it adds 0."""
    denom = pos + neg
    np.maximum(denom, 1, out=denom)
    return np.einsum("ij,ij->i", counts, pos / denom)


@dataclass(frozen=True)
class _IdBlock:
    """A block of ID resamples in sorted order, with what every OOD set reads from it."""

    counts: np.ndarray
    prefix: np.ndarray
    id_ge: np.ndarray  # resampled ID >= each ID value
    kth: np.ndarray  # per replicate: the position of the k-th largest resampled ID score

    @classmethod
    def of(cls, ids: _Side, c_id: np.ndarray) -> _IdBlock:
        counts = np.take(c_id, ids.order, axis=1)
        p = _prefix(counts)
        below = np.take(p, ids.first, axis=1) if ids.tied else p[:, :ids.n]
        # suffix sums n - p[i] >= k hold on a prefix of positions; its last one is drawn
        kth = np.count_nonzero(p[:, :ids.n] <= ids.n - ids.k, axis=1) - 1
        return cls(counts, p, ids.n - below, kth)


class _Scored:
    """One method's scores on one ID split and its OOD sets, prepared for replicates."""

    def __init__(self, id_scores: Scores, ood_scores: Mapping[str, Scores], tpr: float):
        if not ood_scores:
            raise ParameterError("no OOD sets to bootstrap; select at least one OOD split.")
        self.ids = _Side(id_scores, "ID", tpr)
        self.pairs = {name: _Pair(self.ids, _Side(s, "OOD", tpr))
                      for name, s in ood_scores.items()}

    def sizes(self) -> tuple[int, dict[str, int]]:
        return self.ids.n, {name: p.ood.n for name, p in self.pairs.items()}

    def replicate(self, c_id: np.ndarray, c_ood: Mapping[str, np.ndarray],
                  convention: str) -> dict[str, dict[str, np.ndarray]]:
        """Each set's metrics for a block of replicates; counts in the original order."""
        block = _IdBlock.of(self.ids, c_id)
        return {name: p.metrics(block, np.take(c_ood[name], p.ood.order, axis=1), convention)
                for name, p in self.pairs.items()}


def _drawn(seed: int, id_name: str, n_id: int, n_ood: Mapping[str, int], resamples: int
           ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    streams = {name: _stream(seed, 1, name) for name in n_ood}
    id_stream = _stream(seed, 0, id_name)
    rows = max(1, BLOCK_CELLS // (n_id + max(n_ood.values())))
    for start in range(0, resamples, rows):
        b = min(rows, resamples - start)
        yield _counts(id_stream, n_id, b), {k: _counts(streams[k], m, b)
                                            for k, m in n_ood.items()}


@functools.lru_cache(maxsize=2)
def _kept_draws(seed: int, id_name: str, n_id: int, n_ood: tuple[tuple[str, int], ...],
                resamples: int, block_cells: int, row_at_a_time: int) -> tuple:
    blocks = tuple(_drawn(seed, id_name, n_id, dict(n_ood), resamples))
    for c, co in blocks:  # shared by every later call: read only
        for a in (c, *co.values()):
            a.flags.writeable = False
    return blocks


def _draws(seed: int, id_name: str, n_id: int, n_ood: Mapping[str, int], resamples: int
           ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Blocks of (ID counts, per-set OOD counts), ``resamples`` rows in all. The block size
    does not change the draws: each stream is read in order. The draws depend on the seed
    and the split sizes only, so the last ones are kept (when small) for the next setting
    of the same splits."""
    if resamples * (n_id + sum(n_ood.values())) > DRAW_CACHE_BYTES:
        return _drawn(seed, id_name, n_id, n_ood, resamples)
    return iter(_kept_draws(int(seed), id_name, n_id, tuple(n_ood.items()), resamples,
                            BLOCK_CELLS, ROW_AT_A_TIME))


def resample_counts(seed: int, id_name: str, n_id: int, n_ood: Mapping[str, int],
                    resamples: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The resamples every bootstrap here draws, as counts per sample: ``[B, n_id]`` for
    the ID split and ``[B, m]`` per OOD set, in the samples' original order."""
    blocks = list(_draws(seed, id_name, n_id, n_ood, resamples))
    return (np.concatenate([b[0] for b in blocks]),
            {k: np.concatenate([b[1][k] for b in blocks]) for k in n_ood})


Replicates = dict[str, dict[str, np.ndarray]]


def _collect(blocks: Iterator[Replicates]) -> Replicates:
    parts = list(blocks)
    return {name: {m: np.concatenate([p[name][m] for p in parts]) for m in METRIC_NAMES}
            for name in parts[0]}


def bootstrap_replicates(id_scores: Scores, ood_scores: Mapping[str, Scores],
                         resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                         convention: str = "id", tpr: float = 0.95,
                         id_name: str = "id") -> Replicates:
    """Per OOD set, each metric over ``resamples`` stratified replicates (``[B]`` arrays):
    replicate ``b`` is ``ood_metrics`` of the ``b``-th resample of the ID and the set's
    scores. ``id_name`` names the ID split's stream of draws."""
    check_convention(convention)
    check_resamples(resamples)
    scored = _Scored(id_scores, ood_scores, tpr)
    n_id, n_ood = scored.sizes()
    return _collect(scored.replicate(c, co, convention)
                    for c, co in _draws(seed, id_name, n_id, n_ood, resamples))


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    """The percentile interval of bootstrap replicates: the (1-level)/2 and (1+level)/2
    quantiles (linear interpolation)."""
    check_resamples(1, level)
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [(1 - level) / 2,
                                                                (1 + level) / 2])
    return float(lo), float(hi)


def _mean_over(reps: Replicates, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {m: np.mean([reps[n][m] for n in names], axis=0) for m in METRIC_NAMES}


def _intervals(per_metric: Mapping[str, np.ndarray], level: float) -> dict[str, Interval]:
    return {m: percentile_interval(per_metric[m], level) for m in METRIC_NAMES}


def _summaries(reps: Replicates, groups: Mapping[str, Sequence[str]], level: float
               ) -> tuple[dict, dict, dict]:
    """(per set, average, per group) intervals of one set of replicates."""
    per_set = {name: _intervals(r, level) for name, r in reps.items()}
    average = _intervals(_mean_over(reps, list(reps)), level)
    chosen = {g: [n for n in members if n in reps] for g, members in groups.items()}
    by_group = {g: _intervals(_mean_over(reps, names), level)
                for g, names in chosen.items() if names}
    return per_set, average, by_group


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile intervals of one setting's metrics: per OOD set, the average over the
    sets and each group's average; the sample counts they rest on."""

    ood: dict[str, dict[str, Interval]]
    average: dict[str, Interval]
    n_id: int
    n_ood: dict[str, int]
    groups: dict[str, dict[str, Interval]] = field(default_factory=dict)
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL
    convention: str = "id"

    def about(self) -> dict[str, Any]:
        """How the intervals were made (the JSON's ``ci_method``)."""
        return {"kind": "percentile bootstrap, ID and each OOD set resampled separately",
                "level": self.level, "resamples": self.resamples, "seed": self.seed}


def bootstrap_ci(id_scores: Scores, ood_scores: Mapping[str, Scores],
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 level: float = DEFAULT_LEVEL, convention: str = "id",
                 groups: Mapping[str, Sequence[str]] | None = None, tpr: float = 0.95,
                 id_name: str = "id") -> BootstrapCI:
    """The ``level`` percentile bootstrap interval of every metric of every OOD set, of
    their average (sets resampled together, averaged per replicate) and of each group's
    average (``groups``: name -> OOD set names; sets not scored are left out)."""
    check_resamples(resamples, level)
    reps = bootstrap_replicates(id_scores, ood_scores, resamples, seed, convention, tpr,
                                id_name)
    per_set, average, by_group = _summaries(reps, groups or {}, level)
    n_id = _as_scores(id_scores, "ID").size
    return BootstrapCI(per_set, average, n_id,
                       {name: int(np.size(s)) for name, s in ood_scores.items()},
                       by_group, int(resamples), int(seed), float(level), convention)


@dataclass(frozen=True)
class PairedCI:
    """A minus B on the same samples: the point difference of every metric and its
    interval, per OOD set and for the average."""

    ood: dict[str, dict[str, float]]
    ood_ci: dict[str, dict[str, Interval]]
    average: dict[str, float]
    average_ci: dict[str, Interval]
    level: float = DEFAULT_LEVEL

    def verdict(self, metric: str, where: str = "average") -> str:
        """"A better", "B better" or "no clear difference": whether the interval of A - B
        excludes 0, read in the metric's direction (lower FPR95 is better)."""
        lo, hi = self.average_ci[metric] if where == "average" else self.ood_ci[where][metric]
        if lo <= 0.0 <= hi:
            return "no clear difference"
        a_higher = lo > 0.0
        return "A better" if a_higher == (metric != "fpr95") else "B better"


def paired_bootstrap(a_id: Scores, a_ood: Mapping[str, Scores], b_id: Scores,
                     b_ood: Mapping[str, Scores], resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL,
                     convention: str = "id", tpr: float = 0.95,
                     id_name: str = "id") -> PairedCI:
    """Intervals of A - B for two methods scored on the same samples: each replicate draws
    one resample and scores both methods on it, so what the samples share cancels."""
    check_convention(convention)
    check_resamples(resamples, level)
    a, b = _Scored(a_id, a_ood, tpr), _Scored(b_id, b_ood, tpr)
    if a.sizes() != b.sizes():
        raise ParameterError(f"a paired bootstrap needs both methods scored on the same "
                             f"samples; got sizes {a.sizes()} and {b.sizes()}.")
    n_id, n_ood = a.sizes()
    diffs = []
    for c, co in _draws(seed, id_name, n_id, n_ood, resamples):
        ra, rb = a.replicate(c, co, convention), b.replicate(c, co, convention)
        diffs.append({n: {m: ra[n][m] - rb[n][m] for m in METRIC_NAMES} for n in ra})
    reps = _collect(iter(diffs))
    point = {n: {m: float(ood_metrics(a_id, a_ood[n], convention, tpr)[m]
                          - ood_metrics(b_id, b_ood[n], convention, tpr)[m])
                 for m in METRIC_NAMES} for n in a_ood}
    avg = {m: float(np.mean([point[n][m] for n in point])) for m in METRIC_NAMES}
    per_set, average, _ = _summaries(reps, {}, level)
    return PairedCI(point, per_set, avg, average, float(level))


def seed_spread(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (ddof=1; 0 for one seed), min and max of each metric over
    the results of several seeds (e.g. ASH-RAND's averages at seeds 0..9)."""
    if not per_seed:
        raise ParameterError("no results to summarise; give at least one seed's metrics.")
    out = {}
    for m in METRIC_NAMES:
        v = np.array([float(r[m]) for r in per_seed])
        out[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                  "min": float(v.min()), "max": float(v.max())}
    return out
