"""The paper's comparison: every method side by side, and the data of its Figure 1.

``leaderboard(bundle)`` lists every registered method the bundle can serve (new methods
are picked up from the registry), evaluates each at its declared defaults or, with
``validated=True``, at the parameters ``ash_core.search.grid`` chooses on the bundle's
validation splits, and returns one row per method: parameters and where they came from,
metrics per OOD set and averaged, ID accuracy shaped and unshaped, seconds taken. A
method the bundle cannot serve (fitted on ``id_fit`` where there is none) is listed as
unavailable with the reason; nothing raises for one method's failure.

``figure1(board, sweep_frame)`` is the paper's Figure 1 as data: ID accuracy against an
average OOD metric, the ASH variants as curves over p (from ``ash_core.sweep``, i.e. the
score cube), every other method one point, and the Pareto front over all of them
(``ash_core.maths.pareto``). No Streamlit here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ash_core.bundle import Bundle
from ash_core.engine.exact import EvalResult, Evaluator
from ash_core.errors import AshError, BundleError, ParameterError
from ash_core.maths.metrics import check_convention
from ash_core.maths.pareto import pareto_mask
from ash_core.methods import get_method, list_methods
from ash_core.search.grid import (
    SEARCH_METRICS,
    ValidationSplits,
    search,
    search_points,
    validation_splits,
)
from ash_core.setting import Setting

#: ``progress(done, total, method)``: called before each method and once at the end
Progress = Callable[[int, int, str], None]
#: ``partial(board)``: called after each method tried, with the board so far
Partial = Callable[["Leaderboard"], None]
#: the methods drawn as curves over p in Figure 1
CURVE_FAMILY = "ash"
#: the metrics Figure 1 can plot against ID accuracy
FIGURE1_METRICS = ("auroc", "fpr95")


@dataclass(frozen=True)
class Row:
    """One method at one choice of parameters."""

    method: str
    params: dict[str, float]
    source: str  # "default", or "validated on id_val ... vs ood_val ... (AUROC)", ...
    validated: bool
    result: EvalResult
    seconds: float

    @property
    def label(self) -> str:
        return self.result.setting.label()


@dataclass
class Leaderboard:
    """Every servable method's row, the unavailable ones with reasons, and what was asked."""

    bundle: str
    ood: list[str]
    threshold_mode: str
    score: str
    convention: str
    validated: bool
    metric: str
    rows: list[Row] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    validated_on: ValidationSplits | None = None
    #: why nothing could be validated (a bundle without validation splits); None otherwise
    note: str | None = None

    def frame(self, seconds: bool = True, metrics: Sequence[str] = ("auroc", "fpr95")
              ) -> pd.DataFrame:
        """One row per method: ``method``, ``params``, ``average/{metric}``, each OOD
        group's ``average ({group})/{metric}`` (bundles that declare groups), ``id_acc``,
        ``id_acc_unshaped``, ``{set}/{metric}`` per OOD set, ``parameters`` (default or
        validated on what) and ``seconds`` (fractions, as ``ash-explore sweep``'s)."""
        records = []
        for r in self.rows:
            rec: dict[str, Any] = {
                "method": r.method,
                "params": " ".join(f"{k}={v:g}" for k, v in r.params.items()) or "-"}
            rec.update({f"average/{k}": r.result.average[k] for k in metrics})
            for group, avg in r.result.group_averages.items():
                rec.update({f"average ({group})/{k}": avg[k] for k in metrics})
            rec["id_acc"] = r.result.id_accuracy["shaped"]
            rec["id_acc_unshaped"] = r.result.id_accuracy["unshaped"]
            for name, m in r.result.ood.items():
                rec.update({f"{name}/{k}": m[k] for k in metrics})
            rec["parameters"] = r.source
            if seconds:
                rec["seconds"] = r.seconds
            records.append(rec)
        return pd.DataFrame(records)

    def statement(self) -> str:
        """One sentence for exports: which parameters were validated, and on what."""
        searched = [r.method for r in self.rows if r.validated]
        if not self.validated:
            return "Every method at its declared default parameters (nothing validated)."
        if self.validated_on is None:
            return f"Nothing validated: {self.note}"
        return (f"Parameters of {', '.join(searched) or 'no method'} were chosen on "
                f"{self.validated_on.describe()} by {self.metric.upper()} (OpenOOD's rule, "
                "each method's declared search grid); the test sets were not used. The "
                "others are at their declared defaults (see the 'parameters' column).")


