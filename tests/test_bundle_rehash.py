"""``ash-explore bundle rehash`` (issue 22): after a deliberate edit, record the new
sha256s, but only when the edited bundle still passes every loader check; a refusal
exits 2 with one ``error:`` line and leaves the manifest byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import write_small

from ash_core.bundle.safetensors_io import read_tensors, write_tensors
from ash_core.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["bundle", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_small(tmp_path / "b")


def _resave(root: Path, rel: str, fn) -> None:
    arrays = {k: np.array(v) for k, v in read_tensors(root / rel, mmap=False).items()}
    write_tensors(root / rel, fn(arrays))


def test_edited_sidecar_is_listed_and_verify_passes_after(bundle, capsys):
    csv = bundle / "splits" / "ood_a.csv"
    csv.write_text(csv.read_text().replace(",\n", ",edited\n", 1))
    code, _, err = _run(capsys, "verify", str(bundle))
    assert code == 2 and "bundle rehash" in err
    _one_error(err)
    code, out, _ = _run(capsys, "rehash", str(bundle))
    assert code == 0
    assert "splits/ood_a.csv: " in out and " -> " in out
    changed = [line for line in out.splitlines() if " -> " in line]
    assert len(changed) == 1, out
    assert "1 changed" in out
    assert _run(capsys, "verify", str(bundle))[:2] == (0, "ok\n")


def test_resaved_split_file_every_changed_file_is_rehashed(bundle, capsys):
    _resave(bundle, "splits/id_test.safetensors",
            lambda a: {**a, "features": a["features"] * 2})
    _resave(bundle, "splits/ood_a.safetensors",
            lambda a: {**a, "features": a["features"] + 1})
    assert _run(capsys, "verify", str(bundle))[0] == 2
    code, out, _ = _run(capsys, "rehash", str(bundle))
    assert code == 0, out
    assert "splits/id_test.safetensors: " in out and "splits/ood_a.safetensors: " in out
    assert "2 changed" in out
    assert _run(capsys, "verify", str(bundle))[:2] == (0, "ok\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["splits"][0]["name"] == "id_test"  # the rest of the manifest is kept


def test_nothing_changed_writes_nothing(bundle, capsys):
    before = (bundle / "manifest.json").read_bytes()
    code, out, _ = _run(capsys, "rehash", str(bundle))
    assert code == 0 and "0 changed" in out and "unchanged" in out
    assert (bundle / "manifest.json").read_bytes() == before


def _refused(bundle: Path, capsys, path: Path | None = None) -> str:
    manifest = bundle / "manifest.json"
    before = manifest.read_bytes() if manifest.is_file() else None
    entries = sorted(p.name for p in bundle.iterdir()) if bundle.is_dir() else None
    code, out, err = _run(capsys, "rehash", str(path or bundle))
    assert code == 2 and out == ""
    _one_error(err)
    if before is not None:
        assert manifest.read_bytes() == before
    if entries is not None:
        assert sorted(p.name for p in bundle.iterdir()) == entries  # no temp file left
    return err


def test_features_of_the_wrong_width_are_refused(bundle, capsys):
    _resave(bundle, "splits/ood_a.safetensors",
            lambda a: {**a, "features": np.zeros((a["features"].shape[0], 5), np.float32)})
    assert "feature dimension" in _refused(bundle, capsys)


def test_wrong_row_count_is_refused(bundle, capsys):
    _resave(bundle, "splits/ood_a.safetensors", lambda a: {**a, "features": a["features"][:5]})
    assert "declares n=" in _refused(bundle, capsys)


def test_missing_file_is_refused(bundle, capsys):
    (bundle / "splits" / "ood_a.csv").unlink()
    assert "missing" in _refused(bundle, capsys)


def test_path_escaping_the_bundle_is_refused(bundle, capsys, tmp_path):
    (tmp_path / "outside.csv").write_text("x\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["splits"][2]["meta"] = "../outside.csv"
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _refused(bundle, capsys)


def test_not_a_bundle_is_refused(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert "not an ASH bundle" in _refused(tmp_path / "plain", capsys)
    assert "not an ASH bundle" in _refused(tmp_path / "absent", capsys)
