"""The inspector's data: one sample shaped and scored, the worst samples, their pictures.

A method that reads a stored feature variant in place of shaping (ODIN's input-perturbed
features) is shown with that variant as its "after": the features it actually scored."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ash_core import Bundle, EvalResult, get_method
from ash_core import samples as ai
from ash_core.errors import BundleError
from dashboard import cache
from dashboard.images import SampleImage, sample_image


def split_names(bundle: Bundle, ood: Sequence[str]) -> list[str]:
    return [bundle.id_split.name, *ood]


def inspect(bundle: Bundle, ood: Sequence[str], shaped: EvalResult, base: EvalResult,
            split: str, index: int) -> ai.SampleInspection:
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
                             bundle.classes, base.id_scores, after, shaped=read)


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