# --------------------------------------------------------------------------- which methods


def unavailable_reason(bundle: Bundle, method: str, threshold_mode: str) -> str | None:
    """Why ``bundle`` cannot serve ``method`` in ``threshold_mode`` mode (None when it can)."""
    spec = get_method(method)
    if threshold_mode not in spec.threshold_modes:
        return f"{method} supports threshold {'/'.join(spec.threshold_modes)} only"
    if bundle.id_fit is None and spec.needs_id_fit(threshold_mode):
        return (f"{method} is fitted on ID training features (an id_fit split) and bundle "
                f"{bundle.name} has none; re-extract with an id_fit split to rank it")
    return None


def mode_for(method: str, threshold_mode: str) -> str:
    """``threshold_mode`` where the method supports it, else its first mode (as sweeps do)."""
    modes = get_method(method).threshold_modes
    return threshold_mode if threshold_mode in modes else modes[0]


def search_skip_reason(method: str, search_fitted: bool = False) -> str | None:
    """Why ``method`` stays at its defaults in a validated leaderboard (None: searched).

    A grid of one point has nothing to choose; a score on features refits on id_fit at
    every grid point (KNN: minutes on the demo bundles), so it is searched only when
    ``search_fitted`` is set."""
    points = len(search_points(method))
    if points < 2:
        return "default (no search grid)"
    if get_method(method).feature_score is not None and not search_fitted:
        return (f"default (not searched: each of its {points} grid points refits on id_fit; "
                f"run `ash-explore search BUNDLE --method {method}`)")
    return None


# --------------------------------------------------------------------------- the board


def leaderboard(source: Bundle | Evaluator, *, ood: Iterable[str] | None = None,
                threshold_mode: str = "local", score: str = "energy", convention: str = "id",
                validated: bool = False, metric: str = "auroc",
                methods: Sequence[str] | None = None, search_fitted: bool = False,
                progress: Progress | None = None, partial: Partial | None = None
                ) -> Leaderboard:
    """Every method of ``methods`` (default: the whole registry) on ``source``.

    Each row's numbers are ``Evaluator.evaluate`` at the row's parameters (exact, bit for
    bit the CLI's); with ``validated`` those parameters are ``search``'s choice on the
    validation splits by ``metric`` (a bundle without them: every row at its defaults and
    ``note`` says why). Fitted state (thresholds, feature scores) comes from the
    Evaluator's memory and the on-disk cache of ``ash_core.engine.fit``. ``partial`` sees
    the board after each method, so a page can show the rows as they come.
    """
    check_convention(convention)
    if metric not in SEARCH_METRICS:
        raise ParameterError(f"unknown metric {metric!r}; use one of {', '.join(SEARCH_METRICS)}.")
    ev = source if isinstance(source, Evaluator) else Evaluator(source, ood, warn=False)
    if ood is not None and isinstance(source, Evaluator):
        ev = source.with_ood(ood)
    board = Leaderboard(ev.bundle.name, list(ev.ood_names), threshold_mode, score, convention,
                        validated, metric)
    if validated:
        board.validated_on, board.note = validation_or_reason(ev.bundle)
    names = list(methods) if methods is not None else list_methods()
    for i, method in enumerate(names):
        if progress:
            progress(i, len(names), method)
        reason = unavailable_reason(ev.bundle, method, mode_for(method, threshold_mode))
        if reason:
            board.unavailable[method] = reason
            continue
        try:
            board.rows.append(_row(ev, board, method, search_fitted))
        except AshError as exc:  # one method's failure is that method's row, said plainly
            board.unavailable[method] = str(exc)
        if partial:
            partial(board)
    if progress:
        progress(len(names), len(names), "")
    return board


def _row(ev: Evaluator, board: Leaderboard, method: str, search_fitted: bool) -> Row:
    """One method timed: search (when asked and possible), then one exact evaluation."""
    start = time.perf_counter()
    chosen = choose_params(ev, method, board.validated_on, threshold_mode=board.threshold_mode,
                           score=board.score, convention=board.convention,
                           metric=board.metric, search_fitted=search_fitted)
    result = ev.evaluate(chosen.setting)
    return Row(method, dict(result.params), chosen.source, chosen.validated, result,
               time.perf_counter() - start)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Choice:
    """A method's setting for a comparison and where its parameters came from."""

    setting: Setting
    #: "default", "default (no search grid)", "validated on id_val ... (AUROC)", ...
    source: str
    #: in one word: "default" or "validated" (a front end may say "slider")
    origin: str

    @property
    def validated(self) -> bool:
        return self.origin == "validated"

    @property
    def label(self) -> str:
        """``ash-s p=75 local (validated)``: the parameters used and where they came from."""
        return f"{self.setting.label()} ({self.origin})"


