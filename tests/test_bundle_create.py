"""Bring your own features: ``create_bundle`` and ``ash-explore bundle``.

Every accepted input format goes from numpy arrays to ``ash-explore evaluate`` and must
match an independent numpy/scikit-learn energy AUROC; every refusal exits 2 with one
``error:`` line and writes nothing.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ash_core import BundleError, Setting, create_bundle, evaluate, load_bundle
from ash_core.bundle.safetensors_io import write_tensors
from ash_core.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMOS = sorted(p for p in (REPO / "cached_features").iterdir() if (p / "manifest.json").is_file())
C, D = 4, 6


class Evil:
    """A custom class: pickling it is what a weights-only loader must refuse."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def _data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "weight": rng.normal(size=(C, D)).astype(np.float32),
        "bias": rng.normal(size=C).astype(np.float32),
        "id_x": np.abs(rng.normal(size=(60, D))).astype(np.float32),
        "id_y": rng.integers(0, C, 60),
        "ood_x": np.abs(rng.normal(1.0, 1.5, size=(40, D))).astype(np.float32),
    }


def _energy_auroc(d: dict) -> float:
    """Independent: numpy logits, logsumexp energy, sklearn AUROC with ID positive."""
    def energy(x):
        z = x.astype(np.float64) @ d["weight"].T.astype(np.float64) + d["bias"]
        m = z.max(axis=1)
        return m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    s_id, s_ood = energy(d["id_x"]), energy(d["ood_x"])
    y = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
    return float(roc_auc_score(y, np.r_[s_id, s_ood]))


def _evaluated_auroc(bundle: Path, capsys) -> float:
    capsys.readouterr()
    assert main(["evaluate", os.fspath(bundle), "--method", "none", "--format", "json",
                 "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["ood"]["ood1"]["auroc"]


def _save(path: Path, arrays: dict) -> Path:
    """``arrays`` in the format ``path``'s suffix names."""
    suffix = path.suffix
    if suffix == ".npz":
        np.savez(path, **arrays)
    elif suffix == ".npy":
        np.save(path, arrays["features"])
    elif suffix == ".safetensors":
        write_tensors(path, {k: np.ascontiguousarray(v) for k, v in arrays.items()})
    else:
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}, path)
    return path


def _files(tmp: Path, d: dict, fmt: str, head_key: str | None = None) -> dict:
    head = {"weight": d["weight"], "bias": d["bias"]}
    if head_key:
        head = {f"{head_key}.{k}": v for k, v in head.items()}
        head["body.0.weight"] = np.zeros((3, 3), np.float32)
    id_fmt = ".npz" if fmt == ".npy" else fmt  # a .npy holds features only: no ID labels
    return {
        "head": _save(tmp / f"head{'.safetensors' if fmt == '.npy' else fmt}", head),
        "id": _save(tmp / f"id{id_fmt}", {"features": d["id_x"], "labels": d["id_y"]}),
        "ood": _save(tmp / f"ood{fmt}", {"features": d["ood_x"]}),
    }


def _create_args(out: Path, files: dict, *extra: str) -> list[str]:
    return ["bundle", "create", str(out), "--head", str(files["head"]),
            "--split", f"id1:id={files['id']}", "--split", f"ood1:ood={files['ood']}", *extra]


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("fmt", [".npz", ".npy", ".safetensors", ".pt"])
@pytest.mark.parametrize("head_key", [None, "fc"])
def test_every_format_reaches_evaluate_with_the_reference_auroc(tmp_path, capsys, fmt, head_key):
    d = _data()
    files = _files(tmp_path, d, fmt, head_key)
    out = tmp_path / "mine"
    extra = ["--head-key", head_key] if head_key else []
    assert main(_create_args(out, files, *extra)) == 0
    bundle = load_bundle(out)
    assert bundle.manifest["source"] == "create_bundle"
    assert bundle.classes == [f"class{i}" for i in range(C)]
    assert _evaluated_auroc(out, capsys) == pytest.approx(_energy_auroc(d), abs=1e-4)


def test_library_create_bundle_numpy_and_torch(tmp_path, capsys):
    d = _data(1)
    out = create_bundle(tmp_path / "lib", (torch.from_numpy(d["weight"]), d["bias"]),
                        {"id1": ("id", d["id_x"], torch.from_numpy(d["id_y"])),
                         "ood1": ("ood", d["ood_x"])},
                        classes=["a", "b", "c", "d"], name="mine", feature_dtype="float16")
    bundle = load_bundle(out)
    assert (bundle.name, bundle.classes) == ("mine", ["a", "b", "c", "d"])
    assert bundle.manifest["feature_dtype"] == "float16"
    # fp16 storage: the reference on the stored (rounded) features
    ref = dict(d, id_x=d["id_x"].astype(np.float16), ood_x=d["ood_x"].astype(np.float16))
    assert _evaluated_auroc(out, capsys) == pytest.approx(_energy_auroc(ref), abs=1e-4)


