"""Validated parameters of several methods at once, cached beside the bundle.

``search_many(source, methods)`` runs ``search`` for each method (default: every method
with a declared search grid, ``searchable_methods()``) and returns ``{method:
SearchResult}`` in the order asked; the leaderboard's "validated parameters" mode reads
it. Each result is cached as JSON next to the bundle's score cubes, keyed like them:

    <cube cache dir>/<bundle content hash>/search-<method>-<threshold>-<slot>.json

(the disk cache's rules, ``ash_core.diskcache``: ``cache_dir=``, ``ASH_CUBE_CACHE``,
``<bundle>/.cube_cache`` or the user cache; a symbolic link is never followed). The key
holds everything the result depends on: the bundle's content hash and a digest of the
bytes read (head, test, validation and id_fit splits), the setting, the metric, the grid,
the OOD test sets and the engine used; the entry holds a sha256 of its key and result. An
entry whose key differs, or that does not load, is recomputed and replaced, with one
warning. Nothing is ever unpickled. A result read from
the cache carries no per-sample scores (``test.id_scores`` is None).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ash_core.bundle import Bundle
from ash_core.diskcache import (
    DIGEST_FIELD,
    cache_dir_of,
    cached,
    data_digest,
    entry_path,
    same_key,
    text_checksum,
    write_text_atomic,
)
from ash_core.engine.exact import EvalResult, Evaluator
from ash_core.errors import CubeCacheError, ParameterError
from ash_core.maths.metrics import OODMetrics
from ash_core.maths.ties import TieRange
from ash_core.methods import get_method, list_methods
from ash_core.policy import ENGINES
from ash_core.search.engines import (
    ValidationSplits,
    choose_search_engine,
    validation_splits,
)
from ash_core.search.grid import SEARCH_METRICS, SearchResult, search, search_points
from ash_core.setting import Setting

#: bumped whenever a cached result's content or layout changes (old entries are replaced)
#: 2: the entry holds a sha256 of its key and result; 3: ASH-RAND draws per (seed, split,
#: row), KNN on binarised rows from exact overlaps
SEARCH_CACHE_VERSION = 3


def searchable_methods() -> list[str]:
    """Registered methods with a declared search grid on at least one parameter."""
    return [m for m in list_methods() if any(q.search_grid for q in get_method(m).params)]


def search_many(
    source: Bundle | Evaluator,
    methods: Sequence[str | Setting] | None = None,
    metric: str = "auroc",
    *,
    threshold_mode: str = "local",
    score: str = "energy",
    convention: str = "id",
    seed: int = 0,
    ood: Iterable[str] | None = None,
    engine: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, SearchResult]:
    """``search`` of every method (names or Settings) on its declared search grid.

    A name takes ``threshold_mode`` where the method supports it (else "local"), ``score``,
    ``convention`` and ``seed``; a Setting keeps its own. ``cache_dir``/``use_cache``
    govern both the score cubes and the cached results. ``progress(done, total)`` counts
    methods. Errors are those of ``search`` (e.g. a BundleError without validation
    splits), except that with ``methods=None`` a method whose declared grid this bundle
    cannot serve (a ParameterError: ViM's dim 256 on 64 features, KNN's k over the id_fit
    size) is left out with one warning saying why.
    """
    if isinstance(source, Evaluator):  # keep its OOD selection unless ``ood`` names one
        ev = source if ood is None else source.with_ood(ood)
    else:
        ev = Evaluator(source, ood)
    if metric not in SEARCH_METRICS or engine not in ENGINES:  # not one per method
        raise ParameterError(f"unknown search metric {metric!r} or engine {engine!r}; use "
                             f"one of {', '.join(SEARCH_METRICS)} and one of "
                             f"{', '.join(ENGINES)}.")
    settings = [_setting(m, threshold_mode, score, convention, seed)
                for m in (searchable_methods() if methods is None else methods)]
    if not settings:
        raise ParameterError("no methods to search; pass at least one, e.g. ['ash-s'].")
    cdir = cache_dir_of(ev.bundle, cache_dir, use_cache, "search results")
    out: dict[str, SearchResult] = {}
    for i, setting in enumerate(settings):
        try:
            out[setting.method] = _cached_search(ev, setting, metric, engine, cdir,
                                                 cache_dir, use_cache)
        except ParameterError as exc:
            if methods is not None:
                raise
            warnings.warn(f"search_many: {setting.method} left out ({exc})", stacklevel=2)
        if progress:
            progress(i + 1, len(settings))
    return out


def _setting(method: str | Setting, threshold_mode: str, score: str, convention: str,
             seed: int) -> Setting:
    if isinstance(method, Setting):
        return method.validated()
    mode = threshold_mode if threshold_mode in get_method(method).threshold_modes else "local"
    return Setting(method, {}, mode, score, convention, seed).validated()


def _cached_search(ev: Evaluator, setting: Setting, metric: str, engine: str,
                   cdir: Path | None, cache_dir: Any, use_cache: bool) -> SearchResult:
    """The cached result when its key matches, else a fresh search (then cached)."""
    def fresh() -> SearchResult:
        return search(ev, setting, None, metric, engine=engine, cache_dir=cache_dir,
                      use_cache=use_cache)

    if cdir is None:
        return fresh()
    key = result_key(ev, setting, metric, engine)
    result = cached(result_path(cdir, key), functools.partial(load_result, key=key), fresh,
                    lambda path, result: save_result(path, key, result), "search result")
    # the cached JSON holds each group's average, not its members: the bundle says those
    result.test.groups = result.test_optimal.groups = ev.bundle.groups
    return result


def result_key(ev: Evaluator, setting: Setting, metric: str, engine: str) -> dict[str, Any]:
    """Everything a cached search result depends on (compared exactly when loading)."""
    val = validation_splits(ev.bundle)
    fit = [ev.bundle.id_fit.name] if ev.bundle.id_fit is not None else []
    return {
        "search_cache_version": SEARCH_CACHE_VERSION,
        "bundle": ev.bundle.content_hash,
        "data": data_digest(ev.bundle, [*ev.split_names, *val.names, *fit]),
        "setting": setting.to_dict(),
        "metric": metric,
        "grid": search_points(setting.method),
        "ood": list(ev.ood_names),
        "engine": choose_search_engine(ev, setting, engine),
    }


def result_path(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<bundle hash>/search-<method>-<threshold>-<slot>.json``."""
    s = key["setting"]
    return entry_path(cache_dir, key, f"search-{s['method']}-{s['threshold']}", ".json")


