"""An extraction recipe: the splits and every setting that defines a bundle (JSON-serialisable)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ash_core.bundle import ROLES, check_groups, check_split_name
from ash_core.bundle import check_split_roles as _bundle_split_rules
from ash_core.errors import BundleError, ExtractError
from ash_core.extract.odin import check_odin


@dataclass
class SplitSpec:
    """One split of the bundle: name, role (id / id_fit / ood), data spec, thumbnails."""

    name: str
    role: str
    data: str
    thumbnails: bool | None = None  # None: only for sources that are redistributable

    def __post_init__(self) -> None:
        check_split_name(self.name)
        _check_role(self)


def _check_role(spec: SplitSpec) -> None:
    if spec.role not in ROLES:
        raise ExtractError(f"split {spec.name!r}: role must be one of {', '.join(ROLES)}, "
                           f"got {spec.role!r}.")


def check_split_roles(splits: Sequence[SplitSpec]) -> None:
    """The bundle's split-set rules (``ash_core.bundle.check_split_roles``: exactly one
    ``id``, at most one ``id_fit``/``id_val``, unique safe names, valid roles), checked on
    the recipe so that it fails before any model runs; ExtractError otherwise."""
    try:
        _bundle_split_rules((s.name, s.role) for s in splits)
    except BundleError as exc:
        raise ExtractError(str(exc)) from None


#: integer settings and their lower bounds; None is allowed where marked
_INT_FIELDS = (("batch_size", 1, False), ("chunk_batches", 1, False), ("workers", 0, False),
               ("resize", 1, True), ("crop", 1, True))


@dataclass
class ExtractConfig:
    """Everything that defines a bundle (a recipe); JSON-serialisable."""

    out: str
    model: str
    splits: list[SplitSpec]
    weights: str | None = None
    layer: str | None = None
    layers: list[str] = field(default_factory=list)  # blocks whose maps are cached too
    data_root: str | None = None
    protocol: str | None = None
    resize: int | None = None
    crop: int | None = None
    batch_size: int = 256
    chunk_batches: int = 4
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    feature_dtype: str = "float16"
    fit_head: bool = False
    download: bool = False
    #: allow a timm model without --weights (seeded random initialisation)
    random_init: bool = False
    overwrite: bool = False
    name: str | None = None
    progress: bool = True
    #: ``[T, EPS]``: also store ODIN's perturbed-input features (``extract.odin``) as the
    #: "odin" variant of every split but id_fit (ODIN is not fitted); None: no ODIN
    odin: list[float] | None = None
    #: OOD groups written to the manifest, e.g. ``{"near": ["tinyimagenet"], "far": [...]}``
    #: (OpenOOD's near/far); None: the bundle declares none
    groups: dict[str, list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.splits = [s if isinstance(s, SplitSpec) else SplitSpec(**s) for s in self.splits]
        check_split_roles(self.splits)
        if self.fit_head and "id_fit" not in [s.role for s in self.splits]:
            raise ExtractError("--fit-head needs an id_fit split with labels (--id-fit SPEC).")
        if self.groups is not None:
            try:
                check_groups(self.groups, ((s.name, s.role) for s in self.splits))
            except BundleError as exc:
                raise ExtractError(f"groups: {exc}") from None
            self.groups = {g: list(m) for g, m in self.groups.items()}
        odin = check_odin(self.odin)
        self.odin = None if odin is None else list(odin)
        if self.odin is not None and self.fit_head:
            raise ExtractError("--odin perturbs inputs along the model's own classifier, and "
                               "with --fit-head the model has none; drop one of the two.")
        for key, low, optional in _INT_FIELDS:
            value = getattr(self, key)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ExtractError(
                    f"{key} must be an integer >= {low} (--{key.replace('_', '-')}), got "
                    f"{value!r}."
                )

    def odin_on(self, spec: SplitSpec) -> bool:
        """Whether split ``spec`` gets ODIN's perturbed features (every role but id_fit)."""
        return self.odin is not None and spec.role != "id_fit"

    @property
    def chunk_size(self) -> int:
        """Samples per chunk (the unit of resumable work)."""
        return self.batch_size * self.chunk_batches

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> ExtractConfig:
        """Read a recipe file; keys are the field names; ``overrides`` (not None) win."""
        path = Path(path)
        raw = _read_recipe(path)
        raw.pop("description", None)
        raw.pop("$comment", None)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ExtractError(f"config {path}: unknown key(s) {sorted(unknown)}; known: "
                               f"{sorted(known)}.")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ExtractError(f"config {path}: {exc}.") from None


def _read_recipe(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExtractError(f"config {path} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise ExtractError(f"config {path} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise ExtractError(
            f"config {path} must be a JSON object of recipe fields (see configs/), got "
            f"a {type(raw).__name__}."
        )
    return raw
