"""The dashboard's state: one dataclass, mirrored in the URL's query parameters.

``State.from_query`` parses and validates query parameters against what is
available (bundles, methods, OOD sets); anything invalid falls back to a default
and is reported in ``notes`` so that the page can say what it ignored. ``to_query``
writes the state back, so a copied link reopens the exact view. No Streamlit here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ash_core import CONVENTIONS, THRESHOLD_MODES, get_method, list_methods, list_scores
from ash_core.features import list_feature_scores
from ash_core.methods import setting_label
from ash_core.policy import ENGINES
from ash_core.setting import Setting
from dashboard import controls
from dashboard.op_state import DEFAULT_OP, read_op

VIEWS: dict[str, str] = {
    "overview": "Overview",
    "distributions": "Score distributions",
    "curves": "ROC & PR curves",
    "tradeoff": "Trade-off",
    "leaderboard": "Leaderboard",
    "inspector": "Inspector",
    "compare": "Compare",
    "across": "Across bundles",
    "export": "Export",
    "where": "Where to ASH",
}
INSPECT_MODES: dict[str, str] = {
    "index": "by set and index",
    "fp": "worst false positives (OOD scored most ID-like)",
    "fn": "worst false negatives (ID scored most OOD-like)",
}
CURVE_KINDS: dict[str, str] = {"roc": "ROC", "pr": "precision-recall"}
COMPARE_MODES: dict[str, str] = {
    "setting": "two settings, same bundle",
    "bundle": "two bundles, same setting",
    "methods": "up to four methods overlaid",
}
#: the most methods the Compare view overlays (``cmethods``)
MAX_OVERLAY = 4
#: what each of ash_core's engine choices (``ash_core.policy.ENGINES``) means, for the sidebar
ENGINE_HELP: dict[str, str] = {
    "auto": "automatic: exact where one evaluation is cheap (demo sizes), the score cube "
            "where not",
    "exact": "exact: one Evaluator pass per p (bit-for-bit the CLI's numbers)",
    "cube": "score cube: precomputed lookup (ASH methods; equal to the CLI up to float32 "
            "rounding)",
}
GRID_STEPS = (1, 2, 5, 10)
ALWAYS_IN_URL = ("bundle", "method", "p", "view")
PARETO_METRICS = {"average/auroc": "average AUROC", "average/fpr95": "average FPR95"}
P_MIN, P_MAX = 0, 99
DEFAULT_METHOD = "ash-s"
#: longer URL values are ignored with a note (a link must not be able to stall the page)
MAX_PARAM_LEN = 256
MAX_OOD_NAMES = 64


def _default_method() -> str:
    methods = list_methods()
    return DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]


def p_range(method: str) -> tuple[int, int]:
    """The integer slider range of the method's declared p (ParamSpec [low, high))."""
    spec = next((q for q in get_method(method).params if q.name == "p"), None)
    if spec is None:
        return P_MIN, P_MAX
    return int(math.ceil(spec.low)), int(math.ceil(spec.high)) - 1


def default_p(method: str) -> int:
    """The method's declared default p (ParamSpec.default), as the slider's integer."""
    p = get_method(method).default_p
    return int(round(p)) if p is not None else 90


#: every score the score box may hold (a method takes all of them or only its own)
ALL_SCORES = (*list_scores(), *list_feature_scores())


def _setting(method: str, p: float, threshold: str, score: str, convention: str,
             params: Mapping[str, float] | None = None) -> Setting:
    """A setting as ash_core describes it: p only for a method that has one, of ``params``
    those the method and the score declare, the method's first threshold mode where it
    lacks ``threshold``. Not validated (the replay does it)."""
    spec = get_method(method)
    mode = threshold if threshold in spec.threshold_modes else spec.threshold_modes[0]
    names = controls.extra_names(method, score)
    values = {k: float(v) for k, v in (params or {}).items() if k in names}
    return Setting(method, {**({"p": float(p)} if spec.has_p else {}), **values}, mode, score,
                   convention)


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Query:
    """Query parameters read one key at a time; what is ignored is listed in ``notes``."""

    def __init__(self, query: Mapping[str, Any]):
        self.notes: list[str] = []
        self.q: dict[str, str] = {}
        for k, v in query.items():
            v = v[-1] if isinstance(v, list) and v else v
            if len(str(k)) > MAX_PARAM_LEN or len(str(v)) > MAX_PARAM_LEN:
                self.notes.append(f"ignored {_shown(k)}: longer than {MAX_PARAM_LEN} "
                                  "characters")
            elif _CONTROL.search(str(k)) or _CONTROL.search(str(v)):
                # a NUL byte cannot be in a path, nor any control character in a name
                self.notes.append(f"ignored {_shown(k)}: it holds a control character")
            else:
                self.q[str(k)] = str(v)

    def text(self, key: str, default: str = "") -> str:
        return self.q.get(key) or default

    def choose(self, key: str, options: Sequence[str], default: str) -> str:
        if key not in self.q:
            return default
        if self.q[key] in options:
            return self.q[key]
        self.notes.append(f"ignored {key}={_shown(self.q[key])} (choose one of: "
                          f"{', '.join(options)})")
        return default

    def integer(self, key: str, low: int, high: int, default: int) -> int:
        if key not in self.q:
            return default
        try:
            v = int(float(self.q[key]))
            if low <= v <= high:
                return v
        except (TypeError, ValueError, OverflowError):  # OverflowError: "inf", "1e999"
            pass
        self.notes.append(f"ignored {key}={_shown(self.q[key])} (an integer in [{low}, {high}])")
        return default

    def names(self, key: str) -> tuple[str, ...] | None:
        if key not in self.q:
            return None
        names = tuple(dict.fromkeys(n for n in self.q[key].split(",") if n))
        if len(names) > MAX_OOD_NAMES:
            self.notes.append(f"ignored {key}: more than {MAX_OOD_NAMES} names")
            return None
        return names


