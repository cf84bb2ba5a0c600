"""Property-based: a corrupted bundle never gives a traceback or wrong numbers.

One tiny synthetic bundle is copied and corrupted per example (manifest fields, safetensors
headers, labels, features, symlinks), then ``ash-explore evaluate`` runs in-process. The
only acceptable outcomes: exit 2 with exactly one ``error:`` line, or exit 0 with numbers
that the uncorrupted bundle also gives (a corruption that changes no data, e.g. reordered
JSON keys, or one that drops/duplicates an OOD set). Never a traceback, never over 10 s.
Deterministic (derandomize=True); about 300 examples.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import rehash
from conftest import make_synthetic_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ash_core.cli import main

SETTINGS = dict(derandomize=True, deadline=10_000, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FILES = ["head.safetensors", "splits/id_test.safetensors", "splits/id_train.safetensors",
         "splits/far.safetensors", "splits/near.safetensors"]
SPLITS = ["id_test", "id_train", "far", "near"]


# --------------------------------------------------------------------------- harness


def run_cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def expired(*_):
        raise TimeoutError(f"evaluate took over 10 s on {path}")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["evaluate", str(path), "--method", "ash-s", "--p", "65",
                             "--format", "json"])
            except SystemExit as exc:
                code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def metric_rows(result: dict) -> set[tuple]:
    return {tuple(sorted(m.items())) for m in result["ood"].values()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = make_synthetic_bundle(tmp_path_factory.mktemp("fuzz") / "base", n_id=20, n_ood=10,
                                 dim=8, classes=3)
    code, out, err = run_cli(path)
    assert code == 0, err
    return path, json.loads(out)


@pytest.fixture
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("case")


class Case:
    """A fresh copy of the base bundle to corrupt, and the check of the outcome."""

    def __init__(self, base, work: Path):
        self.src, self.expected = base
        self.root = work / f"c{len(os.listdir(work))}" / "bundle"
        shutil.copytree(self.src, self.root, symlinks=True)

    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    def write_manifest(self, manifest, **dump) -> None:
        (self.root / "manifest.json").write_text(json.dumps(manifest, **dump))

    def check(self, must_fail: bool = False) -> None:
        code, out, err = run_cli(self.root)
        assert "Traceback" not in out + err, err
        if code == 2:
            lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert len(lines) == 1, err
            return
        assert code == 0 and not must_fail, (code, err)
        result = json.loads(out)
        assert result["id_accuracy"] == self.expected["id_accuracy"]
        assert metric_rows(result) <= metric_rows(self.expected), "numbers from bad data"


# --------------------------------------------------------------------------- manifest

DEEP = "[" * 100_000 + "]" * 100_000
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["../x", "/etc/passwd", "splits/../../x", "a/b",
                                               "head.safetensors", "", ".hidden", "x" * 300]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
TOP_KEYS = ["format", "version", "name", "feature_dim", "num_classes", "classes", "head",
            "feature_dtype", "splits", "files", "model", "layer"]
SPLIT_KEYS = ["name", "role", "file", "n", "meta", "thumbnails", "note"]


@settings(max_examples=60, **SETTINGS)
@given(key=st.sampled_from(TOP_KEYS), value=json_values, delete=st.booleans())
def test_manifest_top_level_fields(base, work, key, value, delete):
    case = Case(base, work)
    m = case.manifest()
    if delete:
        m.pop(key, None)
    else:
        m[key] = value
    case.write_manifest(m)
    case.check()


@settings(max_examples=60, **SETTINGS)
@given(split=st.integers(0, 3), key=st.sampled_from(SPLIT_KEYS), delete=st.booleans(),
       value=json_values | st.sampled_from(["id", "ood_val", "id_val", "train", "far", "near",
                                            "splits/near.safetensors", "splits/far.csv", 0, 10]))
def test_manifest_split_fields(base, work, split, key, delete, value):
    case = Case(base, work)
    m = case.manifest()
    if delete:
        m["splits"][split].pop(key, None)
    else:
        m["splits"][split][key] = value
    case.write_manifest(m)
    case.check()


@settings(max_examples=25, **SETTINGS)
@given(kind=st.sampled_from(["reorder", "indent", "deep", "huge", "bytes", "hash", "drop_hash",
                             "not_object", "empty"]),
       rel=st.sampled_from(FILES + ["splits/far.csv"]), data=st.binary(max_size=40))
def test_manifest_as_a_whole(base, work, kind, rel, data):
    case = Case(base, work)
    m = case.manifest()
    path = case.root / "manifest.json"
    if kind == "reorder":  # the same manifest: the same numbers, never an error
        case.write_manifest(dict(reversed(list(m.items()))), indent=None)
        return _check_same(case)
    if kind == "indent":
        case.write_manifest(m, indent=7, sort_keys=True)
        return _check_same(case)
    if kind == "deep":
        m["model"] = "PLACEHOLDER"
        path.write_text(json.dumps(m).replace('"PLACEHOLDER"', DEEP))
    elif kind == "huge":
        path.write_text(json.dumps(m)[:-1] + ', "pad": "' + "x" * (17 << 20) + '"}')
    elif kind == "bytes":
        path.write_bytes(data)
    elif kind == "hash":
        m["files"][rel] = "0" * 64
        case.write_manifest(m)
    elif kind == "drop_hash":
        m["files"].pop(rel)
        case.write_manifest(m)
    elif kind == "not_object":
        case.write_manifest(list(m.items()))
    else:
        path.write_text("")
    case.check(must_fail=True)


def _check_same(case: Case) -> None:
    code, out, err = run_cli(case.root)
    assert code == 0, err
    assert json.loads(out)["ood"] == case.expected["ood"]


# --------------------------------------------------------------------------- safetensors


def read_raw(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_raw(path: Path, header: dict | bytes, data: bytes, length_delta: int = 0) -> None:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", max(0, len(text) + length_delta)) + text + data)


DTYPES = ["F16", "BF16", "F32", "F64", "I64", "I32", "U8", "BOOL", "C64", "F8", "", 5, None]


@settings(max_examples=70, **SETTINGS)
@given(rel=st.sampled_from(FILES), mutation=st.sampled_from(
           ["dtype", "shape", "offsets", "length", "truncate", "append", "garbage", "extra",
            "drop", "deep"]),
       dtype=st.sampled_from(DTYPES),
       shape=st.lists(st.integers(-2, 2**40) | st.sampled_from([20, 8, 10, 3, 160]), max_size=4)
       | json_values,
       delta=st.integers(-64, 64).filter(bool), rehash_file=st.booleans())
def test_safetensors_headers(base, work, rel, mutation, dtype, shape, delta, rehash_file):
    case = Case(base, work)
    path = case.root / rel
    header, data = read_raw(path)
    name = sorted(k for k in header if k != "__metadata__")[0]
    length_delta = 0
    if mutation == "dtype":
        header[name]["dtype"] = dtype
    elif mutation == "shape":
        header[name]["shape"] = shape
    elif mutation == "offsets":
        header[name]["data_offsets"] = [max(0, o + delta) for o in header[name]["data_offsets"]]
    elif mutation == "length":
        length_delta = delta
    elif mutation == "truncate":
        data = data[:max(0, len(data) - abs(delta))]
    elif mutation == "append":
        data = data + bytes(abs(delta))
    elif mutation == "garbage":
        header = json.dumps(header).encode()[:-abs(delta) % 20 - 1] + b"\xff"
    elif mutation == "extra":
        header["extra"] = {"dtype": "U8", "shape": [abs(delta)],
                           "data_offsets": [len(data), len(data) + abs(delta)]}
        data = data + bytes(abs(delta))
    elif mutation == "drop":
        header.pop(name)
    else:
        header = json.dumps(header).encode()[:-1] + b', "x": ' + DEEP.encode() + b"}"
    write_raw(path, header, data, length_delta)
    if rehash_file:
        rehash(case.root, rel)
    case.check(must_fail=not (mutation == "dtype" and dtype == header_dtype(case.src / rel, name)
                              or mutation == "shape" and shape == header_shape(case.src / rel,
                                                                              name)))


def header_dtype(path: Path, name: str):
    return read_raw(path)[0][name]["dtype"]


def header_shape(path: Path, name: str):
    return read_raw(path)[0][name]["shape"]


# --------------------------------------------------------------------------- labels, features


@settings(max_examples=45, **SETTINGS)
@given(split=st.sampled_from(SPLITS), n=st.sampled_from([10, 20, 19, 21, 0]),
       values=st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=3),
       bad=st.sampled_from([-2**63, -7, -2, -1, 3, 10, 2**62]),
       dtype=st.sampled_from(["<i8", "<i4", "<f8", "<u1"]),
       tensor=st.sampled_from(["labels", "label", "targets"]))
def test_labels(base, work, split, n, values, bad, dtype, tensor):
    from safetensors.numpy import load_file, save_file

    case = Case(base, work)
    rel = f"splits/{split}.safetensors"
    arrays = load_file(str(case.root / rel))
    size = arrays["features"].shape[0] if n in (10, 20) else n
    labels = np.resize(np.array(values, dtype=object), size) if size else np.array([], object)
    labels = np.array([v % 3 for v in labels], dtype=np.int64)  # in range ...
    if size:
        labels[len(values) % size] = bad  # ... but one
    ood = split in ("far", "near")
    arrays[tensor] = labels.astype(dtype)
    save_file(arrays, str(case.root / rel))
    rehash(case.root, rel)
    harmless = ood and bad == -1 and tensor == "labels" and dtype == "<i8" and size == 10
    case.check(must_fail=not harmless)


@settings(max_examples=40, **SETTINGS)
@given(split=st.sampled_from(SPLITS), kind=st.sampled_from(["nan", "inf", "-inf", "f64", "bf16",
                                                          "f16", "i32"]),
       row=st.integers(0, 9), col=st.integers(0, 7))
def test_features(base, work, split, kind, row, col):
    from safetensors.numpy import load_file, save_file

    case = Case(base, work)
    rel = f"splits/{split}.safetensors"
    arrays = load_file(str(case.root / rel))
    feats = arrays["features"].copy()
    if kind in ("nan", "inf", "-inf"):
        feats[row, col] = float(kind)
        arrays["features"] = feats
        save_file(arrays, str(case.root / rel))
    elif kind == "bf16":  # the raw upper halves, declared BF16
        header, data = read_raw(case.root / rel)
        arr = np.frombuffer(data[header["features"]["data_offsets"][0]:
                                 header["features"]["data_offsets"][1]], "<u4") >> 16
        arrays["features"] = arr.astype("<u2").reshape(feats.shape)
        save_file(arrays, str(case.root / rel))
        header, data = read_raw(case.root / rel)
        header["features"]["dtype"] = "BF16"
        write_raw(case.root / rel, header, data)
    else:
        arrays["features"] = feats.astype({"f64": "<f8", "f16": "<f2", "i32": "<i4"}[kind])
        save_file(arrays, str(case.root / rel))
    rehash(case.root, rel)
    # NaN/Inf are found where features are used (FeatureError): ASH-S with local thresholds
    # never reads id_fit, so its numbers stay right; a wrong dtype is refused on load
    case.check(must_fail=kind not in ("nan", "inf", "-inf") or split != "id_train")


# --------------------------------------------------------------------------- symlinks


@settings(max_examples=30, **SETTINGS)
@given(rel=st.sampled_from(FILES + ["splits/far.csv", "manifest.json", "splits"]),
       target=st.sampled_from(["self", "outside", "dev_zero", "dir", "other", "missing"]),
       rehash_file=st.booleans())
def test_symlinks(base, work, rel, target, rehash_file):
    case = Case(base, work)
    link = case.root / rel
    outside = case.root.parent / "outside"
    shutil.copy(case.src / "splits/far.safetensors", outside)
    dest = {"self": link, "outside": outside, "dev_zero": Path("/dev/zero"),
            "dir": case.root / "splits", "other": case.root / "splits/near.safetensors",
            "missing": case.root / "nowhere"}[target]
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink()
    os.symlink(dest, link)
    if rehash_file and target == "other" and os.path.isfile(link):
        rehash(case.root, rel)  # a consistent (but swapped) bundle: far holds near's data
    case.check(must_fail=target != "other")
