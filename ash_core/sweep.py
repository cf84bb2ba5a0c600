"""Sweeps over (method, p): the paper-style table and the dashboard's trade-off views.

``sweep`` returns one row per (method, p). This first version evaluates each point
with ``Evaluator`` (exact, one shaping pass per p); the score-cube engine replaces
the inner loop without changing the signature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .bundle import Bundle
from .errors import ParameterError
from .evaluate import Evaluator
from .metrics import METRIC_NAMES
from .registry import get_method


def parse_grid(text: str) -> list[float]:
    """Parse ``START:STOP:STEP`` (STOP inclusive) or a comma list into percentiles."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1.0
            if step <= 0 or stop < start:
                raise ValueError
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 10) for i in range(n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(
            f"cannot parse the p grid {text!r}; use START:STOP:STEP (STOP inclusive, e.g. "
            "60:95:5) or a comma list (e.g. 65,80,90)."
        ) from None
    if not values:
        raise ParameterError(f"the p grid {text!r} is empty.")
    for v in values:
        if not 0 <= v < 100:
            raise ParameterError(f"p grid value {v:g} is outside [0, 100).")
    return values


def sweep(
    bundle: Bundle,
    methods: Sequence[str],
    grid: Sequence[float],
    threshold: str = "local",
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per (method, p): per-OOD-set and average metrics, ID accuracy shaped/unshaped.

    Columns: ``method``, ``p``, ``id_acc``, ``id_acc_unshaped``, ``{set}/{metric}`` for
    each OOD set and metric, and ``average/{metric}``. Methods without a percentile
    (``none``) contribute a single row with ``p`` NaN.
    """
    ev = evaluator or Evaluator(bundle, ood)
    points: list[tuple[str, float | None]] = []
    for m in methods:
        spec = get_method(m)
        points += [(m, float(p)) for p in grid] if spec.has_p else [(m, None)]
    rows = []
    for i, (m, p) in enumerate(points):
        r = ev.evaluate(m, p, threshold if threshold in get_method(m).thresholds else "local",
                        score, convention, seed)
        row = {"method": m, "p": np.nan if p is None else p,
               "id_acc": r.id_accuracy["shaped"], "id_acc_unshaped": r.id_accuracy["unshaped"]}
        for name, metrics in r.ood.items():
            for k in METRIC_NAMES:
                row[f"{name}/{k}"] = metrics[k]
        for k, v in r.average.items():
            row[f"average/{k}"] = v
        rows.append(row)
        if progress:
            progress(i + 1, len(points))
    return pd.DataFrame(rows)
