"""safetensors_io: the one reader/writer, interoperable with the safetensors library and
strict about every byte of a hostile file."""

from __future__ import annotations

import json
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

from ash_core.bundle.safetensors_io import (
    DTYPES,
    MAX_HEADER_BYTES,
    TensorInfo,
    read_header,
    read_tensors,
    write_tensors,
)
from ash_core.errors import BundleError


def raw(path: Path, header: dict | bytes, data: bytes = b"") -> Path:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


DEEP: list = [1]
for _ in range(70):
    DEEP = [DEEP]

ARRAYS = {
    "feats": np.arange(24, dtype=np.float16).reshape(4, 6)[:, ::2],  # not contiguous
    "flags": np.array([True, False, True]),
    "scalar": np.array(7, dtype=np.int64),
    "empty": np.zeros((0, 3), np.float32),
    "big_endian": np.arange(3, dtype=">i4"),
    "f64": np.linspace(0, 1, 5),
    "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
}


def test_writer_output_is_read_back_by_the_library_and_by_us(tmp_path):
    path = write_tensors(tmp_path / "x.safetensors", ARRAYS, {"key": "value"})
    theirs = load_file(str(path))
    ours = read_tensors(path)
    for name, arr in ARRAYS.items():
        for got in (theirs[name], ours[name]):
            assert got.shape == arr.shape and got.dtype == arr.dtype.newbyteorder("=")
            np.testing.assert_array_equal(got, arr)
    tensors, meta = read_header(path)
    assert meta == {"key": "value"}
    assert tensors["scalar"] == TensorInfo("I64", (), tensors["scalar"].start,
                                           tensors["scalar"].start + 8)
    for info in tensors.values():  # laid out so every tensor is aligned to its itemsize
        assert info.start % DTYPES[info.dtype].itemsize == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]  # no temp file


def test_library_files_are_read_memory_mapped_and_read_only(tmp_path):
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(tmp_path / "a.st"))
    arr = read_tensors(tmp_path / "a.st")["a"]
    assert isinstance(arr, np.memmap) and not arr.flags.writeable
    np.testing.assert_array_equal(read_tensors(tmp_path / "a.st", mmap=False)["a"], arr)


def test_bf16_is_widened_to_float32_not_reinterpreted_as_fp16(tmp_path):
    x = (torch.randn(5, 7) * 100).bfloat16()
    save_torch({"x": x}, str(tmp_path / "b.st"))
    got = read_tensors(tmp_path / "b.st")["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.float().numpy())


def test_expect_refuses_other_names_and_dtypes(tmp_path):
    save_file({"features": np.ones((2, 2), np.float64)}, str(tmp_path / "a.st"))
    with pytest.raises(BundleError, match="'features' is stored as F64; allowed: F16, F32"):
        read_tensors(tmp_path / "a.st", expect={"features": {"F16", "F32"}})
    save_file({"feature": np.ones((2, 2), np.float32)}, str(tmp_path / "a.st"))
    with pytest.raises(BundleError, match="tensor named 'feature'; expected only 'features'"):
        read_tensors(tmp_path / "a.st", expect={"features": {"F16", "F32"}})


def test_a_sparse_64_gib_file_fails_at_once(tmp_path):
    path = write_tensors(tmp_path / "x.st", {"a": np.ones(4, np.float32)})
    with open(path, "r+b") as fh:
        fh.truncate(64 << 30)
    start = time.perf_counter()
    with pytest.raises(BundleError, match="bytes after the last tensor"):
        read_tensors(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(("header", "data", "match"), [
    (b"[" * 200_000, b"", "nested deeper than 64"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": DEEP},
     bytes(4), "nested deeper than 64"),  # parses, but deeper than the bound
    (b"\xff\xfe{}", b"", "not valid JSON"),
    (b"[]", b"", "not a JSON object"),
    ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8), "unsupported"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "unsupported"),
    ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4), "unsupported"),
    ({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, bytes(4), "unsupported"),
    ({"a": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}, bytes(4), "unsupported"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, bytes(4), "unsupported"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, bytes(4),
     "unsupported"),
    ({"a": [1, 2]}, b"", "unsupported"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), "declared size"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "declared size"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, bytes(8), "declared size"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4), "truncated"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(5), "1 bytes after"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {"k": 1}},
     bytes(4), "__metadata__ must map strings to strings"),
    ({"a": {"dtype": "U8", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 4]}}, bytes(4),
     "declared size"),
])
def test_corrupt_headers_are_refused(tmp_path, header, data, match):
    with pytest.raises(BundleError, match=match):
        read_tensors(raw(tmp_path / "x.st", header, data))


def test_header_length_bounds(tmp_path):
    path = tmp_path / "x.st"
    for length in (0, MAX_HEADER_BYTES + 1, 1000):
        path.write_bytes(struct.pack("<Q", length) + b"{}" + bytes(8))
        with pytest.raises(BundleError, match="header length"):
            read_header(path)
    for data in (b"", b"\x01\x00\x00"):
        path.write_bytes(data)
        with pytest.raises(BundleError, match="truncated"):
            read_header(path)


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickles_are_refused_by_their_magic(tmp_path, kind):
    path = tmp_path / "x.st"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    else:
        torch.save({"a": torch.ones(2)}, path)
    with pytest.raises(BundleError, match=r"pickle/torch\.save file, not safetensors"):
        read_header(path)


def test_writer_refuses_bad_names_dtypes_and_metadata(tmp_path):
    with pytest.raises(BundleError, match="complex128"):
        write_tensors(tmp_path / "x.st", {"a": np.ones(2, complex)})
    with pytest.raises(BundleError, match="not allowed"):
        write_tensors(tmp_path / "x.st", {"__metadata__": np.ones(2)})
    with pytest.raises(BundleError, match="metadata must map strings to strings"):
        write_tensors(tmp_path / "x.st", {"a": np.ones(2)}, {"k": 1})
    assert list(tmp_path.iterdir()) == []
