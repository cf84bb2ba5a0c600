"""A kill campaign: 40 seeded SIGKILLs across every writer, each followed by a plain rerun.

Five workloads, each an ``ash-explore`` command on tiny inputs: an extraction (generated
images and noise through a randomly initialised ResNet-20 with a layer map), a layer sweep
on that bundle (the layer cache), a cube sweep (score cubes), ``search --all-methods``
(search results, fitted states, cubes) and ``bundle create --overwrite``. Each runs once
uninterrupted with ``$ASH_FAULT_TRACE`` set: that run is the reference, and its trace lists
every checkpoint it passed (``ash_core.faults``). The campaign picks, seeded, every
distinct checkpoint of every workload once, then further passes at random up to 40, and
for each one runs the command in a fresh copy of its inputs with ``$ASH_FAULT_AT=tag:N``
(a SIGKILL at the N-th pass of that checkpoint), checks that what is at the output is
complete or absent, reruns the command and checks that its output (stdout and every file
in the folder, bit for bit; an extraction manifest's timings aside) equals the reference,
with no temporary file left anywhere in the folder.

Runs are children forked from a forkserver that has imported torch and ash_core
(``extract_helpers.run_cli_forked``): a fresh ``python -m ash_core.cli`` costs seconds
of imports on a loaded machine, a forked child milliseconds, and a SIGKILL ends it the
same way.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import make_synthetic_bundle
from extract_helpers import manifest_without_timing, run_cli_forked

from ash_core import SplitData, load_bundle, write_bundle
from ash_core.diskcache import ENV_CACHE
from ash_core.faults import FAULT_ENV, TRACE_ENV

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("ASH_KILL_SEED", "24"))  # another seed draws other points
N_KILLS = 40
#: what a temporary file or directory of any writer looks like
TEMPORARY = re.compile(r"\.(tmp|partial|lock)|\.(old|dead|new)-|^tmp")


@dataclass
class Workload:
    name: str
    argv: Callable[[Path], list[str]]  # the command, given the run's folder
    output: str  # the folder's entry that must be complete or absent after a kill ("" none)
    stdout: bool = True  # whether the rerun prints what the reference printed (extraction
    # prints its timings and what it resumed)


def _images(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    for c in ("cat", "dog"):
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                root / "imgs" / c / f"{i}.png")


RECIPE = {"model": "cifar_resnet20", "batch_size": 4, "chunk_batches": 1,
          "workers": 0, "device": "cpu", "feature_dtype": "float32", "progress": False,
          "layers": ["layer2"], "name": "tiny",
          "splits": [{"name": "imgs", "role": "id", "data": "folder:imgs"},
                     {"name": "noise", "role": "ood", "data": "noise:uniform?n=6&seed=5"}]}


def _arrays(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(3, 6)), np.zeros(3)
    feats = np.maximum(rng.normal(0.5, 1, (16, 6)), 0)
    np.savez(root / "head.npz", weight=w, bias=b)
    np.savez(root / "id.npz", features=feats, labels=rng.integers(0, 3, 16))
    np.savez(root / "ood.npz", features=np.maximum(rng.normal(0, 1, (12, 6)), 0))


def _val_bundle(path: Path) -> None:
    rng = np.random.default_rng(0)

    def f(n):
        return np.maximum(rng.normal(0.5, 1, (n, 6)), 0).astype(np.float32)

    write_bundle(path, rng.normal(size=(3, 6)), np.zeros(3), ["a", "b", "c"], [
        SplitData("test", "id", f(20), rng.integers(0, 3, 20)),
        SplitData("train", "id_fit", f(40), rng.integers(0, 3, 40)),
        SplitData("val", "id_val", f(10), rng.integers(0, 3, 10)),
        SplitData("oval", "ood_val", f(10)),
        SplitData("far", "ood", f(12))])


def _create_args(d: Path) -> list[str]:
    return ["bundle", "create", str(d / "out"), "--head", str(d / "head.npz"), "--split",
            f"test:id={d / 'id.npz'}", "--split", f"far:ood={d / 'ood.npz'}", "--overwrite"]


WORKLOADS = [
    Workload("extract", lambda d: ["extract", "--config", str(d / "recipe.json"),
                                   "-o", str(d / "bundle")], "bundle", stdout=False),
    Workload("layers", lambda d: ["sweep", str(d / "lb"), "--layer", "layer2", "--methods",
                                  "ash-p,ash-s", "--p", "60:90:10", "--format", "csv"], ""),
    Workload("cube", lambda d: ["sweep", str(d / "sb"), "--methods", "ash-p,ash-s,react",
                                "--p", "60:90:10", "--format", "csv"], ""),
    Workload("search", lambda d: ["search", str(d / "vb"), "--all-methods", "--format",
                                  "json"], ""),
    Workload("create", _create_args, "out"),
]


def _inputs(root: Path, name: str, layer_bundle: Path | None) -> Path:
    """The inputs of workload ``name`` in ``root/name-inputs``."""
    d = root / f"{name}-inputs"
    d.mkdir()
    if name == "extract":
        _images(d)  # read from here by every run: the manifest records the data root
        (d / "recipe.json").write_text(json.dumps({**RECIPE, "data_root": str(d)}))
    elif name == "layers":
        shutil.copytree(layer_bundle, d / "lb")
    elif name == "cube":
        make_synthetic_bundle(d / "sb", n_id=40, n_ood=30, dim=12, classes=3)
    elif name == "search":
        _val_bundle(d / "vb")
    else:  # an older bundle at the target: the create replaces it
        _arrays(d, seed=7)
        rng = np.random.default_rng(8)
        write_bundle(d / "out", rng.normal(size=(3, 6)), np.zeros(3), ["0", "1", "2"],
                     [SplitData("old", "id", np.abs(rng.normal(size=(5, 6))),
                                rng.integers(0, 3, 5))])
    return d


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (a directory -> "dir");
    an extraction manifest by its content without timings."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            out[rel] = "dir"
        elif rel == "bundle/manifest.json":
            out[rel] = json.dumps(manifest_without_timing(p.parent), sort_keys=True)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if TEMPORARY.search(p.name))


@dataclass
class Reference:
    inputs: Path
    stdout: str
    tree: dict[str, str]
    trace: list[str]


def _run(w: Workload, folder: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, stdout with ``folder`` written <F>, stderr) of ``w`` run in ``folder``."""
    # caches beside the bundle, whatever the caller's environment says
    rc, out, err = run_cli_forked(w.argv(folder), {ENV_CACHE: "", **(env or {})})
    return rc, out.replace(str(folder), "<F>"), err


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Reference]:
    root = tmp_path_factory.mktemp("campaign")
    refs: dict[str, Reference] = {}
    for w in WORKLOADS:
        layer_bundle = root / "extract-ref" / "bundle"
        inputs = _inputs(root, w.name, layer_bundle)
        folder = root / f"{w.name}-ref"
        shutil.copytree(inputs, folder)
        trace = root / f"{w.name}.trace"
        rc, out, err = _run(w, folder, {TRACE_ENV: str(trace)})
        assert rc == 0, f"{w.name}: {err}"
        assert not temporaries(folder), temporaries(folder)
        refs[w.name] = Reference(inputs, out, tree(folder), trace.read_text().split())
    return refs


