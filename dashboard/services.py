"""The dashboard's former all-in-one data module, now a small facade.

Its jobs live in modules of their own: ``config`` (start-up arguments), ``paths`` (which
bundles a link may open), ``cache`` (cached loading and exact evaluation), ``replay``
(which engine serves a setting), ``plotdata`` (histograms, curves, sweeps), ``inspection``
and ``images``. What remains here keeps the old call signatures for the export view.
"""

from __future__ import annotations

from collections.abc import Sequence

from ash_core import Bundle, EvalResult
from ash_core import curves as ac
from dashboard import plotdata, replay
from dashboard.cache import baseline, metrics_frame, provenance

__all__ = ["curve_data", "distribution_data", "metrics_frame", "provenance"]


def distribution_data(bundle: Bundle, ood: Sequence[str], method: str, p: float | None,
                      threshold: str, score: str, convention: str, bins: int = 80,
                      engine: str = "auto"
                      ) -> tuple[ac.Histogram, ac.Histogram, float, float]:
    """``plotdata.histograms`` of this setting (``engine``: an override, as in the URL)."""
    rep = replay.replay(bundle, ood, method, p, threshold, score, convention, engine)
    base = baseline(bundle, ood, score, convention)
    return plotdata.histograms(bundle, rep.result, base, bins)


def curve_data(result: EvalResult, base: EvalResult, bundle: Bundle, ood: Sequence[str],
               kind: str = "roc", max_points: int = ac.MAX_CURVE_POINTS,
               engine: str = "auto") -> dict[str, tuple[ac.Curve, ac.Curve]]:
    """``plotdata.curves`` of ``result`` (``ood`` and ``engine``: the old signature; the
    result itself says which sets and which engine)."""
    return plotdata.curves(bundle, result, base, kind, max_points)
