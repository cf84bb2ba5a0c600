"""ONE tester for every registered method: exact Evaluator, score cube and the independent
reference agree at the boundary settings, on small bundles built to hold ties.

For each method of ``list_methods()`` (a new one is covered, or fails
``test_every_method_has_a_reference`` until it is given one) and each threshold mode it
declares, the boundary settings are generated from its declaration:

* ``p``: 0; the half-to-even points of ``k = D - round(D * p / 100)`` (D*p/100 = m + 0.5,
  where rounding half up would keep one unit fewer); the smallest p that changes k (the
  next float after the first half point); the middle; the largest p below 100 (k = 0); for
  DICE also the p whose contribution cutoff lands inside a block of exactly tied
  contributions;
* every other parameter: its inclusive low (or just above an open one), default, the
  extremes of its search grid and its largest value, clipped to what the data admits
  (a KNN k up to the id_fit rows, a subspace dim below D).

On each setting the exact ``Evaluator`` must match ``tests/reference.py`` /
``tests/reference_features.py`` (plain numpy loops, float64): scores to a tight relative
tolerance; metrics exactly equal to the reference metrics of the same scores (the metric
code, ties included) and within one swapped near-tied sample of the reference metrics of the
reference scores; ID accuracy except where the top two reference logits tie. A method with a
cube strategy (``grid`` not "exact") is also built as a score cube on both backends and
compared with the exact results as ``tests/test_cube.py`` does.

The bundles hold ties everywhere a fault hides behind them: feature values quantised to
0.5 (tied units inside a row at every kept-count boundary), duplicated units in a row,
duplicated rows (and an OOD row equal to an ID row), an all-zero and a constant row,
and for DICE a dead id_fit unit and two identical units with identical weight columns,
so that contributions tie exactly (at the cutoff, too).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import reference_features as rf
from cube_helpers import assert_scores_close

from ash_core import SplitData, get_method, list_methods, load_bundle, write_bundle
from ash_core.cube import build_cubes, point_result
from ash_core.engine.exact import Evaluator
from ash_core.maths.metrics import METRIC_NAMES
from ash_core.params import ParamSpec
from ash_core.setting import Setting

D, C = 8, 5
N_ID, N_FIT, N_FAR, N_NEAR = 48, 64, 40, 32
ODIN_T = 1000.0
SEED = 3  # the seed of every setting (ASH-RAND's draws)
LOGIT_SCORES = ("energy", "msp", "maxlogit")

#: the half-to-even points of D = 8: D*p/100 = 0.5, 1.5, 2.5, 6.5 (k = 8, 6, 6, 2; rounding
#: half up would keep 7, 6, 5, 1)
HALF_POINTS = (6.25, 18.75, 31.25, 81.25)
#: the boundary p of the score cube, whose grid resolution is 1e-10
#: (``cube.thresholds.normalize_grid`` rounds): 0, the half points, the smallest p that
#: changes k and the largest p (k = 0) at that resolution, and the middle
CUBE_P = (0.0, HALF_POINTS[0], HALF_POINTS[0] + 1e-6, *HALF_POINTS[1:3], 50.0, HALF_POINTS[3],
          100.0 - 1e-9)
#: the same two boundaries at float resolution: the next float after the first half point
#: (k = 7) and the largest float below 100 (k = 0); exact evaluation only
FIRST_CHANGE = float(np.nextafter(HALF_POINTS[0], math.inf))
LARGEST_P = float(np.nextafter(100.0, 0.0))
P_VALUES = tuple(sorted((*CUBE_P, FIRST_CHANGE, LARGEST_P)))
#: (score, convention) pairs per setting: both conventions once (only FPR95 depends on it)
SCORE_RUNS = (("energy", "id"), ("energy", "ood"), ("msp", "id"), ("maxlogit", "id"))


# --------------------------------------------------------------------------- data


def tied_bundle(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    weight = (np.round(rng.normal(size=(C, D)) * 4) / 4).astype(np.float32)
    weight[:, 5] = weight[:, 4]                   # identical weight columns (DICE ties)
    bias = (np.round(rng.normal(scale=0.2, size=C) * 8) / 8).astype(np.float32)

    def feats(n: int, shift: float) -> np.ndarray:
        x = np.round(np.maximum(rng.normal(shift, 1.0, size=(n, D)), 0.0) * 2) / 2
        x[0] = 0.0                                # an all-zero row
        x[1] = 1.5                                # a constant row: every unit tied
        x[2] = x[3]                               # duplicated rows
        x[4, :4] = x[4, 4:]                       # duplicated values within a row
        x[5, 1] = x[5].max()                      # the row's maximum twice
        return x.astype(np.float32)

    id_x, fit = feats(N_ID, 0.6), feats(N_FIT, 0.6)
    fit[:, 7] = 0.0                               # a dead unit: contributions 0 in every class
    fit[:, 5] = fit[::-1, 4]                      # equal means (exactly) on identical columns
    fit[5, :2] = fit.max()                        # the largest activation twice
    far, near = feats(N_FAR, 0.0), feats(N_NEAR, 0.3)
    near[6] = id_x[7]                             # an OOD row equal to an ID row
    labels = (id_x @ weight.T + bias).argmax(1)
    labels[::7] = (labels[::7] + 1) % C           # some errors
    splits = [SplitData("id_test", "id", id_x, labels),
              SplitData("id_train", "id_fit", fit, rng.integers(0, C, N_FIT)),
              SplitData("far", "ood", far), SplitData("near", "ood", near)]
    for s in (splits[0], splits[2], splits[3]):  # ODIN's stored perturbed features
        s.variants = {"odin": np.round(s.features + rng.uniform(0, 0.5, s.features.shape), 1)
                      .astype(np.float32)}
    return write_bundle(path, weight, bias, [f"c{i}" for i in range(C)], splits,
                        {"model": {"name": "tied"}},
                        variants={"odin": {"temperature": ODIN_T, "epsilon": 0.0014}})


class Data:
    """A bundle's arrays as the reference reads them (float64 copies of the fp32 values)."""

    def __init__(self, path: Path):
        self.path = path
        b = load_bundle(path)
        self.ev = Evaluator(b, warn=False)
        self.weight = b.head_weight.numpy().astype(np.float64)
        self.bias = b.head_bias.numpy().astype(np.float64)
        self.fit = np.asarray(b.id_fit.features, dtype=np.float64)
        self.fit_labels = np.asarray(b.id_fit.labels)
        self.labels = np.asarray(b.id_split.labels)
        self.splits = [b.id_split.name, *[s.name for s in b.ood_splits]]
        self.x = {n: np.asarray(b.split(n).features, dtype=np.float64) for n in self.splits}
        self.odin = {n: b.split(n).variant_features_tensor("odin").numpy().astype(np.float64)
                     for n in self.splits}

    def logits(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        w = self.weight if weight is None else weight
        return np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + self.bias


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return Data(tied_bundle(tmp_path_factory.mktemp("tester") / "tied", 11))


def dice_contributions(data: Data) -> np.ndarray:
    mean = data.fit.mean(axis=0)
    return (mean[None, :] * data.weight).reshape(-1)


def dice_tie_p(data: Data) -> float:
    """A p whose DICE cutoff is a contribution tied several times (the middle of the
    largest block of equal contributions)."""
    values, counts = np.unique(dice_contributions(data), return_counts=True)
    v = values[counts.argmax()]
    ranked = np.sort(dice_contributions(data))
    idx = np.flatnonzero(ranked == v)
    return 100.0 * float(idx[len(idx) // 2]) / (ranked.size - 1)


# --------------------------------------------------------------------------- settings


def data_limit(q: ParamSpec) -> float | None:
    """The largest value the tiny bundles admit for a data-dependent parameter."""
    return {"k": N_FIT, "dim": D - 1}.get(q.name)


#: values at the data's own boundaries: one neighbour, a one-dimensional subspace, the top
#: C-1 and exactly C softmax probabilities
DATA_POINTS = {"k": (1,), "dim": (1,), "M": (C - 1, C)}


def param_boundaries(q: ParamSpec) -> list[float]:
    """The inclusive low (or just above an open low), the default, the extremes of the
    search grid and the largest value, clipped to what the data admits."""
    low = q.low if not q.low_open else (q.low + 1 if q.kind == "int" else q.low + 1e-3)
    high = math.ceil(q.high) - 1 if q.kind == "int" else q.high * (1 - 1e-4)
    values = [low, q.default, *q.search_grid[:1], *q.search_grid[-1:], high,
              *DATA_POINTS.get(q.name, ())]
    limit = data_limit(q)
    if limit is not None:
        values = [v for v in values if v <= limit] + [limit]
    return sorted({float(v) for v in values})


def boundary_settings(name: str, data: Data) -> list[Setting]:
    spec = get_method(name)
    out = []
    for mode in spec.threshold_modes:
        for q in spec.params:
            values = list(P_VALUES) if q.name == "p" else param_boundaries(q)
            if name == "dice":
                values.append(dice_tie_p(data))
            out += [Setting(name, {**spec.defaults, q.name: v}, mode, seed=SEED)
                    for v in values]
        if not spec.params:
            out.append(Setting(name, {}, mode, seed=SEED))
    return out


def runs_of(name: str) -> tuple[tuple[str, str], ...]:
    """(score, convention) pairs: a method that brings its own score is scored with it."""
    spec = get_method(name)
    if spec.scorer is None and spec.feature_score is None:
        return SCORE_RUNS
    return ((name, "id"), (name, "ood"))


# --------------------------------------------------------------------------- references


def shaped(data: Data, s: Setting, split: str) -> np.ndarray:
    """The reference's shaped features of one split (unchanged for methods that do not
    shape)."""
    x, p = data.x[split], s.params.get("p")
    if s.method == "ash-rand":
        cutoff = ref.global_threshold(data.fit, p) if s.threshold_mode == "global" else None
        return ref.ash_rand(x, p, ref.rand_draws(s.seed, split, len(x), D), cutoff)
    return ref.shape(s.method, x, p, s.threshold_mode, data.fit)


def feature_score(name: str, params: dict) -> Callable[[Data, np.ndarray], np.ndarray]:
    dim = int(params.get("dim", 0)) or D // 2  # dim=0: the official rule, D // 2 below 768
    return {
        "knn": lambda d, x: rf.knn(d.fit, x, int(params["k"])),
        "mahalanobis": lambda d, x: rf.mahalanobis(d.fit, d.fit_labels, x),
        "rmds": lambda d, x: rf.rmds(d.fit, d.fit_labels, x),
        "vim": lambda d, x: rf.vim(d.fit, d.weight, d.bias, x, dim),
        "residual": lambda d, x: rf.residual(d.fit, d.weight, d.bias, x, dim),
        "nci": lambda d, x: rf.nci(d.fit, d.weight, d.bias, x, params["alpha"]),
        "fdbd": lambda d, x: rf.fdbd(d.fit, d.weight, d.bias, x, bool(params["distance"])),
    }[name]


LOGIT_SCORE_FNS = {"energy": ref.energy, "msp": ref.msp, "maxlogit": ref.maxlogit}
#: methods scored on the reference's shaped features with the setting's score on logits
SHAPING = ("none", "ash-p", "ash-b", "ash-s", "ash-rand", "react", "scale")
#: the unshaped baselines under their own names: their score is fixed, whatever ``score`` says
BASELINES = ("energy", "msp", "maxlogit")
#: methods that bring their own score
OWN_SCORE = (*BASELINES, "temp-scaling", "gen", "odin", "dice", "knn", "mahalanobis", "rmds", "vim",
             "residual", "nci", "fdbd")


def reference(data: Data, s: Setting, score: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (logits, scores)}`` of the reference pipeline for one setting."""
    out = {}
    for split in data.splits:
        x = data.x[split]
        if s.method in SHAPING:
            logits = data.logits(shaped(data, s, split))
            scores = LOGIT_SCORE_FNS[score](logits)
        elif s.method in BASELINES:
            logits = data.logits(x)
            scores = LOGIT_SCORE_FNS[s.method](logits)
        elif s.method == "temp-scaling":
            logits = data.logits(x)
            scores = ref.temperature_msp(logits, s.params["T"])
        elif s.method == "gen":
            logits = data.logits(x)
            scores = ref.gen(logits, s.params["gamma"], int(s.params["M"]))
        elif s.method == "odin":
            logits = data.logits(data.odin[split])
            scores = ref.temperature_msp(logits, ODIN_T)
        elif s.method == "dice":
            masked = ref.dice_weight(data.fit, data.weight.astype(np.float32), s.params["p"])
            logits = data.logits(x, masked)
            scores = LOGIT_SCORE_FNS[score](logits)
        else:
            logits = data.logits(x)
            scores = feature_score(s.method, dict(s.params))(data, x)
        out[split] = (logits, np.asarray(scores, dtype=np.float64))
    return out


def test_every_method_has_a_reference():
    """A newly registered method fails here until the tester knows its reference."""
    missing = [m for m in list_methods() if m not in SHAPING + OWN_SCORE]
    assert not missing, f"add a reference for {missing} to tests/test_method_tester.py"


def test_the_bundles_hold_the_ties_the_tester_relies_on(data):
    """Not vacuous: ties at local kept-count boundaries, at global cutoffs, between DICE
    contributions at the cutoff, duplicated rows, and the half-to-even points really
    round half to even."""
    x = data.x[data.splits[0]]
    for p in (31.25, 50.0, 81.25):
        k = ref.kept_count(D, p)
        ranked = np.sort(x, axis=1)[:, ::-1]
        assert (ranked[:, k - 1] == ranked[:, k]).any(), p
    assert [ref.kept_count(D, p) for p in HALF_POINTS] == [8, 6, 6, 2]
    assert [D - math.floor(D * p / 100 + 0.5) for p in HALF_POINTS] == [7, 6, 5, 1]
    assert ref.kept_count(D, FIRST_CHANGE) == D - 1
    assert ref.kept_count(D, LARGEST_P) == 0
    assert any(np.isin(ref.global_threshold(data.fit, p), data.fit) for p in P_VALUES[1:-1])
    contrib = dice_contributions(data)
    cut = np.percentile(contrib, dice_tie_p(data))
    assert np.count_nonzero(contrib == cut) >= 2, cut
    assert np.count_nonzero(data.fit == data.fit.max()) >= 2  # a global cutoff at the max
    assert np.array_equal(x[2], x[3]) and (data.x["near"][6] == x[7]).all()


# --------------------------------------------------------------------------- the tester


def near_ties(logits: np.ndarray) -> int:
    """Rows whose top two logits are within float32 rounding (argmax may differ)."""
    top = np.sort(logits, axis=1)[:, -2:]
    scale = np.maximum(np.abs(top[:, 1]), 1.0)
    return int(np.count_nonzero(top[:, 1] - top[:, 0] <= 1e-5 * scale))


def assert_metrics_of_own_scores(got, what: object) -> None:
    """A result's metrics are exactly the reference metrics (ties counted by hand) of the
    result's own scores. With scores close to the reference's, this pins the result up to
    float rounding, where a one-sample tolerance would not: on tied data rounding may break
    many exact ties at once."""
    for name, scores in got.ood_scores.items():
        want = ref.ood_metrics(got.id_scores, scores, got.convention)
        for k in METRIC_NAMES:
            assert got.ood[name][k] == pytest.approx(want[k], abs=1e-12), (what, name, k)


def check_exact_against_reference(data: Data, s: Setting, score: str, conv: str,
                                  want: dict | None = None):
    """Evaluate ``s`` exactly with ``score`` and ``conv``, compare with the reference and
    return the result."""
    want = want or reference(data, s, score)
    setting = Setting(s.method, s.params, s.threshold_mode, score, conv, s.seed)
    got = data.ev.evaluate(setting)
    what = (setting.label(detail=True), repr(s.params))
    id_name = data.splits[0]
    assert_scores_close(got.id_scores, want[id_name][1], what)
    for name in data.splits[1:]:
        assert_scores_close(got.ood_scores[name], want[name][1], (what, name))
    assert_metrics_of_own_scores(got, what)
    logits = want[id_name][0]
    acc = float(np.mean(logits.argmax(1) == data.labels))
    slack = near_ties(logits) / len(logits) + 1e-12
    assert abs(got.id_accuracy["shaped"] - acc) <= slack, (what, got.id_accuracy, acc)
    spec = get_method(s.method)
    if spec.needs_fit(s.threshold_mode) and spec.fitter is get_method("ash-p").fitter:
        assert got.cutoff == pytest.approx(
            ref.global_threshold(data.fit, s.params["p"]), rel=1e-6, abs=1e-7), what
    return got


def cube_methods() -> list[tuple[str, str]]:
    return [(m, mode) for m in list_methods() if get_method(m).grid != "exact"
            for mode in get_method(m).threshold_modes]


@pytest.mark.parametrize("name", list_methods())
def test_exact_evaluation_equals_the_reference_at_the_boundaries(name, data):
    settings = boundary_settings(name, data)
    assert settings
    for s in settings:
        wants: dict[str, dict] = {}
        for score, conv in runs_of(name):
            if score not in wants:
                wants[score] = reference(data, s, score)
            check_exact_against_reference(data, s, score, conv, wants[score])


#: "auto": the native C kernel where a compiler exists (test_cube pins that it is used)
@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize(("name", "mode"), cube_methods(),
                         ids=[f"{m}-{t}" for m, t in cube_methods()])
def test_cube_equals_exact_at_the_boundaries(name, mode, backend, data):
    """The cube at the boundary p (at its grid resolution, 1e-10) against the exact
    evaluation (itself checked against the reference above): scores to float32 rounding,
    metrics those of its own scores, accuracy and fitted thresholds exactly."""
    ev = data.ev
    cube = build_cubes(ev, [name], list(CUBE_P), mode, seed=SEED, backend=backend)[name]
    assert cube.grid.tolist() == sorted(CUBE_P)
    for p in CUBE_P:
        for score, conv in SCORE_RUNS:
            want = ev.evaluate(Setting(name, {"p": p}, mode, score, conv, SEED))
            got = point_result(cube, p, score, conv)
            what = (name, mode, backend, p, score, conv)
            assert got.id_accuracy == want.id_accuracy, what
            assert got.cutoff == want.cutoff, what
            assert_scores_close(got.id_scores, want.id_scores, what)
            for n in want.ood_scores:
                assert_scores_close(got.ood_scores[n], want.ood_scores[n], (what, n))
            assert_metrics_of_own_scores(got, what)
