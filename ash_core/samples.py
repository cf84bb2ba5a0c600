"""Per-sample inspection: what shaping does to one image's activations and prediction.

Pure functions returning plain data (numpy arrays, floats, DataFrames) for the
dashboard's inspector and reports; no plotting here. (The module is not called
``inspect``: that name would shadow the standard library's.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ash_core.errors import ParameterError
from ash_core.maths.scores import energy_score
from ash_core.maths.shaping import kept_count
from ash_core.methods import Shaper


@dataclass(frozen=True)
class SampleInspection:
    """One sample before and after shaping.

    Units are ordered by their activation before shaping (largest first):
    ``units[i]`` is the unit index of bar ``i``; ``before``/``after`` hold the values
    in that order and ``kept`` says which units are non-zero after shaping.
    """

    units: np.ndarray
    before: np.ndarray
    after: np.ndarray
    kept: np.ndarray
    #: activation value of the method's cut (the k-th largest value for local
    #: thresholds, the fitted value for global/clip methods); None if it has none.
    threshold_value: float | None
    threshold_kind: str
    top_before: pd.DataFrame
    top_after: pd.DataFrame
    energy_before: float
    energy_after: float
    #: percentile (0-100) of the sample's energy within the ID split's energies,
    #: unshaped ("before") and shaped with the same setting ("after").
    percentile_before: float
    percentile_after: float
    predicted_before: str
    predicted_after: str
    #: what "kept" means for this method, in words (``kept_units``)
    kept_rule: str = ""

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())


def kept_units(shaper: Shaper, before_sorted: np.ndarray) -> tuple[np.ndarray, str]:
    """Which units the method keeps, for units sorted by activation (largest first), and
    the rule in words. One definition, the shaping's own: under a local threshold the k =
    D - round(D*p/100) units of highest rank survive (a survivor may be 0: ranks, not
    values, decide); under a global cutoff the units strictly above it; a method that
    prunes nothing (ReAct clips, SCALE rescales, DICE and the scores leave the features
    alone) keeps every unit."""
    d = before_sorted.size
    spec = shaper.spec
    if spec.keeps_features or spec.variant is not None:
        return np.ones(d, dtype=bool), "no unit is pruned: the method leaves the features alone"
    if shaper.cutoff is not None and spec.fit == "always":
        return np.ones(d, dtype=bool), (f"no unit is pruned: activations are clipped at "
                                        f"{float(shaper.cutoff):.3g}")
    if shaper.cutoff is not None:
        return before_sorted > float(shaper.cutoff), (
            f"kept: the units above the global cutoff {float(shaper.cutoff):.3g}")
    if shaper.p is None:
        return np.ones(d, dtype=bool), "no unit is pruned"
    k = kept_count(d, shaper.p)
    mask = np.arange(d) < k
    if spec.grid == "row-scale":  # SCALE: the top k define s2, every unit is rescaled
        return mask, (f"kept: the k = {k} of D = {d} top-ranked units that define s2 (no "
                      "unit is pruned; every one is rescaled)")
    return mask, f"kept: the k = {k} of D = {d} top-ranked units (k = D - round(D*p/100))"


def _row(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) \
        else x.to(torch.float32)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[0] != 1:
        raise ParameterError(f"inspect one sample: expected [D] or [1, D], got {tuple(t.shape)}.")
    return t


def top_classes(logits: torch.Tensor | np.ndarray, classes: Sequence[str],
                k: int = 5) -> pd.DataFrame:
    """The k most probable classes of one sample: columns class, index, probability."""
    lg = _row(logits)[0]
    probs = torch.softmax(lg, dim=0).numpy().astype(np.float64)
    k = min(k, probs.size)
    idx = np.argsort(-probs, kind="stable")[:k]
    return pd.DataFrame({"class": [str(classes[i]) for i in idx], "index": idx,
                         "probability": probs[idx]})


def percentile_within(value: float, reference: np.ndarray) -> float:
    """Share (in %) of ``reference`` values <= ``value`` (ties count as half)."""
    return float(_percentiles_within(np.asarray([value], dtype=np.float64), reference)[0])


def _percentiles_within(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``percentile_within`` of several values, sorting the reference once."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).reshape(-1))
    if ref.size == 0:
        raise ParameterError("cannot compute a percentile within an empty reference set.")
    lo = np.searchsorted(ref, values, side="left")
    hi = np.searchsorted(ref, values, side="right")
    return 100.0 * (lo + 0.5 * (hi - lo)) / ref.size


def threshold_value(shaper: Shaper, features: torch.Tensor) -> tuple[float | None, str]:
    """The activation value where the method cuts for this sample, and what it means
    (none for methods that leave activations alone: DICE's fitted cutoff is on weights)."""
    if shaper.spec.keeps_features:
        return None, "none"
    if shaper.cutoff is not None:
        kind = "clip" if shaper.spec.fit == "always" else "global threshold"
        return float(shaper.cutoff), kind
    if shaper.p is None:
        return None, "none"
    row = _row(features)[0]
    k = kept_count(row.numel(), shaper.p)
    if k <= 0:
        return float(row.max()), "local threshold (nothing kept)"
    return float(torch.sort(row, descending=True, stable=True).values[k - 1]), "local threshold"


def shape_sample(shaper: Shaper, split_features: torch.Tensor, index: int,
                 split: str) -> torch.Tensor:
    """Row ``index`` of split ``split`` shaped exactly as when the whole split is shaped:
    ``[1, D]``. The row is shaped alone; a stochastic method (ASH-RAND) draws it from the
    stream of (seed, ``split``, ``index``), as the evaluation of the split does."""
    n = split_features.shape[0]
    if not 0 <= index < n:
        raise ParameterError(f"sample index {index} is out of range (0..{n - 1}).")
    return shaper(split_features[index : index + 1], split=split, rows=index)


def inspect_sample(
    features: torch.Tensor | np.ndarray,
    shaper: Shaper,
    weight: torch.Tensor,
    bias: torch.Tensor,
    classes: Sequence[str],
    id_energy_before: np.ndarray,
    id_energy_after: np.ndarray,
    k: int = 5,
    shaped: torch.Tensor | None = None,
) -> SampleInspection:
    """Everything the inspector shows for one sample (``features`` is one row).

    ``id_energy_before``/``after`` are the energy scores of the ID split unshaped
    and shaped with the same ``shaper``; the sample's energy is placed within them.
    ``shaped`` is the row already shaped in its split's context (``shape_sample``);
    without it the row is shaped alone, which for ASH-RAND gives other draws than
    the split's evaluation.
    """
    x = _row(features)
    shaped = shaper(x.clone()) if shaped is None else _row(shaped)
    shaped = shaped.to(torch.float32)
    if shaped.shape != x.shape:
        raise ParameterError(
            f"shaped row has shape {tuple(shaped.shape)} but the sample is {tuple(x.shape)}."
        )
    w = torch.as_tensor(weight, dtype=torch.float32)
    b = torch.as_tensor(bias, dtype=torch.float32)
    logits_before = torch.addmm(b, x, w.T)
    w_after, b_after = shaper.head(w, b)  # a method on the head (DICE) scores with its own
    logits_after = torch.addmm(b_after, shaped, w_after.T)
    before = x[0].numpy().astype(np.float64)
    after = shaped[0].numpy().astype(np.float64)
    order = np.argsort(-before, kind="stable")
    e_before = float(energy_score(logits_before)[0])
    e_after = float(energy_score(logits_after)[0])
    thr, kind = threshold_value(shaper, x)
    kept, rule = kept_units(shaper, before[order])
    tb = top_classes(logits_before, classes, k)
    ta = top_classes(logits_after, classes, k)
    return SampleInspection(
        units=order,
        before=before[order],
        after=after[order],
        kept=kept,
        threshold_value=thr,
        threshold_kind=kind,
        top_before=tb,
        top_after=ta,
        energy_before=e_before,
        energy_after=e_after,
        percentile_before=percentile_within(e_before, id_energy_before),
        percentile_after=percentile_within(e_after, id_energy_after),
        predicted_before=str(tb["class"].iloc[0]),
        predicted_after=str(ta["class"].iloc[0]),
        kept_rule=rule,
    )


@dataclass(frozen=True)
class SampleScore:
    """One sample's detection score (the setting's own: energy, MSP, KNN, GEN, ...)
    without and with the method, each placed within the ID scores of the same result."""

    name: str
    before: float
    after: float
    percentile_before: float
    percentile_after: float


def _score_of(result, split: str, id_name: str, index: int) -> float:
    scores = result.id_scores if split == id_name else result.ood_scores[split]
    return float(np.asarray(scores)[index])


def sample_score(before, after, id_name: str, split: str, index: int) -> SampleScore:
    """``after`` (an ``EvalResult`` of the setting) and ``before`` (the same score without
    the method) at one sample of ``split``; percentiles within each result's ID scores."""
    b = _score_of(before, split, id_name, index)
    a = _score_of(after, split, id_name, index)
    return SampleScore(after.score, b, a, percentile_within(b, before.id_scores),
                       percentile_within(a, after.id_scores))


def worst_samples(id_scores: np.ndarray, ood_scores: Mapping[str, np.ndarray], id_name: str,
                  kind: str = "fp", n: int = 10) -> pd.DataFrame:
    """The most confidently wrong samples at the operating point of a detector.

    ``kind="fp"``: OOD samples scored most ID-like (highest scores over all OOD sets);
    ``kind="fn"``: ID samples scored most OOD-like (lowest scores). Columns: set,
    index, score, id_percentile (the score's percentile within the ID scores).
    """
    ids = np.asarray(id_scores, dtype=np.float64).reshape(-1)
    if kind == "fp":
        parts = [pd.DataFrame({"set": name, "index": np.arange(len(s)),
                               "score": np.asarray(s, dtype=np.float64)})
                 for name, s in ood_scores.items() if len(s)]
        if not parts:
            return pd.DataFrame(columns=["set", "index", "score", "id_percentile"])
        df = pd.concat(parts, ignore_index=True)
        df = df.nlargest(n, "score", keep="first")
    elif kind == "fn":
        df = pd.DataFrame({"set": id_name, "index": np.arange(ids.size), "score": ids})
        df = df.nsmallest(n, "score", keep="first")
    else:
        raise ParameterError(f"kind must be 'fp' or 'fn', got {kind!r}.")
    df = df.reset_index(drop=True)
    scores = df["score"].to_numpy(dtype=np.float64)
    df["id_percentile"] = _percentiles_within(scores, ids) if scores.size else scores
    return df