@dataclass
class State:
    """Everything that defines a view. Keys of the URL are the field names."""

    bundle: str = ""
    ood: tuple[str, ...] | None = None  # None: every OOD split of the bundle
    method: str = field(default_factory=_default_method)
    p: int = field(default_factory=lambda: default_p(_default_method()))
    threshold: str = "local"
    score: str = "energy"
    # the values of the setting's parameters other than p (away from their defaults)
    params: dict[str, float] = field(default_factory=dict)
    convention: str = "id"
    view: str = "overview"
    engine: str = "auto"
    val: int = 0  # 1: overview and leaderboard use the validated parameters (validation.py)
    # where the shaping happens (bundles with layer maps; checked against the bundle by
    # dashboard/layer_replay.fit, since the layers are the bundle's)
    layer: str = "penultimate"
    # inspector
    iset: str = ""
    idx: int = 0
    imode: str = "index"
    # curves
    curve: str = "roc"
    # distributions and curves: the operating point ("kept:95" or "score:-3.2")
    op: str = DEFAULT_OP
    # trade-off
    step: int = 5
    pareto: str = "average/auroc"
    # compare
    cmode: str = "setting"
    bmethod: str = "none"
    bp: int = 90
    bthreshold: str = "local"
    bbundle: str = ""
    cmethods: tuple[str, ...] = ()  # Compare "methods": empty = the sidebar's method and none

    # ------------------------------------------------------------------ url

    def to_query(self, compact: bool = True) -> dict[str, str]:
        """Query parameters (strings only); the OOD selection is comma-separated.

        ``compact`` leaves out fields at their default value (a missing key means the
        default when the link is opened, for ``bp`` that of ``bmethod``), except the
        bundle, method, p and view.
        """
        # what from_query reads for a key left out: the compare method's own default p
        default = replace(State(), bp=default_p(self.bmethod))
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "ood":
                if v is not None:
                    out["ood"] = ",".join(v)
                continue
            if f.name == "cmethods":
                if v or not compact:
                    out["cmethods"] = ",".join(v)
                continue
            if f.name == "params":
                text = controls.params_text(self.used_params())
                if text or not compact:
                    out["params"] = text
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
        q = _Query(query)
        s = cls(bundle=q.text("bundle", default_bundle or (bundles[0] if bundles else "")))
        s._read_setting(q)
        s._read_views(q)
        s.ood = q.names("ood")
        if ood_options is not None:
            q.notes += s.drop_unknown_ood(ood_options)
        return s.validated(q.notes), q.notes

    def _read_setting(self, q: _Query) -> None:
        """Method, p (in the method's own range, its default when absent), modes."""
        self.method = q.choose("method", list_methods(), self.method)
        self.p = q.integer("p", *p_range(self.method), default_p(self.method))
        self.threshold = q.choose("threshold", list(THRESHOLD_MODES), "local")
        self.score = q.choose("score", list(ALL_SCORES), "energy")
        self.params, notes = controls.read_params(q.text("params"), self.method, self.score)
        q.notes += notes
        self.convention = q.choose("convention", list(CONVENTIONS), "id")
        self.engine = q.choose("engine", list(ENGINES), "auto")
        self.val = q.integer("val", 0, 1, 0)
        self.layer = q.text("layer", "penultimate")

    def _read_views(self, q: _Query) -> None:
        """The view and each view's own controls."""
        self.view = q.choose("view", list(VIEWS), "overview")
        self.iset = q.text("iset")
        self.idx = q.integer("idx", 0, 10**9, 0)
        self.imode = q.choose("imode", list(INSPECT_MODES), "index")
        self.curve = q.choose("curve", list(CURVE_KINDS), "roc")
        self.op = read_op(q.text("op", DEFAULT_OP), q.notes)
        self.step = int(q.choose("step", [str(g) for g in GRID_STEPS], "5"))
        self.pareto = q.choose("pareto", list(PARETO_METRICS), "average/auroc")
        self.cmode = q.choose("cmode", list(COMPARE_MODES), "setting")
        self.bmethod = q.choose("bmethod", list_methods(), "none")
        self.bp = q.integer("bp", *p_range(self.bmethod), default_p(self.bmethod))
        self.bthreshold = q.choose("bthreshold", list(THRESHOLD_MODES), "local")
        self.bbundle = q.text("bbundle")
        self.cmethods = self._read_cmethods(q)

    @staticmethod
    def _read_cmethods(q: _Query) -> tuple[str, ...]:
        """Compare's overlaid methods: registered names only, at most ``MAX_OVERLAY``."""
        names = q.names("cmethods") or ()
        unknown = [n for n in names if n not in list_methods()]
        if unknown:
            q.notes.append(f"ignored unknown method(s) in cmethods: "
                           f"{', '.join(map(_shown, unknown))}")
        known = tuple(n for n in names if n not in unknown)
        if len(known) > MAX_OVERLAY:
            q.notes.append(f"cmethods: kept the first {MAX_OVERLAY} of {len(known)} methods")
        return known[:MAX_OVERLAY]

    def drop_unknown_ood(self, options: Sequence[str]) -> list[str]:
        """Keep only OOD names the bundle has; a note names the dropped ones."""
        if self.ood is None:
            return []
        unknown = [n for n in self.ood if n not in options]
        self.ood = tuple(n for n in self.ood if n in options)
        return [f"ignored unknown OOD set(s): {', '.join(map(_shown, unknown))}"] if unknown \
            else []

    def validated(self, notes: list[str] | None = None) -> State:
        """Make method-dependent fields consistent (threshold mode the method supports)."""
        spec = get_method(self.method)
        s = self
        if self.threshold not in spec.threshold_modes:
            if notes is not None and self.threshold != "local":
                notes.append(f"{self.method} supports threshold {'/'.join(spec.threshold_modes)} only")
            s = replace(s, threshold=spec.threshold_modes[0])
        bspec = get_method(s.bmethod)
        if s.bthreshold not in bspec.threshold_modes:
            s = replace(s, bthreshold=bspec.threshold_modes[0])
        if s.params != s.used_params():
            s = replace(s, params=s.used_params())
        return s

    def used_params(self) -> dict[str, float]:
        """The values of ``params`` the setting declares (other methods' are left out)."""
        names = controls.extra_names(self.method, self.score)
        return {k: v for k, v in self.params.items() if k in names}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ helpers

    def setting(self, *, p: float | None = None, score: str | None = None,
                convention: str | None = None) -> Setting:
        """The sidebar's setting (method, p, threshold mode, score, convention): what every
        view hands to ``dashboard.replay``; ``p``, ``score`` or ``convention`` given: the
        same setting with that one changed (the validated p, the inspector's energy)."""
        return _setting(self.method, self.p if p is None else p, self.threshold,
                        score or self.score, convention or self.convention, self.params)

    def b_setting(self) -> Setting:
        """Compare's setting B: its method, p and threshold mode, the sidebar's score (with
        its parameters) and convention."""
        return _setting(self.bmethod, self.bp, self.bthreshold, self.score, self.convention,
                        self.params)

    @property
    def board_score(self) -> str:
        """The score of the views that evaluate every method over a grid (Trade-off,
        Leaderboard, Compare's overlay, the report's sweep): the sidebar's score on logits,
        energy for a score on features (refitted at every point, it would take minutes)."""
        return self.score if self.score in list_scores() else "energy"

    @property
    def p_value(self) -> float | None:
        """p as the method receives it (None for methods without a percentile)."""
        return float(self.p) if get_method(self.method).has_p else None

    @property
    def bp_value(self) -> float | None:
        return float(self.bp) if get_method(self.bmethod).has_p else None

    def setting_label(self, method: str | None = None, p: float | None = None,
                      threshold: str | None = None) -> str:
        """``ash-s p=90 local``: ``ash_core.methods.setting_label``, the one label function
        (also behind ``Setting.label`` and the CLI); this state's p and threshold by default."""
        method = method or self.method
        p = self.p_value if p is None and method == self.method else p
        params = {"p": p} if get_method(method).has_p and p is not None else {}
        if method == self.method:
            params.update(self.used_params())
        mode = len(get_method(method).threshold_modes) > 1
        return setting_label(method, params, threshold or self.threshold, mode=mode)
