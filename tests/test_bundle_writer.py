"""The writer under kill -9: every crash point leaves a state the next run repairs, and
nothing that is not recognisably ours is ever deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import leftovers, small_splits, write_small

from ash_core import load_bundle
from ash_core.errors import BundleError
from ash_core.faults import FAULT_ENV

TESTS = Path(__file__).resolve().parent
CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bundle_helpers import small_splits, write_small
write_small(Path(sys.argv[2]), splits=small_splits(seed=int(sys.argv[3])), overwrite=True)
"""


def killed_write(path: Path, seed: int, tag: str) -> None:
    """Run write_bundle in a child that SIGKILLs itself at ``tag``."""
    env = {**os.environ, FAULT_ENV: tag,
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(TESTS), str(path), str(seed)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # it really died at the checkpoint


def features(path: Path) -> np.ndarray:
    return np.asarray(load_bundle(path).id_split.features)


def expected(seed: int) -> np.ndarray:
    return np.asarray(small_splits(seed=seed)[0].features)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_first_write_leaves_a_temp_dir_the_next_write_removes(tmp_path):
    path = tmp_path / "b"
    killed_write(path, 1, "write_bundle.split_written:2")
    assert [n.split("-")[0] for n in leftovers(tmp_path)] == [".b.tmp"]
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(path)
    write_small(path)
    assert leftovers(tmp_path) == ["b"]


def test_a_kill_between_the_swap_renames_is_restored_by_load(tmp_path):
    path = write_small(tmp_path / "b", splits=small_splits(seed=0))
    killed_write(path, 1, "write_bundle.old_moved")
    assert not path.exists()
    assert sorted(n.split("-")[0] for n in leftovers(tmp_path)) == [".b.old", ".b.tmp"]
    with pytest.warns(UserWarning, match="killed while replacing this bundle; restored"):
        np.testing.assert_array_equal(features(path), expected(0))
    write_small(path, splits=small_splits(seed=2), overwrite=True)
    np.testing.assert_array_equal(features(path), expected(2))
    assert leftovers(tmp_path) == ["b"]  # the dead writer's temp dir is gone too


def test_a_kill_between_the_swap_renames_is_restored_by_the_next_write(tmp_path):
    path = write_small(tmp_path / "b", splits=small_splits(seed=0))
    killed_write(path, 1, "write_bundle.old_moved")
    with pytest.warns(UserWarning, match="restored the previous version"), \
            pytest.raises(BundleError, match="already exists"):
        write_small(path)
    np.testing.assert_array_equal(features(path), expected(0))
    assert leftovers(tmp_path) == ["b"]


@pytest.mark.parametrize("tag", ["write_bundle.files_written", "write_bundle.published"])
def test_kills_before_and_after_publishing(tmp_path, tag):
    path = write_small(tmp_path / "b", splits=small_splits(seed=0))
    killed_write(path, 1, tag)
    published = tag.endswith("published")
    np.testing.assert_array_equal(features(path), expected(1 if published else 0))
    assert len(leftovers(tmp_path)) == 2  # the bundle and one leftover
    write_small(path, splits=small_splits(seed=3), overwrite=True)
    assert leftovers(tmp_path) == ["b"]


def test_only_recognisable_leftovers_of_dead_writers_are_removed(tmp_path):
    path = write_small(tmp_path / "b")
    pid = dead_pid()
    foreign = tmp_path / f".b.tmp-{pid}-abc123"  # right name, foreign content
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    live = tmp_path / f".b.tmp-{os.getpid()}-abc123"  # a live writer's (ours)
    live.mkdir()
    not_a_bundle = tmp_path / f".b.old-{pid}-abc123"  # an "old copy" that is no bundle
    not_a_bundle.mkdir()
    stale = tmp_path / f".b.tmp-{pid}-zz9"
    (stale / "splits").mkdir(parents=True)
    write_small(path, overwrite=True)
    assert leftovers(tmp_path) == sorted(["b", foreign.name, live.name, not_a_bundle.name])
    assert (foreign / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("content", [{"precious.txt": "data"},
                                     {"manifest.json": '{"format": "other"}'},
                                     {"manifest.json": "[" * 100_000}])
def test_overwrite_never_deletes_a_directory_that_is_not_a_bundle(tmp_path, content):
    target = tmp_path / "b"
    target.mkdir()
    for name, text in content.items():
        (target / name).write_text(text)
    with pytest.raises(BundleError, match="is not an ASH bundle.*refusing to overwrite"):
        write_small(target, overwrite=True)
    assert {p.name: p.read_text() for p in target.iterdir()} == content
    assert leftovers(tmp_path) == ["b"]