def validation_or_reason(bundle: Bundle) -> tuple[ValidationSplits | None, str | None]:
    """(the bundle's validation splits, None), or (None, why it has none)."""
    try:
        return validation_splits(bundle), None
    except BundleError as exc:
        return None, str(exc)


def choose_params(ev: Evaluator, method: str, validated_on: ValidationSplits | None, *,
                  threshold_mode: str = "local", score: str = "energy", convention: str = "id",
                  metric: str = "auroc", search_fitted: bool = False) -> Choice:
    """``method``'s parameters as the leaderboard picks them: its declared defaults, or,
    with ``validated_on`` (``validation_splits(bundle)``; None: defaults), ``search``'s
    choice by ``metric`` unless ``search_skip_reason`` keeps it at its defaults. The one
    rule behind every "validated parameters" comparison (board, Compare's overlay)."""
    base = Setting(method, {}, mode_for(method, threshold_mode), score, convention).validated()
    if validated_on is None:
        return Choice(base, "default", "default")
    skip = search_skip_reason(method, search_fitted)
    if skip is not None:
        return Choice(base, skip, "default")
    found = search(ev, base, metric=metric)
    return Choice(base.with_params(**found.selected),
                  f"validated on {found.validated_on.describe()} ({metric.upper()})",
                  "validated")


# --------------------------------------------------------------------------- Figure 1


@dataclass
class Figure1:
    """The data of the paper's Figure 1 for one OOD metric (fractions).

    ``curves``: columns method, p, id_acc, value (the ASH variants over p);
    ``points``: method, label, id_acc, value (every other method at its leaderboard row);
    ``front``: the Pareto-optimal rows of both (columns method, label, p, id_acc, value).
    """

    metric: str
    curves: pd.DataFrame
    points: pd.DataFrame
    front: pd.DataFrame

    @property
    def maximize(self) -> bool:
        return self.metric != "fpr95"


def curve_methods(methods: Iterable[str]) -> list[str]:
    """The methods Figure 1 draws as curves over p: the ASH family, with a p."""
    return [m for m in methods
            if get_method(m).family == CURVE_FAMILY and get_method(m).has_p]


def figure1(board: Leaderboard, sweep_frame: pd.DataFrame, metric: str = "auroc"
            ) -> Figure1:
    """Figure 1 from a leaderboard and a sweep of the ASH variants (``ash_core.sweep``:
    columns method, p, id_acc, ``average/{metric}``). Rows of curve methods in the board
    are left out of the points (their curve stands for them)."""
    if metric not in FIGURE1_METRICS:
        raise ParameterError(f"unknown Figure 1 metric {metric!r}; use one of "
                          f"{', '.join(FIGURE1_METRICS)}.")
    col = f"average/{metric}"
    curved = curve_methods(dict.fromkeys(sweep_frame["method"])) if len(sweep_frame) else []
    curves = sweep_frame[sweep_frame["method"].isin(curved)]
    curves = pd.DataFrame({"method": curves["method"].to_numpy(),
                           "p": curves["p"].to_numpy(dtype=float),
                           "id_acc": curves["id_acc"].to_numpy(dtype=float),
                           "value": curves[col].to_numpy(dtype=float)})
    rows = [r for r in board.rows if r.method not in curved]
    points = pd.DataFrame({"method": [r.method for r in rows],
                           "label": [r.label for r in rows],
                           "id_acc": [_float(r.result.id_accuracy["shaped"]) for r in rows],
                           "value": [r.result.average[metric] for r in rows]},
                          columns=["method", "label", "id_acc", "value"])
    both = pd.concat([
        curves.assign(label=[f"{m} p={p:g}" for m, p in zip(curves["method"], curves["p"],
                                                            strict=True)]),
        points.assign(p=np.nan)], ignore_index=True)
    on_front = pareto_mask(both["id_acc"], both["value"], True, metric != "fpr95")
    front = both[on_front].sort_values("id_acc")[["method", "label", "p", "id_acc", "value"]]
    return Figure1(metric, curves, points, front.reset_index(drop=True))


def _float(v: float | None) -> float:
    return float("nan") if v is None else float(v)
