"""KNN: the distance to the k-th nearest id_fit neighbour of the L2-normalised feature.

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors",
ICML 2022, Sec. 3 (Algorithm 1); OpenOOD's ``knn_postprocessor.py``: features are divided
by ``norm + 1e-10``, the bank is the normalised id_fit features, and the score is minus
the k-th smallest *squared* L2 distance (faiss ``IndexFlatL2`` returns squared distances),
higher = more ID. Always exact, never an approximate index: with faiss-cpu installed (a
dependency) faiss's exact ``IndexFlatL2`` (a float32 BLAS product and a heap per query),
else the same sum in torch (a float32 matrix product and ``topk`` per row chunk). Both
give the same scores to float32 rounding (~1e-7 relative; tested both ways); faiss is
the faster (see ``benchmarks/bench_feature_scores.py``). ``ASH_KNN_BACKEND=torch`` forces
the torch path.

Rows whose nonzero units all share one value (every ASH-B row) are, once normalised,
their sign pattern over the square root of their survivor count: rows with the same
survivors are the same vector, and only a handful of distances can occur. Float32
rounding would break those ties at random (ID and OOD rows at one distance would land
either side of each other), so when every query and bank row is such a row the distance
is computed from exact integers instead: ``|a - b|^2 = [a != 0] + [b != 0] -
2 m / sqrt(k_a k_b)`` with ``m`` the signed overlap of the two survivor sets (an integer
matrix product, exact in float32 below 2^24 units) and the ratio taken as
``sqrt(m^2 / (k_a k_b))`` of exact integers, so that distances equal in exact arithmetic
come out equal bit for bit. (The ``1e-10`` guard of the division shifts such a row by
``1e-10 / |x|`` relative, far below float32 and left out here.)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features.base import (
    CHUNK,
    FeatureScore,
    FitData,
    ScoreTable,
    State,
    register_feature_score,
)
from ash_core.params import ParamSpec

EPS = 1e-10


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """``x / (||x|| + 1e-10)`` per row, in float64 (a zero row stays zero)."""
    x = x.to(torch.float64)
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + EPS)


def fit_knn(data: FitData, params: Mapping[str, float]) -> State:
    _check_k(int(params["k"]), data.features.shape[0])
    return {"bank": l2_normalise(data.features).to(torch.float32).numpy()}


def _nearest(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest squared distances [N, k] of each (normalised) query to the bank,
    ascending."""
    sq = (bank * bank).sum(dim=1)
    d2 = torch.addmm(sq[None, :], queries, bank.T, alpha=-2.0)
    d2 += (queries * queries).sum(dim=1, keepdim=True)
    return torch.topk(d2, k, dim=1, largest=False).values.clamp_min(0.0)


def sign_pattern(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(signs [N, D] float32 in {-1, 0, 1}, survivor counts [N] float64) when every row's
    nonzero entries share one value (a binarised row; a zero row counts), else None."""
    nonzero = x != 0
    hi = torch.where(nonzero, x, torch.full((), -torch.inf, dtype=x.dtype)).amax(dim=1)
    lo = torch.where(nonzero, x, torch.full((), torch.inf, dtype=x.dtype)).amin(dim=1)
    if x.shape[1] >= 2**24 or not bool(((hi == lo) | ~nonzero.any(dim=1)).all()):
        return None
    return torch.sign(x).to(torch.float32), nonzero.sum(dim=1).to(torch.float64)


def _exact_nearest(queries: tuple[torch.Tensor, torch.Tensor],
                   bank: tuple[torch.Tensor, torch.Tensor], k: int) -> torch.Tensor:
    """The k smallest squared distances [N, k] (float64, ascending) of binarised queries
    to a binarised bank, from integer overlaps (module doc). Among bank rows of one survivor count the
    distance falls as the overlap grows, so each count's k largest overlaps (float32
    integers, exact) hold every candidate; the distances are taken on those only."""
    (qs, qk), (bs, bk) = queries, bank
    bk, by_count = torch.sort(bk, stable=True)  # each count's rows a contiguous run
    bs = bs[by_count]
    counts, sizes = torch.unique_consecutive(bk, return_counts=True)
    groups = list(zip(counts.tolist(), torch.cumsum(sizes, 0).tolist(), sizes.tolist(),
                      strict=True))
    out = []
    for i in range(0, qs.shape[0], CHUNK):
        overlaps = qs[i:i + CHUNK] @ bs.T  # exact integers
        tops = [overlaps[:, end - size:end] if size <= k else
                torch.topk(overlaps[:, end - size:end], k, dim=1, sorted=False).values
                for _, end, size in groups]
        m = torch.cat(tops, dim=1).to(torch.float64)
        kb = torch.cat([torch.full((t.shape[1],), c, dtype=torch.float64)
                        for t, (c, _, _) in zip(tops, groups, strict=True)])
        kk = qk[i:i + CHUNK, None] * kb[None, :]
        ratio = torch.sqrt(m * m / torch.where(kk > 0, kk, torch.ones((), dtype=kk.dtype)))
        d2 = (qk[i:i + CHUNK, None] > 0).to(torch.float64) + (kb > 0).to(torch.float64) \
            - 2.0 * torch.sign(m) * ratio
        out.append(torch.topk(d2, k, dim=1, largest=False).values.clamp_min(0.0))
    return torch.cat(out) if out else torch.empty((0, k), dtype=torch.float64)


@functools.cache
def faiss_module() -> Any:
    """The faiss module, or None when it is not importable (the torch path is used)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def backend() -> str:
    """"faiss" when faiss is importable and ``ASH_KNN_BACKEND`` is not "torch", else "torch"."""
    if os.environ.get("ASH_KNN_BACKEND", "auto") == "torch" or faiss_module() is None:
        return "torch"
    return "faiss"


