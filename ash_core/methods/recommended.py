"""A bundle's benchmark family and the paper's recommended parameters for it.

The family (``"imagenet"``, ``"cifar10"``, ``"cifar100"``: the keys of
``ParamSpec.recommended``) is the manifest's ``"benchmark"`` entry when the bundle
declares one (any string; matched case-insensitively). Otherwise it is inferred, and
only when two independent clues agree: the head's class count (1000, 10, 100) AND the
family's name in the bundle's name, its model name or its ID split's name (``imagenet``,
``cifar10``/``cifar-10``, ``cifar100``/``cifar-100``; separators ignored). Anything else
has no family, and then no recommended mark is shown.
"""

from __future__ import annotations

import re
from typing import Any

from ash_core.bundle import Bundle
from ash_core.methods import get_method

#: family -> (class count, the name that must appear once separators are removed)
FAMILIES: dict[str, tuple[int, str]] = {
    "imagenet": (1000, "imagenet"),
    "cifar10": (10, "cifar10"),
    "cifar100": (100, "cifar100"),
}


def _clues(bundle: Bundle) -> str:
    model = bundle.manifest.get("model")
    model_name = model.get("name", "") if isinstance(model, dict) else ""
    text = " ".join(str(t) for t in (bundle.name, model_name, bundle.id_split.name))
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def benchmark_family(bundle: Bundle) -> str | None:
    """The bundle's benchmark family (see the module doc), or None when unknown."""
    declared: Any = bundle.manifest.get("benchmark")
    if isinstance(declared, str) and declared.strip():
        key = re.sub(r"[^a-z0-9]+", "", declared.lower())
        return key if key in FAMILIES else None
    clues, classes = _clues(bundle), len(bundle.classes)
    for family, (count, name) in FAMILIES.items():
        # "cifar100" contains "cifar10": the class count tells the two apart
        if classes == count and name in clues:
            return family
    return None


def recommended_params(method: str, family: str | None) -> dict[str, float]:
    """The paper's recommended value of each of ``method``'s parameters for ``family``
    (only the parameters that declare one; empty for an unknown family)."""
    if family is None:
        return {}
    return {q.name: float(q.recommended[family]) for q in get_method(method).params
            if family in q.recommended}
