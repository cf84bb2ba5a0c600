"""The across-bundles comparison's numbers: every shaping method at its defaults on every
bundle the dashboard may open, computed once per bundle content and score (cached).

The table is ``ash_core.reports.across``'s; this module only loads the bundles (a bundle
that cannot be opened is left out with the reason) and evaluates through the cached
exact path, so the numbers are the CLI's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from ash_core.reports.across import ACROSS_METHODS, across_frame, evaluate_across
from ash_core.setting import Setting
from dashboard import cache
from dashboard.paths import BundlePolicy


@dataclass
class Across:
    """The long frame (``across_frame``), the bundles compared, and what was left out."""

    frame: pd.DataFrame
    bundles: list[str]
    left_out: dict[str, str] = field(default_factory=dict)


#: computed comparisons, by bundles (path and content hash), score and convention: shared
#: by every session, bounded (a new set of bundles is a new entry)
_DONE: dict[tuple, Across] = {}
MAX_ENTRIES = 8


def _key(paths: Sequence[str], policy: BundlePolicy, score: str, convention: str) -> tuple:
    loaded, left_out = _load(paths, policy)
    return (tuple((str(b.root), b.content_hash) for b, _ in loaded),
            tuple(sorted(left_out)), score, convention)


def cached(paths: Sequence[str], policy: BundlePolicy, score: str = "energy",
           convention: str = "id") -> Across | None:
    """The comparison when it was computed already for these bundles, else None."""
    return _DONE.get(_key(paths, policy, score, convention))


def _load(paths: Sequence[str], policy: BundlePolicy):
    loaded, left_out = [], {}
    for path in dict.fromkeys(paths):
        try:
            bundle = cache.get_bundle(path, policy)
        except Exception as exc:  # noqa: BLE001 - one unreadable bundle is reported
            left_out[str(path)] = cache.error_text(exc)
            continue
        ood = cache.nonempty_ood(bundle)[0]
        if not ood:
            left_out[bundle.name] = "no OOD set with samples"
            continue
        loaded.append((bundle, ood))
    return loaded, left_out


def across(paths: Sequence[str], policy: BundlePolicy, score: str = "energy",
           convention: str = "id", progress: cache.Progress | None = None) -> Across:
    """Every method of ``ACROSS_METHODS`` at its declared defaults on every bundle of
    ``paths`` (all its non-empty OOD sets; groups as the bundle declares them)."""
    key = _key(paths, policy, score, convention)
    if key in _DONE:
        return _DONE[key]
    loaded, left_out = _load(paths, policy)
    names = _unique_names([b for b, _ in loaded])
    total = len(loaded) * len(ACROSS_METHODS)
    done = [0]

    def evaluator(bundle, ood):
        def run(setting: Setting):
            try:
                return cache.exact(bundle, ood, setting.validated())
            finally:
                done[0] += 1
                if progress is not None:
                    progress(done[0], total)
        return run

    results, skipped = evaluate_across(
        ((name, evaluator(b, ood)) for name, (b, ood) in zip(names, loaded, strict=True)),
        score=score, convention=convention)
    out = Across(across_frame(results), names, {**left_out, **skipped})
    if len(_DONE) >= MAX_ENTRIES:
        _DONE.pop(next(iter(_DONE)))
    _DONE[key] = out
    return out


def _unique_names(bundles) -> list[str]:
    """Bundle names, with the directory added where two bundles share a name."""
    names = [b.name for b in bundles]
    return [n if names.count(n) == 1 else f"{n} ({b.root.name})"
            for n, b in zip(names, bundles, strict=True)]
