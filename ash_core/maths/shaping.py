"""Activation-shaping primitives: ASH-P, ASH-B, ASH-S, ASH-RAND, ReAct and SCALE.

Semantics follow the official ASH implementation (Djurisic et al., ICLR 2023):

* local thresholds: the kept count is ``k = D - round(D * p / 100)`` with numpy's
  round-half-to-even, and exactly ``k`` units survive (top-k). Ties at the boundary
  are broken towards the lower unit index (a stable descending sort), so results
  are deterministic.
* global thresholds (the paper's ablation): a single activation value, the ``cutoff``,
  fitted on ID training activations; the survivors of a row are its units ``> cutoff``.
  (``cutoff`` is a number; "threshold" in the rest of the API is the *mode* string
  ``"local"``/``"global"``.)
* ``order=rank_order(x)`` may be passed to skip the per-call sort when the same
  features are shaped at many p; results are identical.
* every function returns a new tensor and never modifies its input. Inputs may be
  ``[N, D]`` or ``[N, C, H, W]`` (shaped per sample over all ``C*H*W`` units), in
  fp16, bf16 or fp32; the maths runs in fp32 and the result has the input dtype.

Defined edge cases (the official code leaves them undefined or NaN):

* ``k == 0`` (p close to 100 on a small D) and global rows with no survivor: the
  shaped row is all zeros for every variant.
* ASH-S on a row whose pruned sum ``s2`` is 0 (e.g. an all-zero row): the row is
  all zeros, never NaN.
* ASH-RAND on an all-zero row still draws its k survivors (as the official code does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.draws import draws_at, row_draws
from ash_core.params import ParamSpec

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def kept_count(dim: int, p: float) -> int:
    """Number of units ASH keeps per sample: ``D - round(D * p / 100)`` (half-to-even)."""
    check_percentile(p)
    return int(dim - int(np.round(dim * p / 100.0)))


#: the percentile every primitive takes, declared like a method's parameter so that one
#: validator (``ParamSpec.validate``) checks p wherever it is given
PERCENTILE = ParamSpec("p", 65.0, 0.0, 100.0, "the percentile of activations to prune")


def check_percentile(p: float) -> float:
    """``p`` as a float if it is a pruning percentile in [0, 100), else ParameterError
    (``PERCENTILE.validate``)."""
    return PERCENTILE.validate(p, "shaping")


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """Validate ``x`` and return an fp32 ``[N, D]`` copy-or-view to compute on."""
    if not isinstance(x, torch.Tensor):
        raise FeatureError(f"features must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() not in (2, 4):
        raise FeatureError(
            f"features must be [N, D] or [N, C, H, W], got shape {tuple(x.shape)}."
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise FeatureError(f"features must be floating point (fp16/bf16/fp32), got {x.dtype}.")
    return x.reshape(x.shape[0], -1).to(torch.float32)


def _finish(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape fp32 rows back to ``like``'s shape and dtype."""
    return rows.reshape(like.shape).to(like.dtype)


