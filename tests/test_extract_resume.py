"""Kill-and-resume: an extraction killed at any checkpoint, then simply rerun, ends with the
same bundle as an uninterrupted run and no leftovers; stale work of another recipe is never
mixed in, and nothing that is not ours is ever deleted.

Runs are forked children (see ``extract_helpers.run_forked``) on a tiny MNIST-CNN recipe from
../shared/data; ``ash_core.faults.checkpoint`` SIGKILLs a child at a named point.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from extract_helpers import (
    REPO,
    assert_same_bundle,
    manifest_without_timing,
    mnist_recipe,
    run_forked,
    write_recipe,
)

from ash_core import load_bundle

pytestmark = pytest.mark.slow

# Every kill point, by tag. These are the faults.checkpoint(...) tags in ash_core/extract
# (workdir, runner's chunks, writer, publish, leftovers) followed by those of the bundle
# writer, checkpoint("write_bundle.<stage>") inside ash_core.bundle.write_bundle; whenever a
# checkpoint is added to either, add its tag here (test_every_checkpoint_is_a_kill_point
# fails until then). $ASH_FAULT_AT is "tag" or "tag:N" (the N-th time the tag is reached).
KILL_TAGS = [
    "extract.work-new",    # work directory built under a temporary name, not yet renamed
    "extract.chunk",       # a chunk file is in place (reached once per chunk)
    "extract.write",       # every chunk done, the bundle not yet written
    "extract.written",     # bundle written inside the work directory, not yet published
    "extract.swap",        # --overwrite: old bundle moved to a tombstone, new one not in place
    "extract.published",   # new bundle in place, tombstone / work directory not yet removed
    "extract.tombstone",   # a directory renamed to its tombstone, not yet deleted
    "write_bundle.split_written",  # bundle writer: one split's files written, not the rest
    "write_bundle.files_written",  # bundle writer: every file written, not yet renamed
    "write_bundle.published",      # bundle writer: renamed into the work directory
]
# Writer checkpoints that extraction never reaches (it publishes with its own swap, so
# write_bundle never replaces a bundle here); tests/test_bundle_writer.py kills there.
WRITER_ONLY_TAGS = ["write_bundle.old_moved"]
# Every atomic file write passes this one (tests/test_kill_campaign.py kills there).
ATOMIC_TAGS = ["atomic_write.filled"]
CHUNKS = 7  # mnist_recipe: 3 + 2 + 2 chunks
SEED = 13
N_POINTS = 20


def kill_points() -> list[tuple[str, str, int]]:
    """(scenario, tag, occurrence): every non-chunk tag in each scenario that reaches it,
    then seeded chunk boundaries up to N_POINTS. Scenarios: 'fresh' (no bundle yet, plain
    command) and 'replace' (another recipe's bundle at the target, --overwrite)."""
    fixed = [(sc, tag, 1) for tag in KILL_TAGS if tag != "extract.chunk"
             for sc in ("fresh", "replace") if not (tag == "extract.swap" and sc == "fresh")]
    chunks = [(sc, "extract.chunk", n) for sc in ("fresh", "replace")
              for n in range(1, CHUNKS + 1)]
    return fixed + random.Random(SEED).sample(chunks, N_POINTS - len(fixed))


def test_every_checkpoint_is_a_kill_point() -> None:
    found = set()
    for path in (REPO / "ash_core").rglob("*.py"):
        if path.name != "faults.py":  # its docstring shows checkpoint("tag")
            found |= set(re.findall(r"checkpoint\(\s*f?[\"']([^\"']+)[\"']", path.read_text()))
    assert found, "no faults.checkpoint calls found"
    known = set(KILL_TAGS) | set(WRITER_ONLY_TAGS) | set(ATOMIC_TAGS)
    assert found <= known, f"add {sorted(found - known)} to KILL_TAGS"


def _leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` but the bundle: NAME.partial, .NAME.tmp-*, .NAME.old-*,
    tombstones ..."""
    return sorted(p.name for p in folder.iterdir() if p.name != "bundle")


@pytest.fixture(scope="module")
def recipes(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Recipe B (tested), recipe A (same split names and chunks, other data: what a stale work
    directory or an old bundle holds), B's uninterrupted reference bundle and A's bundle."""
    root = tmp_path_factory.mktemp("recipes")
    b = write_recipe(root / "b.json", mnist_recipe(shared_data))
    a_recipe = mnist_recipe(shared_data)
    a_recipe["splits"] = [{**s, "data": s["data"].replace("limit=", "every=3&limit=")
                          .replace("seed=5", "seed=6")} for s in a_recipe["splits"]]
    a = write_recipe(root / "a.json", a_recipe)
    for name, recipe in (("ref", b), ("old", a)):
        (root / name).mkdir()
        rc, log = run_forked(["--config", str(recipe), "-o", str(root / name / "bundle")])
        assert rc == 0, log
    return {"b": b, "a": a, "ref": root / "ref" / "bundle", "old": root / "old" / "bundle"}


def assert_same_as_reference(out: Path, ref: Path) -> None:
    assert_same_bundle(ref, out)  # features, thumbnails, head, sidecars: bit for bit
    assert manifest_without_timing(out) == manifest_without_timing(ref)
    assert not _leftovers(out.parent), _leftovers(out.parent)


def test_killed_anywhere_then_rerun_equals_an_uninterrupted_run(
        recipes: dict[str, Path], tmp_path: Path) -> None:
    points = kill_points()
    assert len(points) == N_POINTS
    for i, (scenario, tag, nth) in enumerate(points):
        folder = tmp_path / f"{i:02d}-{scenario}-{tag.replace(':', '_')}-{nth}"
        folder.mkdir()
        out = folder / "bundle"
        cmd = ["--config", str(recipes["b"]), "-o", str(out)]
        if scenario == "replace":
            shutil.copytree(recipes["old"], out)
            cmd.append("--overwrite")
        rc, log = run_forked(cmd, fault=f"{tag}:{nth}")
        assert rc == -9, f"{tag}:{nth} ({scenario}) was not reached: rc {rc}\n{log}"
        if out.exists():  # a bundle is complete (the old or the new one) or absent
            load_bundle(out)
        rc, log = run_forked(cmd)
        assert rc == 0, f"rerun after a kill at {tag}:{nth} ({scenario}) failed:\n{log}"
        assert_same_as_reference(out, recipes["ref"])


def test_rerun_after_a_kill_behind_the_final_rename_reports_complete(
        recipes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    cmd = ["--config", str(recipes["b"]), "-o", str(out)]
    rc, _ = run_forked(cmd, fault="extract.published")
    assert rc == -9 and out.is_dir() and out.with_name("bundle.partial").is_dir()
    rc, log = run_forked(cmd)  # a plain rerun: no --overwrite
    assert rc == 0, log
    assert "already complete" in log and "removed the leftover work directory" in log, log
    assert_same_as_reference(out, recipes["ref"])


def test_resumed_splits_record_the_totals_of_every_run(recipes: dict[str, Path],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    cmd = ["--config", str(recipes["b"]), "-o", str(out)]
    rc, _ = run_forked(cmd, fault="extract.chunk:4")  # mnist's 3 chunks done, fashion's first
    assert rc == -9
    rc, log = run_forked(cmd)
    assert rc == 0 and "48 already done" in log, log
    splits = {s["name"]: s for s in manifest_without_timing(out)["splits"]}
    assert {n: s["extraction"]["images"] for n, s in splits.items()} == {
        "mnist": 48, "fashion": 32, "noise": 20}
    manifest = load_bundle(out).manifest
    assert all(s["extraction"]["seconds"] > 0 for s in manifest["splits"]), manifest["splits"]


def _stale_work_dir(recipes: dict[str, Path], folder: Path) -> Path:
    """NAME.partial holding recipe A's first 3 chunks (killed at the 4th chunk)."""
    out = folder / "bundle"
    rc, _ = run_forked(["--config", str(recipes["a"]), "-o", str(out)],
                       fault="extract.chunk:4")
    assert rc == -9
    return out


def test_a_work_dir_without_our_marker_is_refused_and_kept(recipes: dict[str, Path],
                                                           tmp_path: Path) -> None:
    # the reported bug: a kill while the work directory was being deleted had removed its
    # marker; a rerun with another recipe and --overwrite said "48 already done" and stored
    # recipe A's features under recipe B's names
    out = _stale_work_dir(recipes, tmp_path)
    work = out.with_name("bundle.partial")
    (work / "progress.json").unlink()
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    rc, log = run_forked(["--config", str(recipes["b"]), "-o", str(out), "--overwrite"])
    assert rc == 2 and "not an extraction work directory" in log, log
    assert "already done" not in log and not out.exists()
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # nothing deleted


def test_chunks_of_another_recipe_are_never_mixed_in(recipes: dict[str, Path],
                                                     tmp_path: Path) -> None:
    # recipe B's marker over recipe A's chunks (same split names and chunk numbers): only the
    # fingerprint inside each chunk tells them apart
    (tmp_path / "run").mkdir()
    out = _stale_work_dir(recipes, tmp_path / "run")
    work = out.with_name("bundle.partial")
    probe = tmp_path / "probe" / "bundle"
    probe.parent.mkdir()
    rc, _ = run_forked(["--config", str(recipes["b"]), "-o", str(probe)],
                       fault="extract.chunk:1")
    assert rc == -9
    shutil.copy(probe.with_name("bundle.partial") / "progress.json", work / "progress.json")
    cmd = ["--config", str(recipes["b"]), "-o", str(out)]
    rc, log = run_forked(cmd)
    assert rc == 2 and "different recipe" in log and "--overwrite" in log, log
    # with --overwrite it is discarded as a whole; a kill during that deletion is safe too
    rc, log = run_forked([*cmd, "--overwrite"], fault="extract.tombstone:1")
    assert rc == -9 and not work.exists(), log
    assert any(p.name.startswith(".bundle.partial.dead-") for p in out.parent.iterdir())
    rc, log = run_forked([*cmd, "--overwrite"])
    assert rc == 0 and "already done" not in log, log
    assert_same_as_reference(out, recipes["ref"])
