"""The inspector's data: one sample shaped and scored, the worst samples, their pictures.

A method that reads a stored feature variant in place of shaping (ODIN's input-perturbed
features) is shown with that variant as its "after": the features it actually scored."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ash_core import Bundle, EvalResult, get_method
from ash_core import samples as ai
from ash_core.bundle.classnames import readable_classes
from ash_core.errors import AshError, BundleError
from dashboard import cache
from dashboard.images import SampleImage, sample_image


def split_names(bundle: Bundle, ood: Sequence[str]) -> list[str]:
    return [bundle.id_split.name, *ood]


def inspect(bundle: Bundle, ood: Sequence[str], shaped: EvalResult, base: EvalResult,
            split: str, index: int, data_root: str | None = None) -> ai.SampleInspection:
    """One sample before and after the shaping of ``shaped``, its energies placed within
    the ID energies of ``base`` (no shaping) and of ``shaped``'s method (its own scores
    when it is scored by energy, else the energies of its shaped ID logits: a method that
    is its own score, e.g. GEN or ODIN, is still ranked by energy, as the cards say)."""
    ev = cache.get_evaluator(bundle, ood)
    n = len(bundle.split(split))
    if not 0 <= index < n:
        raise BundleError(f"index {index} is out of range for {split!r} (0..{n - 1}).")
    shaper = ev.shaper(shaped.setting)
    feats = ev.features(split)
    if shaper.spec.variant is not None:  # the method reads a stored variant (ODIN): show it
        read = ev.shaped_features(shaper, split)[index : index + 1]
    else:
        read = ai.shape_sample(shaper, feats, index, split)
    after = shaped.id_scores if shaped.score == "energy" else \
        cache.id_energies(bundle, shaped.method, shaped.p, shaped.threshold_mode)
    return ai.inspect_sample(feats[index : index + 1], shaper, ev.weight, ev.bias,
                             class_names(bundle, data_root)[0], base.id_scores, after,
                             shaped=read)


def class_names(bundle: Bundle, data_root: str | None) -> tuple[list[str], str | None]:
    """The bundle's classes for display: WordNet ids (Tiny-ImageNet) as the first synonym
    of the data's ``words.txt`` when the data root has it (``classnames``)."""
    paths = [str((s.get("data") or {}).get("path") or "")
             for s in bundle.manifest.get("splits", [])
             if s.get("role") in ("id", "id_test", "id_fit", "id_val")]
    return readable_classes(bundle.classes, data_root, [p for p in paths if p])


def own_score(bundle: Bundle, ood: Sequence[str], result: EvalResult, split: str,
              index: int) -> tuple[ai.SampleScore | None, str]:
    """The sample's score as the setting scores it (KNN's, GEN's, MSP's, ... not the
    energy of the logits), without and with the method, and where "without" comes from.

    A method that leaves features and head alone (KNN, GEN, temperature scaling, the
    baselines) is its own "without"; any other is compared with no shaping scored the
    same way. None when that comparison does not exist (a score only the method defines:
    ODIN's input perturbation)."""
    spec = get_method(result.method)
    if spec.keeps_features and spec.head_fn is None:
        before, note = result, f"{result.method} does not shape: before and after are equal"
    else:
        try:
            before = cache.baseline(bundle, ood, result.score, result.convention)
        except AshError as exc:
            return None, f"no unshaped {result.score} score to compare with: {exc}"
        note = f"before: no shaping, scored by {result.score}"
    return ai.sample_score(before, result, bundle.id_split.name, split, index), note


def read_variant(bundle: Bundle, method: str) -> str | None:
    """For a method that reads a stored feature variant in place of the features (ODIN),
    what the inspector's "after" shows, in words; None for every other method."""
    variant = get_method(method).variant
    if variant is None:
        return None
    settings = ", ".join(f"{k}={v:g}" for k, v in (bundle.variant(variant) or {}).items())
    return (f"{method} reads the stored {variant!r} feature variant (extracted with "
            f"{settings or 'settings not recorded'}), not the features: 'after' shows the "
            f"{variant!r} features it scored, 'before' the stored features.")


def worst(result: EvalResult, bundle: Bundle, kind: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` worst false positives (``kind="fp"``) or negatives (``"fn"``): set, index,
    score and the score's percentile within the ID scores (in %)."""
    return ai.worst_samples(result.id_scores, result.ood_scores, bundle.id_split.name, kind, n)


def gallery(bundle: Bundle, table: pd.DataFrame, data_root: str | None
            ) -> list[tuple[int, SampleImage]]:
    """(row number, picture) of every listed sample that has one (thumbnail or file)."""
    out = []
    for i, row in enumerate(table.itertuples()):
        img = sample_image(bundle, str(row.set), int(row.index), data_root)
        if img.kind != "missing":
            out.append((i, img))
    return out