def test_groups_from_the_cli(tmp_path, capsys):
    d = _data(3)
    files = dict(_files(tmp_path, d, ".npz"),
                 ood2=_save(tmp_path / "ood2.npz", {"features": d["ood_x"][:20] + 1}))
    out = tmp_path / "mine"
    args = _create_args(out, files, "--split", f"ood2:ood={files['ood2']}",
                        "--group", "ood1=near", "--group", "ood2=far")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "near: ood1" in printed and f"ash-explore dashboard {out}" in printed
    assert load_bundle(out).groups == {"near": ("ood1",), "far": ("ood2",)}


def test_in_memory_bundle_evaluates_and_leaves_nothing_behind(tmp_path):
    d = _data(4)
    bundle = create_bundle(None, (d["weight"], d["bias"]),
                           {"id1": ("id", d["id_x"], d["id_y"]), "ood1": ("ood", d["ood_x"])})
    scratch = bundle.root.parent
    assert scratch.name.startswith("ash-bundle-") and scratch.is_dir()
    result = evaluate(bundle, Setting("none"))
    assert result.ood["ood1"]["auroc"] == pytest.approx(_energy_auroc(d), abs=1e-4)
    assert load_bundle(bundle).content_hash == bundle.content_hash  # a Bundle is a path
    del bundle, result
    gc.collect()
    assert not scratch.exists()


def test_the_docs_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "docs" / "bundle-format.md").read_text()
    block = text.split("## Bring your own features")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "bundle-format.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "mine"
    assert main(["bundle", "verify", "mine"]) == 0


def test_classes_name_dtype_and_overwrite_from_the_cli(tmp_path):
    d = _data(2)
    files = _files(tmp_path, d, ".npz")
    (tmp_path / "classes.txt").write_text("cat\ndog\nfox\nowl\n")
    out = tmp_path / "mine"
    args = _create_args(out, files, "--classes", str(tmp_path / "classes.txt"),
                        "--name", "pets", "--dtype", "float16")
    assert main(args) == 0
    assert main(args + ["--overwrite"]) == 0
    bundle = load_bundle(out)
    assert (bundle.name, bundle.classes) == ("pets", ["cat", "dog", "fox", "owl"])


# --------------------------------------------------------------------------- refusals