def sorted_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Descending stable sort of each row: (values, unit indices); ties keep index order."""
    values, order = torch.sort(rows, dim=1, descending=True, stable=True)
    return values, order


def rank_order(x: torch.Tensor) -> torch.Tensor:
    """Each row's units by decreasing activation (stable), as the smallest integer dtype.

    It does not depend on p, so a caller shaping the same features at many p (the
    Evaluator, the dashboard) computes it once and passes it as ``order=``.
    """
    order = sorted_rows(_as_rows(x))[1]
    return order.to(torch.int16 if order.shape[1] <= 2**15 else torch.int32)


def top_k_mask(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The mask of ``local_mask`` for 0 < k, by selection instead of a sort.

    A stable descending sort keeps the top k units, ties at the k-th value going to the
    lower unit indices. The same set: every unit above the k-th largest value, plus the
    first tied units (in index order) that make the count exactly k. ``topk`` finds the
    k-th value in about a quarter of a stable sort's time; only rows with more than one
    unit at that value need the running count over ties, and rows with NaN (fewer than
    k units compare >= a NaN k-th value) take the sort. The dashboard's first page at
    ImageNet shapes is one such shaping per split (no cached order).
    """
    kth = torch.topk(rows, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    mask = rows >= kth
    # counted as bytes: a bool sum widens the whole mask to int64 first (8x its size)
    count = mask.view(torch.uint8).sum(dim=1, dtype=torch.int32)
    tied_rows = count > k
    if bool(tied_rows.any()):
        sub, value = rows[tied_rows], kth[tied_rows]
        above = sub > value
        tied = sub == value
        need = k - above.sum(dim=1, keepdim=True)
        mask[tied_rows] = above | (tied & (tied.cumsum(dim=1) <= need))
    nan_rows = count < k
    if bool(nan_rows.any()):
        order = sorted_rows(rows[nan_rows])[1][:, :k]
        fixed = torch.zeros_like(mask[nan_rows])
        mask[nan_rows] = fixed.scatter_(1, order, True)
    return mask


def local_mask(rows: torch.Tensor, p: float, order: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask of the exactly-k top units of each row (stable tie-break).

    ``order`` is ``rank_order(rows)`` when the caller has it already.
    """
    n, d = rows.shape
    k = kept_count(d, p)
    if k > 0 and order is None and not rows.is_meta:
        return top_k_mask(rows, k)
    mask = torch.zeros((n, d), dtype=torch.bool, device=rows.device)
    if k > 0:
        if order is None:
            order = sorted_rows(rows)[1]
        elif order.shape != rows.shape:
            raise FeatureError(
                f"order has shape {tuple(order.shape)} but the rows are {tuple(rows.shape)}; "
                "pass rank_order() of these same features."
            )
        mask.scatter_(1, order[:, :k].to(device=rows.device, dtype=torch.int64), True)
    return mask


def global_mask(rows: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Boolean mask of the units strictly above a global cutoff."""
    if not np.isfinite(cutoff):
        raise ParameterError(f"the global cutoff must be finite, got {cutoff!r}.")
    return rows > float(cutoff)


def survivor_mask(rows: torch.Tensor, p: float, cutoff: float | None,
                  order: torch.Tensor | None = None) -> torch.Tensor:
    """Survivors under a local threshold (``cutoff`` None) or a global ``cutoff``."""
    check_percentile(p)
    return local_mask(rows, p, order) if cutoff is None else global_mask(rows, cutoff)


def ash_p(x: torch.Tensor, p: float = 65.0, cutoff: float | None = None,
         order: torch.Tensor | None = None) -> torch.Tensor:
    """ASH-P: zero every unit below the sample's p-th percentile; survivors keep their value."""
    rows = _as_rows(x)
    mask = survivor_mask(rows, p, cutoff, order)
    return _finish(torch.where(mask, rows, torch.zeros((), dtype=rows.dtype)), x)


def ash_b(x: torch.Tensor, p: float = 65.0, cutoff: float | None = None,
         order: torch.Tensor | None = None) -> torch.Tensor:
    """ASH-B: survivors become ``s1 / k`` (s1 = the row's sum before pruning)."""
    rows = _as_rows(x)
    mask = survivor_mask(rows, p, cutoff, order)
    s1 = rows.sum(dim=1, keepdim=True)
    k = mask.sum(dim=1, keepdim=True).to(torch.float32)
    fill = torch.where(k > 0, s1 / k.clamp_min(1.0), torch.zeros_like(s1))
    return _finish(torch.where(mask, fill, torch.zeros((), dtype=rows.dtype)), x)


def ash_s(x: torch.Tensor, p: float = 65.0, cutoff: float | None = None,
         order: torch.Tensor | None = None) -> torch.Tensor:
    """ASH-S: prune as ASH-P, then scale survivors by ``exp(s1 / s2)`` (s2 = pruned sum)."""
    rows = _as_rows(x)
    mask = survivor_mask(rows, p, cutoff, order)
    out = torch.where(mask, rows, torch.zeros((), dtype=rows.dtype))  # a new tensor
    s2 = out.sum(dim=1)
    factor = scale_factor(rows.sum(dim=1), s2)
    # Only survivors of rows with s2 != 0 are scaled; everything else is exactly 0 (a row
    # with s2 == 0 is a zero row, and pruned units never become 0 * inf = NaN on overflow).
    # Scaled in place: two [rows, D] temporaries fewer on the dashboard's first page.
    zero_rows = s2 == 0
    out.mul_(torch.where(zero_rows, torch.zeros((), dtype=rows.dtype), factor)[:, None])
    overflow = torch.isinf(factor) & ~zero_rows
    if not rows.is_meta and bool(overflow.any()):
        out[overflow] = torch.where(mask[overflow], out[overflow],
                                    torch.zeros((), dtype=rows.dtype))
    return _finish(out, x)


def ash_rand(
    x: torch.Tensor,
    p: float = 65.0,
    cutoff: float | None = None,
    seed: int | None = 0,
    split: str = "",
    rows: int | Sequence[int] | np.ndarray = 0,
    low: float = 0.0,
    high: float = 10.0,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """ASH-RAND: survivors become uniform(low, high) draws, row by row from the stream of
    (seed, ``split``, row index) (``ash_core.maths.draws``). ``rows``: the index in its
    split of ``x``'s first row (the rows are consecutive), or of every row."""
    flat = _as_rows(x)
    mask = survivor_mask(flat, p, cutoff, order)
    seed = 0 if seed is None else int(seed)
    dim = flat.shape[1]
    if isinstance(rows, (int, np.integer)):
        drawn = row_draws(seed, split, int(rows), flat.shape[0], dim, low, high)
    else:
        drawn = draws_at(seed, split, np.asarray(rows), dim, low, high)
        if drawn.shape[0] != flat.shape[0]:
            raise ParameterError(f"ash-rand: {drawn.shape[0]} row indices for "
                                 f"{flat.shape[0]} rows.")
    draws = torch.from_numpy(drawn).to(device=flat.device, dtype=flat.dtype)
    return _finish(torch.where(mask, draws, torch.zeros((), dtype=flat.dtype)), x)


def scale_factor(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``exp(s1 / s2)`` with the ratio defined as 0 where ``s2 == 0`` (so never NaN)."""
    safe = torch.where(s2 != 0, s2, torch.ones_like(s2))
    ratio = torch.where(s2 != 0, s1 / safe, torch.zeros_like(s1))
    return torch.exp(ratio)


def scale(x: torch.Tensor, p: float = 85.0, order: torch.Tensor | None = None) -> torch.Tensor:
    """SCALE (Xu et al., ICLR 2024): the ASH-S factor ``exp(s1/s2(p))`` on unpruned features."""
    rows = _as_rows(x)
    mask = local_mask(rows, check_percentile(p), order)
    s2 = torch.where(mask, rows, torch.zeros((), dtype=rows.dtype)).sum(dim=1)
    factor = scale_factor(rows.sum(dim=1), s2)
    # A row with no survivors has s2 == 0; SCALE then leaves it unchanged (factor 1).
    return _finish(rows * factor[:, None], x)


def react(x: torch.Tensor, clip: float) -> torch.Tensor:
    """ReAct (Sun et al., NeurIPS 2021): clip activations at ``clip`` from above."""
    if not np.isfinite(clip):
        raise ParameterError(f"ReAct clip value must be finite, got {clip!r}.")
    rows = _as_rows(x)
    return _finish(rows.clamp(max=float(clip)), x)


def percentile_of(features: torch.Tensor | np.ndarray, p: float) -> float:
    """The p-th percentile (numpy's linear interpolation) of all activations given.

    Used to fit global ASH thresholds and ReAct's clip value on the ``id_fit`` split.
    """
    check_percentile(p)
    if isinstance(features, torch.Tensor):  # via fp32: numpy has no bfloat16
        arr = features.detach().cpu().to(torch.float32).numpy()
    else:
        arr = features
    flat = np.asarray(arr, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        raise FeatureError("cannot fit a threshold on an empty set of activations.")
    return float(np.percentile(flat, p))