def _body(key: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """The canonical text the checksum covers (keys sorted: the file keeps their order)."""
    return json.dumps({"key": key, "result": result}, sort_keys=True)


def save_result(path: Path, key: Mapping[str, Any], result: SearchResult) -> Path:
    """Write ``result`` with its key and a sha256 of both (atomic)."""
    entry = {"key": key, "result": result.to_dict()}
    digest = text_checksum(_body(entry["key"], entry["result"]))
    return write_text_atomic(path, json.dumps({**entry, DIGEST_FIELD: digest}))


def load_result(path: Path, key: Mapping[str, Any]) -> SearchResult:
    """The cached result at ``path``; CubeCacheError when stale or corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        body = _body(entry["key"], entry["result"])
        if text_checksum(body) != entry.get(DIGEST_FIELD):
            raise CubeCacheError(f"{path} is corrupt (checksum mismatch)")
        if not same_key(entry["key"], key):
            raise CubeCacheError(f"{path} is stale (searched for a different key)")
        setting = Setting.from_dict(key["setting"]).validated()
        return result_from_dict(entry["result"], setting)
    except (ValueError, KeyError, TypeError, ParameterError) as exc:
        raise CubeCacheError(f"{path} does not load ({exc})") from None


def _eval_result(d: Mapping[str, Any], engine: str) -> EvalResult:
    """An ``EvalResult`` from its ``to_dict`` form (no per-sample scores)."""
    convention = d["fpr_convention"]
    return EvalResult(
        bundle=d["bundle"], setting=Setting.from_dict(d), id_accuracy=dict(d["id_accuracy"]),
        ood={n: OODMetrics(**m, convention=convention) for n, m in d["ood"].items()},
        cutoff=d["fitted_threshold"], engine=engine,
        stored_ties=_ties(d.get("ties", {"ood": {}})),
    )


def _ties(d: Any) -> dict[str, TieRange]:
    """The ``ties`` block of a result's JSON form (TypeError when it is not one)."""
    if not isinstance(d, Mapping) or not isinstance(d.get("ood"), Mapping):
        raise TypeError("its ties are not a mapping of OOD sets")
    return {str(n): TieRange(**{k: float(r[k]) for k in ("tied", "auroc_min", "auroc_max")})
            for n, r in d["ood"].items()}


def result_from_dict(d: Mapping[str, Any], setting: Setting) -> SearchResult:
    """A ``SearchResult`` from its ``to_dict`` form (the JSON of ``ash-explore search``)."""
    points = [dict(g["params"]) for g in d["validation"]["grid"]]
    return SearchResult(
        setting=setting, metric=d["metric"],
        validated_on=ValidationSplits(d["validated_on"]["id_val"],
                                      tuple(d["validated_on"]["ood_val"])),
        points=points, validation=[g["value"] for g in d["validation"]["grid"]],
        test_values=[g["value"] for g in d["test_grid"]],
        selected_index=points.index(dict(d["selected"])),
        optimal_index=points.index(dict(d["test_optimal"]["params"])),
        test=_eval_result(d["test"], d["engine"]),
        test_optimal=_eval_result(d["test_optimal"]["test"], d["engine"]),
        engine=d["engine"], bundle=d["bundle"],
    )