def _bad_file(tmp: Path, kind: str) -> Path:
    if kind == "text.npz":
        (tmp / "x.npz").write_text("not an archive")
        return tmp / "x.npz"
    if kind == "text.npy":
        (tmp / "x.npy").write_text("not an array")
        return tmp / "x.npy"
    if kind == "text.safetensors":
        (tmp / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
        return tmp / "x.safetensors"
    if kind == "text.pt":
        (tmp / "x.pt").write_text("not a torch file")
        return tmp / "x.pt"
    if kind == "pickle.pt":
        (tmp / "x.pt").write_bytes(pickle.dumps({"features": Evil()}))
        return tmp / "x.pt"
    if kind == "torchsave_object.pt":
        torch.save({"features": Evil()}, tmp / "x.pt")
        return tmp / "x.pt"
    if kind == "object.npy":
        np.save(tmp / "x.npy", np.array([Evil()], dtype=object), allow_pickle=True)
        return tmp / "x.npy"
    if kind == "no_features.npz":
        np.savez(tmp / "x.npz", feats=np.ones((3, D)))
        return tmp / "x.npz"
    raise AssertionError(kind)


def _bad_ood(kind: str):
    return lambda t, d, f: _create_args(t / "o", dict(f, ood=_bad_file(t, kind)))


REFUSALS = {
    "wrong width": lambda t, d, f: _create_args(t / "o", dict(
        f, ood=_save(t / "w.npz", {"features": np.ones((5, D + 1), np.float32)}))),
    "wrong head shape": lambda t, d, f: _create_args(t / "o", dict(
        f, head=_save(t / "h.npz", {"weight": d["weight"], "bias": d["bias"][:-1]}))),
    "3-d head": lambda t, d, f: _create_args(t / "o", dict(
        f, head=_save(t / "h.npz", {"weight": d["weight"][None], "bias": d["bias"]}))),
    "labels out of range": lambda t, d, f: _create_args(t / "o", dict(
        f, id=_save(t / "l.npz", {"features": d["id_x"], "labels": d["id_y"] + C}))),
    "nan": lambda t, d, f: _create_args(t / "o", dict(
        f, ood=_save(t / "n.npz", {"features": np.full((5, D), np.nan, np.float32)}))),
    "inf": lambda t, d, f: _create_args(t / "o", dict(
        f, ood=_save(t / "n.npz", {"features": np.full((5, D), np.inf, np.float32)}))),
    "empty split": lambda t, d, f: _create_args(t / "o", dict(
        f, ood=_save(t / "e.npz", {"features": np.zeros((0, D), np.float32)}))),
    "duplicate split": lambda t, d, f: _create_args(t / "o", f)
    + ["--split", f"ood1:ood={f['ood']}"],
    "unknown role": lambda t, d, f: _create_args(t / "o", f) + ["--split", f"x:test={f['ood']}"],
    "bad split syntax": lambda t, d, f: _create_args(t / "o", f) + ["--split", str(f["ood"])],
    "no id split": lambda t, d, f: ["bundle", "create", str(t / "o"), "--head", str(f["head"]),
                                    "--split", f"ood1:ood={f['ood']}"],
    "missing head key": lambda t, d, f: _create_args(t / "o", f, "--head-key", "fc"),
    "unknown suffix": lambda t, d, f: _create_args(t / "o", dict(f, ood=t / "x.csv")),
    "missing file": lambda t, d, f: _create_args(t / "o", dict(f, ood=t / "absent.npz")),
    "wrong class count": lambda t, d, f: _create_args(t / "o", f, "--classes", str(
        _text(t / "c.txt", "a\nb\n"))),
    **{f"bad file {k}": _bad_ood(k)
       for k in ("text.npz", "text.npy", "text.safetensors", "text.pt", "pickle.pt",
                 "torchsave_object.pt", "object.npy", "no_features.npz")},
    "bad group syntax": lambda t, d, f: _create_args(t / "o", f, "--group", "ood1"),
    "group of an unknown split": lambda t, d, f: _create_args(t / "o", f, "--group", "x=near"),
    "group of an id split": lambda t, d, f: _create_args(t / "o", f, "--group", "id1=near"),
    "split in two groups": lambda t, d, f: _create_args(t / "o", f, "--group", "ood1=near",
                                                        "--group", "ood1=far"),
    "pickle as head": lambda t, d, f: _create_args(t / "o", dict(f, head=_bad_file(t, "pickle.pt"))),
}


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_exit_2_with_one_error_line_and_write_nothing(tmp_path, capsys, case):
    d = _data()
    files = _files(tmp_path, d, ".npz")
    args = REFUSALS[case](tmp_path, d, files)
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert "unpickled!" not in captured.out + captured.err
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_a_refusal_leaves_no_parent_directories(tmp_path, capsys):
    d = _data()
    files = _files(tmp_path, d, ".npz")
    bad = dict(files, ood=_save(tmp_path / "n.npz", {"features": np.full((5, D), np.nan)}))
    assert main(_create_args(tmp_path / "new" / "deeper" / "o", bad)) == 2
    assert not (tmp_path / "new").exists()


def test_existing_out_is_kept_without_overwrite(tmp_path, capsys):
    d = _data()
    files = _files(tmp_path, d, ".npz")
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(_create_args(out, files)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    # --overwrite replaces bundles only, never another directory
    assert main(_create_args(out, files, "--overwrite")) == 2
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_library_refusal_is_a_bundle_error(tmp_path):
    d = _data()
    with pytest.raises(BundleError, match="role"):
        create_bundle(tmp_path / "o", (d["weight"], d["bias"]),
                      {"a": ("test", d["id_x"], d["id_y"])})
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- info, verify


@pytest.mark.parametrize("bundle", DEMOS, ids=lambda p: p.name)
def test_info_on_every_demo_bundle(bundle, capsys):
    start = time.perf_counter()
    assert main(["bundle", "info", str(bundle)]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert f"D={manifest['feature_dim']}" in out and f"C={manifest['num_classes']}" in out
    for entry in manifest["splits"]:
        assert entry["name"] in out
    assert "not checked" in out
    for group, members in manifest.get("groups", {}).items():
        assert f"  {group:24s} {', '.join(members)}" in out
    print(f"bundle info {bundle.name}: {elapsed:.3f} s")  # information only, not asserted


def test_verify_ok_and_one_changed_byte_fails(tmp_path, capsys):
    demo = min(DEMOS, key=lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()))
    assert main(["bundle", "verify", str(demo)]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    copy = tmp_path / demo.name
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns(".*"))
    assert main(["bundle", "info", str(copy), "--verify"]) == 0
    split = copy / json.loads((copy / "manifest.json").read_text())["splits"][0]["file"]
    data = bytearray(split.read_bytes())
    data[-3] ^= 0x01
    split.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["bundle", "verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "sha256" in err.lower()
    assert main(["bundle", "info", str(copy)]) == 0  # plain info does not hash