def kill_points(refs: dict[str, Reference]) -> list[tuple[str, str, int]]:
    """(workload, tag, N): every distinct checkpoint of every workload at a seeded pass,
    then seeded passes of any workload up to N_KILLS."""
    rng = random.Random(SEED)
    hits = []  # (workload, tag, N) for every pass of every run
    for name, ref in refs.items():
        seen: collections.Counter[str] = collections.Counter()
        for tag in ref.trace:
            seen[tag] += 1
            hits.append((name, tag, seen[tag]))
    chosen = []
    for name, ref in refs.items():
        for tag in sorted(set(ref.trace)):
            chosen.append((name, tag, rng.randint(1, ref.trace.count(tag))))
    rest = [h for h in hits if h not in chosen]
    return chosen + rng.sample(rest, N_KILLS - len(chosen))


def test_forty_kills_recover_bit_for_bit_with_no_leftovers(references, tmp_path):
    points = kill_points(references)
    assert len(points) == N_KILLS == len(set(points))
    assert {w for w, _, _ in points} == {w.name for w in WORKLOADS}
    by_name = {w.name: w for w in WORKLOADS}
    recovered = 0
    for i, (name, tag, nth) in enumerate(points):
        w, ref = by_name[name], references[name]
        what = f"kill {i} ({name} at {tag}:{nth})"
        folder = tmp_path / f"{i:02d}-{name}"
        shutil.copytree(ref.inputs, folder)
        rc, _, err = _run(w, folder, {FAULT_ENV: f"{tag}:{nth}"})
        assert rc == -9, f"{what} was not reached: rc {rc}\n{err}"
        if w.output and (folder / w.output).exists():  # complete, the old or the new one
            load_bundle(folder / w.output)
        rc, out, err = _run(w, folder)
        assert rc == 0, f"rerun after {what} failed:\n{err}"
        assert temporaries(folder) == [], what
        assert out == ref.stdout or not w.stdout, what
        got = tree(folder)
        assert got == ref.tree, (what, sorted(set(got) ^ set(ref.tree)))
        shutil.rmtree(folder)
        recovered += 1
    assert recovered == N_KILLS


def test_the_campaign_passes_every_writer_checkpoint(references):
    """Every checkpoint in ash_core but extraction's swap and discard ones (an extraction
    over an older bundle or recipe: tests/test_extract_resume.py kills there) is a point
    the campaign can choose."""
    from test_extract_resume import REPO

    found = set()
    for path in (REPO / "ash_core").rglob("*.py"):
        if path.name != "faults.py":
            found |= set(re.findall(r"checkpoint\(\s*f?[\"']([^\"']+)[\"']", path.read_text()))
    passed = {tag for ref in references.values() for tag in ref.trace}
    assert found - passed <= {"extract.swap", "extract.tombstone"}, found - passed


def test_a_fresh_interpreter_is_killed_and_recovers_the_same_way(references, tmp_path):
    """The campaign's forked children stand for ``python -m ash_core.cli``: one kill of a
    fresh interpreter (``bundle create`` with the old bundle moved aside, the new one not
    yet in place) recovers to the same files."""
    import subprocess
    import sys

    from test_extract_resume import REPO

    w, ref = WORKLOADS[-1], references["create"]
    folder = tmp_path / "create"
    shutil.copytree(ref.inputs, folder)
    env = {**os.environ, "PYTHONPATH": str(REPO), ENV_CACHE: "",
           FAULT_ENV: "write_bundle.old_moved"}
    proc = subprocess.run([sys.executable, "-m", "ash_core.cli", *w.argv(folder)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert not (folder / "out").exists() and temporaries(folder)  # killed mid-swap
    rc, out, err = _run(w, folder)
    assert rc == 0 and out == ref.stdout, err
    assert tree(folder) == ref.tree and temporaries(folder) == []
