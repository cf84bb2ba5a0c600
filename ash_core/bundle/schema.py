"""The declaration of the bundle format: every manifest field, variant block and layer-map
entry, with its type and range, stated once.

Each rule says what it wants (``text``), whether a value meets it (``check``, which names
the field when it does not) and gives values on both sides of it (``examples``: what the
tests and the fuzzer enumerate). ``MANIFEST_RULE`` is the whole manifest; the loader
applies it once, at load (``manifest.check_manifest``), so ``load_bundle``, ``bundle
verify`` and extraction refuse the same manifests with the same message. What a rule
cannot see alone (a shape that must agree with a file, ``num_classes`` with the head) is
listed in ``AGREEMENTS`` and checked where the files are read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ash_core.errors import BundleError

#: bounds far above any real model, so a forged manifest cannot ask for absurd allocations
MAX_CLASSES = 1 << 20
MAX_DIM = 1 << 24
MAX_ROWS = 1 << 40
MAX_MAP_SIDE = 1 << 16
MAX_NAME_LEN = 100
_NAME = re.compile(rf"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{{0,{MAX_NAME_LEN - 1}}}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (for error messages about bad input)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SchemaError(BundleError):
    """A manifest value breaks its rule; ``field`` names it (``splits[1].n``)."""

    def __init__(self, field: str, want: str, got: Any, missing: str | None = None):
        self.field, self.want, self.got = field, want, got
        super().__init__(
            f"manifest field {field} must be {want}, got {short(got)}." if missing is None
            else f"manifest lacks the required key {missing!r}{' in ' + field if field else ''}.")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_real(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


class Rule:
    """One constraint on a JSON value."""

    text = "a value"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, value: Any, at: str) -> None:
        if not self.ok(value):
            raise SchemaError(at, self.text, value)

    def examples(self) -> tuple[list[Any], list[Any]]:
        """(values that meet the rule, values that break it)."""
        raise NotImplementedError


class Composite(Rule):
    """A rule over parts (a list's items, an object's fields): ``check`` says which part
    breaks it, and ``ok`` is whether ``check`` passes."""

    def ok(self, value: Any) -> bool:
        try:
            self.check(value, "")
        except SchemaError:
            return False
        return True


@dataclass
class Const(Rule):
    value: Any

    def __post_init__(self):
        self.text = repr(self.value)

    def ok(self, v):
        return type(v) is type(self.value) and v == self.value

    def examples(self):
        return [self.value], [None, str(self.value) + "x", 2, True, [self.value]]


@dataclass
class Int(Rule):
    low: int
    high: int

    def __post_init__(self):
        self.text = f"an integer from {self.low} to {self.high}"

    def ok(self, v):
        return _is_int(v) and self.low <= v <= self.high

    def examples(self):
        return ([self.low, self.high], [self.low - 1, self.high + 1, str(self.low),
                                        self.low + 0.5, True, None, [self.low]])


@dataclass
class Real(Rule):
    low: float
    high: float
    low_open: bool = False

    def __post_init__(self):
        lo = "(" if self.low_open else "["
        self.text = f"a finite number in {lo}{self.low:g}, {self.high:g}]"

    def ok(self, v):
        return (_is_real(v) and (v > self.low if self.low_open else v >= self.low)
                and v <= self.high)

    def examples(self):
        return ([self.high, (self.low + self.high) / 2],
                [str(self.high), self.low - 1, self.high * 2 + 1, math.nan, math.inf, None,
                 True, *([self.low] if self.low_open else [])])


@dataclass
class Choice(Rule):
    values: tuple

    def __post_init__(self):
        self.text = "one of " + ", ".join(map(repr, self.values))

    def ok(self, v):
        return isinstance(v, str) and v in self.values

    def examples(self):
        return list(self.values), ["", "float64", 1, None, [self.values[0]]]


@dataclass
class Text(Rule):
    """A string; ``pattern`` (a full match) when given."""

    pattern: re.Pattern | None = None
    text: str = "a string"
    sample: str = "a"

    def ok(self, v):
        return isinstance(v, str) and (self.pattern is None or bool(self.pattern.fullmatch(v)))

    def examples(self):
        return [self.sample], [5, None, ["a"], {"a": 1}, *(["x"] if self.pattern else [])]


class Name(Text):
    def __init__(self):
        super().__init__(_NAME, f"an allowed name: 1-{MAX_NAME_LEN} letters, digits, '-', '_' and '.' (not "
                                "starting with '.')")

    def examples(self):
        return ["a", "x" * MAX_NAME_LEN, "b-1.c_d"], ["", ".x", "a/b", "x" * 101, 5, "a b"]


class RelPath(Text):
    def __init__(self):
        # absolute paths and escapes get their own message where the path is resolved
        # (``files.inside``)
        super().__init__(None, "a non-empty path relative to the bundle directory")

    def ok(self, v):
        return isinstance(v, str) and bool(v) and "\0" not in v

    def examples(self):
        return ["x.safetensors"], ["", 5, None, "a\0b", ["x"]]


@dataclass
class Nullable(Rule):
    rule: Rule

    def __post_init__(self):
        self.text = f"null or {self.rule.text}"

    def ok(self, v):
        return v is None or self.rule.ok(v)

    def check(self, v, at):
        if v is not None:
            self.rule.check(v, at)

    def examples(self):
        good, bad = self.rule.examples()
        return [None, *good], [b for b in bad if b is not None]


@dataclass
class Seq(Composite):
    item: Rule
    min_len: int = 0
    max_len: int | None = None
    label: Callable[[int, Any], str] | None = None

    def __post_init__(self):
        size = (f"{self.min_len}" if self.max_len == self.min_len
                else "at least one" if self.min_len == 1 else f"at least {self.min_len}")
        self.text = f"a list of {size} ({self.item.text})"

    def check(self, v, at):
        if not isinstance(v, list) or len(v) < self.min_len or (
                self.max_len is not None and len(v) > self.max_len):
            raise SchemaError(at, self.text, v)
        for i, x in enumerate(v):
            self.item.check(x, self.label(i, x) if self.label else f"{at}[{i}]")

    def examples(self):
        good, bad = self.item.examples()
        n = max(self.min_len, 1)
        return [[good[0]] * n], [None, "x", [bad[0]] * n,
                                 *([[good[0]] * (self.min_len - 1)] if self.min_len else [])]


@dataclass
class MapOf(Composite):
    key: Rule
    value: Rule
    #: rules of particular keys (a known variant's settings), instead of ``value``
    known: Mapping[str, Rule] = field(default_factory=dict)
    #: what a key is called in messages ("group name")
    key_label: str = "key"

    def __post_init__(self):
        self.text = f"an object ({self.key.text} -> {self.value.text})"

    def check(self, v, at):
        if not isinstance(v, dict):
            raise SchemaError(at, self.text, v)
        for k, x in v.items():
            if not self.key.ok(k):
                raise SchemaError(f"{at} {self.key_label}", self.key.text, k)
            self.known.get(k, self.value).check(x, f"{at}.{k}")

    def examples(self):
        good, bad = self.value.examples()
        bad_keys = [k for k in self.key.examples()[1] if isinstance(k, str)]  # JSON keys
        return [{}, {"k": good[0]}], [None, [], {"k": bad[0]},
                                      *({k: good[0]} for k in bad_keys[:1])]


@dataclass
class Fields(Composite):
    """An object with declared fields (``required`` ones must be present); other keys are
    allowed (provenance) and ignored."""

    fields: Mapping[str, Rule]
    required: tuple[str, ...] = ()
    text: str = "an object"

    def check(self, v, at):
        if not isinstance(v, dict):
            raise SchemaError(at, self.text, v)
        for key in self.required:
            if key not in v:
                raise SchemaError(at, "present", None, missing=key)
        for key, rule in self.fields.items():
            if key in v:
                rule.check(v[key], f"{at}.{key}".lstrip("."))

    def examples(self):
        good = {k: r.examples()[0][0] for k, r in self.fields.items()}
        bad: list[Any] = [None, []]
        for k in self.required:
            bad.append({kk: vv for kk, vv in good.items() if kk != k})
        return [good], bad


def _split_label(i: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"splits[{i}]" + (f" ({name!r})" if isinstance(name, str) else "")


def _is_json_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or _is_real(v)


ROLES = ("id", "id_fit", "id_val", "ood", "ood_val")
FEATURE_DTYPES = ("float16", "float32")

SPLIT_RULE = Fields({
    "name": Name(), "role": Choice(ROLES), "file": RelPath(), "n": Int(0, MAX_ROWS),
    "meta": Nullable(RelPath()), "thumbnails": Nullable(RelPath()),
    "variants": MapOf(Name(), RelPath()),
}, required=("name", "role", "file", "n"))

#: the settings of a variant this code reads: ODIN's temperature T (softmax(logits / T))
#: and input perturbation epsilon
ODIN_RULE = Fields({"temperature": Real(0.0, 1e9, low_open=True), "epsilon": Real(0.0, 1.0)},
                   required=("temperature",))
#: any other variant's settings: provenance, numbers and strings
SETTING_VALUE = type("Setting", (Rule,), {
    "text": "a number or a string",
    "ok": lambda self, v: isinstance(v, str) or _is_real(v),
    "examples": lambda self: ([1.0, "x"], [None, [], True, math.nan]),
})()
VARIANTS_RULE = MapOf(Name(), MapOf(Text(), SETTING_VALUE), known={"odin": ODIN_RULE})

#: one ``create_model`` argument of a timm tail: a JSON scalar or a list of them (a
#: ``img_size`` of ``[32, 32]``); never code
MODEL_ARG = type("ModelArg", (Rule,), {
    "text": "a number, a string, true/false, null or a list of those",
    "ok": lambda self, v: _is_json_scalar(v) or (
        isinstance(v, list) and all(_is_json_scalar(x) and x is not None for x in v)),
    "examples": lambda self: ([1, "avg", True, None, [32, 32]], [{}, [[1]], math.inf]),
})()

#: a map is [C, H, W] (a CNN's feature map) or [T, C] (a transformer block's tokens)
LAYER_MAP_RULE = Fields({
    "point": Text(), "where": Text(), "tail": Nullable(RelPath()),
    "shape": Seq(Int(1, MAX_MAP_SIDE), 2, 3), "files": MapOf(Name(), RelPath()),
}, required=("point", "shape", "files"))
LAYERS_RULE = Fields({
    "format": Const(1), "arch": Text(), "num_classes": Int(1, MAX_CLASSES),
    "model_args": MapOf(Text(), MODEL_ARG), "maps": MapOf(Name(), LAYER_MAP_RULE),
}, required=("format", "arch", "num_classes", "maps"))

MANIFEST_RULE = Fields({
    "name": Text(), "feature_dim": Int(1, MAX_DIM), "num_classes": Int(1, MAX_CLASSES),
    "classes": Seq(Text(), 1, MAX_CLASSES), "head": Fields({"file": RelPath()}, ("file",)),
    "feature_dtype": Choice(FEATURE_DTYPES),
    "splits": Seq(SPLIT_RULE, 1, label=_split_label),
    "files": MapOf(RelPath(), Text(_HEX64, "a sha256 hex digest (64 characters 0-9a-f)", "0" * 64)),
    "variants": VARIANTS_RULE, "groups": MapOf(Name(), Seq(Name(), 1), key_label="group name"),
    "layers": LAYERS_RULE,
}, required=("head", "classes", "splits", "feature_dtype"))

#: what must agree with the files (checked where they are read: ``load``, ``layers.store``)
AGREEMENTS = (
    "head weight is F32 [C, D] and bias F32 [C], with C >= 1 and D >= 1",
    "len(classes) == C; num_classes == C and feature_dim == D where given",
    "a split's features are [n, D] in feature_dtype; labels I64 [n], in [0, C) for ID "
    "roles and [-1, C) for OOD roles; role 'id' has labels",
    "a variant's features are [n, D] in feature_dtype, in a file of its own",
    "every split variant is declared in 'variants'; every group member is an 'ood' split",
    "layers.num_classes == C; a layer's maps are F16 [n, *shape] for every split; its tail "
    "takes [1, *shape] to [1, C]",
    "every named file is a regular file inside the bundle, listed in 'files' by sha256",
)


def walk(rule: Rule, at: str = "") -> list[tuple[str, Rule]]:
    """Every declared field under ``rule`` as (dotted path, rule): what ``bundle verify``
    reports and the tests enumerate."""
    out = [(at, rule)] if at else []
    if isinstance(rule, Fields):
        for key, sub in rule.fields.items():
            out += walk(sub, f"{at}.{key}".lstrip("."))
    elif isinstance(rule, Seq):
        out += walk(rule.item, f"{at}[]")
    elif isinstance(rule, MapOf):
        for key, sub in rule.known.items():
            out += walk(sub, f"{at}.{key}")
        out += walk(rule.value, f"{at}.*")
    elif isinstance(rule, Nullable):
        out += walk(rule.rule, at)[1:]
    return out
