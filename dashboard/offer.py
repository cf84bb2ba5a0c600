"""What a bundle can serve (methods, threshold modes) and what p means on it, in words.

A method needs the bundle's ``id_fit`` split, or a stored feature variant (ODIN's), when
its registry spec says so (``MethodSpec.unavailable(bundle, threshold)`` says why, in
words); a bundle without it is offered only the rest, and the page says why. The numbers behind the p captions come from ``ash_core`` (``kept_count``,
``ash_core.maths.stats``); this module only phrases them.
"""

from __future__ import annotations

import numpy as np

from ash_core import Bundle, get_method, kept_count, list_methods
from ash_core.maths.stats import share_pruning_only_zeros, zero_share
from ash_core.setting import own_score_reason, score_unavailable


def _servable(bundle: Bundle, method: str, threshold: str) -> bool:
    return not get_method(method).unavailable(bundle, threshold)


def thresholds_for(bundle: Bundle, method: str) -> list[str]:
    """The threshold modes of ``method`` this bundle can serve (may be empty)."""
    return [t for t in get_method(method).threshold_modes if _servable(bundle, method, t)]


def methods_for(bundle: Bundle) -> list[str]:
    """Registered methods this bundle can serve in at least one threshold mode."""
    return [m for m in list_methods() if thresholds_for(bundle, m)]


def scores_for(bundle: Bundle | None, method: str) -> list[str]:
    """The scores the score box offers with ``method``: every score the method takes
    (``MethodSpec.scores``: on logits and on features) that the bundle can serve; [] for a
    method that scores itself (``score_note`` says why)."""
    if own_score_reason(method):
        return []
    return [sc for sc in get_method(method).scores
            if bundle is None or not score_unavailable(bundle, sc)]


def score_note(bundle: Bundle | None, method: str) -> str:
    """Why the score box is disabled, or which scores it leaves out ("" when neither)."""
    why = own_score_reason(method)
    if why:
        return f"Score: {why}."
    if bundle is None:
        return ""
    why_not: dict[str, list[str]] = {}
    for sc in get_method(method).scores:
        reason = score_unavailable(bundle, sc)
        if reason:
            why_not.setdefault(reason.split(" ", 2)[-1], []).append(sc)
    return " ".join(f"Scores not offered: {', '.join(scs)}: each {reason}."
                    for reason, scs in why_not.items())


def sweepable_for(bundle: Bundle) -> list[str]:
    """The methods a trade-off over p shows: those with a parameter p, and the unshaped
    baseline (a method without p would be one point, and a fitted score on features an
    exact pass of its own, so they belong in a side-by-side table, not in this sweep)."""
    return [m for m in methods_for(bundle) if get_method(m).has_p or m == "none"]


def missing_caption(bundle: Bundle) -> str:
    """Why methods or modes are not offered ("" when everything is)."""
    methods = [m for m in list_methods() if not thresholds_for(bundle, m)]
    declared = {t for m in list_methods() for t in get_method(m).threshold_modes}
    served = {t for m in list_methods() for t in thresholds_for(bundle, m)}
    modes = sorted(declared - served)
    what = [*(f"method {m}" for m in methods), *(f"threshold {t}" for t in modes)]
    if not what:
        return ""
    why: dict[str, list[str]] = {}
    for m in list_methods():
        for t in get_method(m).threshold_modes:
            if not _servable(bundle, m, t):
                why.setdefault(get_method(m).unavailable(bundle, t), []).append(f"{m} ({t})")
    return f"Not offered: {', '.join(what)}. " + " ".join(
        f"{', '.join(ms)}: {reason}." for reason, ms in why.items())


def prunes_units(method: str, threshold: str) -> bool:
    """Whether p sets a per-sample kept count k (ASH methods, local thresholds)."""
    spec = get_method(method)
    return spec.family == "ash" and spec.ranks and threshold == "local"


def p_caption(bundle: Bundle, method: str, p: int, threshold: str,
              zero_counts: np.ndarray, dim: int | None = None) -> str:
    """What p means on this bundle: the kept count k, whether this step changed it, the
    share of zero activations and whether pruning removes only zeros (``dim``: units per
    sample where shaping happens, the bundle's feature width by default)."""
    dim = dim or bundle.dim
    zeros = f"{100 * zero_share(zero_counts, dim):.1f}% of the ID activations are exactly 0"
    if not get_method(method).has_p:
        return zeros
    k = kept_count(dim, p)
    if get_method(method).ranks and threshold == "local" and not prunes_units(method, threshold):
        return f"p = {p}: s2 sums the top k = {k} of D = {dim} units; {zeros}"
    if not prunes_units(method, threshold):
        return (f"p = {p}: a percentile of the id_fit activations (no per-sample kept "
                f"count); {zeros}")
    text = f"p = {p} keeps k = {k} of D = {dim} units per sample"
    same = [q for q in (p - 1, p + 1) if 0 <= q < 100 and kept_count(dim, q) == k]
    if same:
        text += f" (the same k as p = {' and '.join(map(str, same))}: no change in the numbers)"
    text += f"; {zeros}"
    only = share_pruning_only_zeros(zero_counts, dim, p)
    if only > 0:
        text += (f". At this p, pruning removes only zeros in {100 * only:.1f}% of ID samples "
                 f"(they have at least D - k = {dim - k} zero units)")
    return text + "."
