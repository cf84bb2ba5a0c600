"""The native kernel is only ever loaded from a directory and file that only we control.

Threat: another local user pre-creates the predictable fallback directory
``$TMPDIR/ash-explorer-kernels-<uid>`` (or our cache directory) with a library under the
expected name; ``sweep`` run by us (as root, say) must never dlopen it."""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from ash_core.cube import kernel as kernel_mod
from ash_core.cube.private_dir import why_untrusted_dir, why_untrusted_file

TILE = 16
PLANT_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("planted library ran", f); fclose(f); }
}
int ash_cube_rows(void) { return 0; }
"""


@pytest.fixture
def fresh_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No loaded kernels, cache and temp dirs under tmp_path; returns every dlopen'ed path."""
    monkeypatch.setattr(kernel_mod, "_cache", {})
    monkeypatch.setattr(kernel_mod, "_why", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.delenv("ASH_CUBE_BACKEND", raising=False)
    monkeypatch.delenv("ASH_CUBE_ENGINE", raising=False)
    opened: list[str] = []
    real = ctypes.CDLL

    def recording(name, *args, **kwargs):
        opened.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", recording)
    return opened


def _compiler() -> str | None:
    try:
        return kernel_mod.find_compiler()
    except RuntimeError:
        return None


def _plant(directory: Path, marker: Path, mode: int = 0o777) -> Path:
    """A library under the name the loader looks for, whose constructor writes ``marker``
    (without a compiler: junk bytes under that name; nothing may be loaded then)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, mode)
    cc = _compiler()
    lib = directory / kernel_mod.library_name(TILE, cc or "cc")
    src = directory.parent / "plant.c"
    src.write_text(PLANT_C)
    if cc:
        subprocess.run([cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(src), "-o",
                        str(lib)], check=True, capture_output=True)
    else:
        lib.write_bytes(b"\x7fELF junk")
    os.chmod(lib, 0o777)
    return lib


def _assert_not_loaded(opened: list[str], planted: list[Path], marker: Path) -> None:
    if _compiler() is None:  # the torch fallback: nothing at all may be dlopen'ed
        assert opened == [] and not marker.exists()
        return
    assert opened, "the kernel was not loaded at all"
    for path in opened:
        assert Path(path) not in planted
        assert why_untrusted_dir(Path(path).parent) is None
        assert why_untrusted_file(Path(path)) is None
    assert not marker.exists(), "the planted library ran"


def test_world_writable_kernel_dirs_are_never_loaded_from(tmp_path: Path,
                                                          fresh_loader: list[str]) -> None:
    marker = tmp_path / "PWNED"
    planted = [
        _plant(tmp_path / "xdg" / "ash-explorer" / "kernels", marker),
        _plant(tmp_path / "tmp" / f"ash-explorer-kernels-{os.geteuid()}", marker),
    ]
    kernel_mod.load_kernel(TILE)  # compiled into a fresh private dir
    _assert_not_loaded(fresh_loader, planted, marker)
    assert all(tmp_path / "tmp" in Path(p).parents for p in fresh_loader)  # a mkdtemp dir


def test_a_library_others_can_write_is_rebuilt_elsewhere(tmp_path: Path,
                                                         fresh_loader: list[str]) -> None:
    marker = tmp_path / "PWNED"
    kdir = tmp_path / "xdg" / "ash-explorer" / "kernels"
    planted = [_plant(kdir, marker, mode=0o700)]  # our private dir, but a 0777 library
    kernel_mod.load_kernel(TILE)
    _assert_not_loaded(fresh_loader, planted, marker)


def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path,
                                                      fresh_loader: list[str]) -> None:
    """Ownership, not only the mode: a 0755 directory of another uid is not ours. Only root
    can create one; elsewhere the ownership check itself is pinned on a faked lstat."""
    marker = tmp_path / "PWNED"
    kdir = tmp_path / "xdg" / "ash-explorer" / "kernels"
    planted = [_plant(kdir, marker, mode=0o755)]
    if os.geteuid() == 0:
        os.chown(kdir, 65534, 65534)
        os.chown(planted[0], 65534, 65534)
        os.chmod(planted[0], 0o755)
        assert "owned by uid 65534" in why_untrusted_dir(kdir)
        kernel_mod.load_kernel(TILE)
        _assert_not_loaded(fresh_loader, planted, marker)
    else:
        real = os.lstat

        class Other:
            def __init__(self, st):
                self.st_mode, self.st_uid = st.st_mode, os.geteuid() + 1

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "lstat", lambda p: Other(real(p)))
            assert "owned by uid" in why_untrusted_dir(kdir)


def test_the_kernel_dir_is_created_private(tmp_path: Path, fresh_loader: list[str]) -> None:
    loaded = kernel_mod.load_kernel(TILE)
    kdir = tmp_path / "xdg" / "ash-explorer" / "kernels"
    assert why_untrusted_dir(kdir) is None
    assert (os.stat(kdir).st_mode & 0o777) == 0o700
    if _compiler() is not None:
        assert loaded is not None
        assert [Path(p).parent for p in fresh_loader] == [kdir]