def _faiss_nearest(bank: np.ndarray, k: int):
    """``queries -> their k smallest squared distances [N, k]`` with faiss's exact flat L2
    index."""
    faiss = faiss_module()
    faiss.omp_set_num_threads(torch.get_num_threads())
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank, dtype=np.float32))

    def nearest(queries: torch.Tensor) -> torch.Tensor:
        dist, _ = index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), k)
        return torch.from_numpy(dist).clamp_min(0.0)

    return nearest


def _check_k(k: int, n: int) -> None:
    if k > n:
        raise ParameterError(f"knn: k={k} exceeds the {n} id_fit samples; choose k <= {n}.")


def nearest_distances(features: torch.Tensor, state: State, k: int) -> torch.Tensor:
    """Each row's ``k`` smallest squared distances to the normalised id_fit bank, ascending
    ``[N, k]``: float64 for binarised rows (exact, module doc), else float32. Column
    ``j`` does not depend on ``k`` for k >= 2 (the same distances, selected; faiss's heap
    below k = 100 and its reservoir above give the same columns, checked on the demo
    bundles' features up to k = 1000), so one table of the first K serves every k <= K
    (``table_rank``)."""
    bank = np.array(state["bank"], dtype=np.float32)
    _check_k(k, bank.shape[0])
    bank_signs = sign_pattern(torch.from_numpy(bank))
    query_signs = None if bank_signs is None else sign_pattern(features)
    if query_signs is not None:  # binarised rows: exact distances (module doc)
        return _exact_nearest(query_signs, bank_signs, k)
    if backend() == "faiss":
        nearest = _faiss_nearest(bank, k)
    else:
        bank_t = torch.from_numpy(bank)
        nearest = lambda q: _nearest(q, bank_t, k)  # noqa: E731
    outs = [nearest(l2_normalise(features[i:i + CHUNK]).to(torch.float32))
            for i in range(0, features.shape[0], CHUNK)]
    return torch.cat(outs) if outs else torch.empty((0, k), dtype=torch.float32)


def kth_score(table: torch.Tensor, params: Mapping[str, float]) -> torch.Tensor:
    """The KNN score at ``k`` from a table of nearest distances (``nearest_distances``
    at any K >= k): minus the k-th, in float64."""
    return -table[:, int(params["k"]) - 1].to(torch.float64)


def score_knn(features: torch.Tensor, logits: torch.Tensor, head, state: State,
              params: Mapping[str, float]) -> torch.Tensor:
    # k = 1 reads the first of two neighbours: faiss computes a single nearest neighbour
    # with another kernel, whose distances differ from those of k >= 2 in the last bit,
    # and every table holds at least two
    k = int(params["k"])
    searched = max(k, min(2, int(np.shape(state["bank"])[0])))
    return kth_score(nearest_distances(features, state, searched), params)


#: the neighbours a table holds, by tier: every k up to a tier's rank is a column read of
#: that tier's table, made the first time a k needs it. The first tier (OpenOOD's grid up
#: to 200, the paper's CIFAR k = 50) is cheap; the second (ImageNet's k = 1000) costs
#: faiss 1.45x (tinyimagenet_mobilenetv2) to 2.0x (cifar10_resnet20) the first's search
#: and 5x its memory, so it is made only when k first exceeds 200. A larger k is scored
#: on its own.
TABLE_RANKS = (200, 1000)


def table_rank(params: Mapping[str, float], state: State) -> int | None:
    """The neighbours of the table that serves ``k`` (None: ``k`` is scored on its own)."""
    n, k = int(np.shape(state["bank"])[0]), int(params["k"])
    _check_k(k, n)
    return next((min(rank, n) for rank in TABLE_RANKS if k <= min(rank, n)), None)


def table_bytes(rows: int, state: State, rank: int) -> int:
    """A split's table: float32 distances (float64 for binarised rows, the larger)."""
    return rows * rank * 8


KNN = register_feature_score(FeatureScore(
    "knn", "KNN: minus the squared distance to the k-th nearest normalised id_fit feature",
    fit_knn, score_knn, fit_params=(),
    table=ScoreTable(table_rank, lambda x, logits, head, state, rank:
                     nearest_distances(x, state, rank), kth_score, table_bytes),
    params=(ParamSpec("k", 50, 1, 1_000_001, "neighbour rank (the k-th nearest id_fit feature)",
                      kind="int", recommended={"cifar10": 50, "imagenet": 1000},
                      search_grid=(1, 10, 20, 50, 100, 200, 500, 1000)),),
    reference="Sun et al., ICML 2022",
))
