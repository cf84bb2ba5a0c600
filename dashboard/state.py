"""The dashboard's state: one dataclass, mirrored in the URL's query parameters.

``State.from_query`` parses and validates query parameters against what is
available (bundles, methods, OOD sets); anything invalid falls back to a default
and is reported in ``notes`` so that the page can say what it ignored. ``to_query``
writes the state back, so a copied link reopens the exact view. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ash_core import CONVENTIONS, THRESHOLD_MODES, get_method, list_methods, list_scores

VIEWS: dict[str, str] = {
    "overview": "Overview",
    "distributions": "Score distributions",
    "curves": "ROC & PR curves",
    "tradeoff": "Trade-off",
    "inspector": "Inspector",
    "compare": "Compare",
    "export": "Export",
    "where": "Where to ASH",
}
INSPECT_MODES: dict[str, str] = {
    "index": "by set and index",
    "fp": "worst false positives (OOD scored most ID-like)",
    "fn": "worst false negatives (ID scored most OOD-like)",
}
COMPARE_MODES: dict[str, str] = {
    "setting": "two settings, same bundle",
    "bundle": "two bundles, same setting",
}
ENGINES: dict[str, str] = {
    "exact": "exact: one Evaluator pass per p (bit-for-bit the CLI's numbers)",
    "cube": "score cube: precomputed lookup (ASH methods; equal to the CLI up to float32 "
            "rounding; for very large bundles)",
}
GRID_STEPS = (1, 2, 5, 10)
ALWAYS_IN_URL = ("bundle", "method", "p", "view")
PARETO_METRICS = {"average/auroc": "average AUROC", "average/fpr95": "average FPR95"}
P_MIN, P_MAX = 0, 99
DEFAULT_METHOD = "ash-s"


def _default_method() -> str:
    methods = list_methods()
    return DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]


def _default_p(method: str) -> int:
    p = get_method(method).default_p
    return int(round(p)) if p is not None else 90


@dataclass
class State:
    """Everything that defines a view. Keys of the URL are the field names."""

    bundle: str = ""
    ood: tuple[str, ...] | None = None  # None: every OOD split of the bundle
    method: str = field(default_factory=_default_method)
    p: int = field(default_factory=lambda: _default_p(_default_method()))
    threshold: str = "local"
    score: str = "energy"
    convention: str = "id"
    view: str = "overview"
    engine: str = "exact"
    # inspector
    iset: str = ""
    idx: int = 0
    imode: str = "index"
    # trade-off
    step: int = 5
    pareto: str = "average/auroc"
    # compare
    cmode: str = "setting"
    bmethod: str = "none"
    bp: int = 90
    bthreshold: str = "local"
    bbundle: str = ""

    # ------------------------------------------------------------------ url

    def to_query(self, compact: bool = True) -> dict[str, str]:
        """Query parameters (strings only); the OOD selection is comma-separated.

        ``compact`` leaves out fields at their default value (a missing key means the
        default when the link is opened), except the bundle, method, p and view.
        """
        default = State()
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "ood":
                if v is not None:
                    out["ood"] = ",".join(v)
                continue
            if compact and f.name not in ALWAYS_IN_URL and v == getattr(default, f.name):
                continue
            out[f.name] = str(v)
        return out

    @classmethod
    def from_query(
        cls,
        query: Mapping[str, Any],
        bundles: Sequence[str] = (),
        ood_options: Sequence[str] | None = None,
        default_bundle: str = "",
    ) -> tuple[State, list[str]]:
        """Parse query parameters; invalid values fall back to defaults (listed in notes)."""
        notes: list[str] = []
        q = {k: (v[-1] if isinstance(v, list) and v else v) for k, v in query.items()}
        s = cls(bundle=default_bundle or (bundles[0] if bundles else ""))

        def choose(key: str, options: Sequence[str], default: str) -> str:
            if key not in q:
                return default
            if str(q[key]) in options:
                return str(q[key])
            notes.append(f"ignored {key}={q[key]!r} (choose one of: {', '.join(options)})")
            return default

        def integer(key: str, low: int, high: int, default: int) -> int:
            if key not in q:
                return default
            try:
                v = int(float(q[key]))
                if low <= v <= high:
                    return v
            except (TypeError, ValueError, OverflowError):  # OverflowError: "inf", "1e999"
                pass
            notes.append(f"ignored {key}={q[key]!r} (an integer in [{low}, {high}])")
            return default

        if q.get("bundle"):
            s.bundle = str(q["bundle"])  # any directory; the page reports unreadable ones
        methods = list_methods()
        s.method = choose("method", methods, s.method)
        s.p = integer("p", P_MIN, P_MAX, _default_p(s.method))
        s.threshold = choose("threshold", list(THRESHOLD_MODES), "local")
        s.score = choose("score", list_scores(), "energy")
        s.convention = choose("convention", list(CONVENTIONS), "id")
        s.view = choose("view", list(VIEWS), "overview")
        s.engine = choose("engine", list(ENGINES), "exact")
        if "ood" in q:
            names = tuple(n for n in str(q["ood"]).split(",") if n)
            if ood_options is not None:
                unknown = [n for n in names if n not in ood_options]
                if unknown:
                    notes.append(f"ignored unknown OOD set(s): {', '.join(unknown)}")
                names = tuple(n for n in names if n in ood_options)
            s.ood = names
        s.iset = str(q.get("iset", ""))
        s.idx = integer("idx", 0, 10**9, 0)
        s.imode = choose("imode", list(INSPECT_MODES), "index")
        s.step = int(choose("step", [str(g) for g in GRID_STEPS], "5"))
        s.pareto = choose("pareto", list(PARETO_METRICS), "average/auroc")
        s.cmode = choose("cmode", list(COMPARE_MODES), "setting")
        s.bmethod = choose("bmethod", methods, "none")
        s.bp = integer("bp", P_MIN, P_MAX, 90)
        s.bthreshold = choose("bthreshold", list(THRESHOLD_MODES), "local")
        s.bbundle = str(q.get("bbundle", ""))
        return s.validated(notes), notes

    def validated(self, notes: list[str] | None = None) -> State:
        """Make method-dependent fields consistent (threshold mode the method supports)."""
        spec = get_method(self.method)
        s = self
        if self.threshold not in spec.thresholds:
            if notes is not None and self.threshold != "local":
                notes.append(f"{self.method} supports threshold {'/'.join(spec.thresholds)} only")
            s = replace(s, threshold=spec.thresholds[0])
        bspec = get_method(s.bmethod)
        if s.bthreshold not in bspec.thresholds:
            s = replace(s, bthreshold=bspec.thresholds[0])
        return s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ helpers

    @property
    def p_value(self) -> float | None:
        """p as the method receives it (None for methods without a percentile)."""
        return float(self.p) if get_method(self.method).has_p else None

    @property
    def bp_value(self) -> float | None:
        return float(self.bp) if get_method(self.bmethod).has_p else None

    def setting_label(self, method: str | None = None, p: float | None = None,
                      threshold: str | None = None) -> str:
        method = method or self.method
        spec = get_method(method)
        p = self.p_value if p is None and method == self.method else p
        parts = [method]
        if spec.has_p and p is not None:
            parts.append(f"p={p:g}")
        if len(spec.thresholds) > 1:
            parts.append(threshold or self.threshold)
        return " ".join(parts)
