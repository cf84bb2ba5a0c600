"""``import ash_core`` is lazy (PEP 562) so that ``ash-explore bundle info`` answers as a
fresh process without importing torch; every public name still imports."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import ash_core
import ash_core.bundle

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "cached_features" / "mnist_cnn"


def test_every_public_name_imports_and_is_listed():
    for module in (ash_core, ash_core.bundle):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
            assert name in dir(module), name
    namespace: dict = {}
    exec(f"from ash_core import {', '.join(ash_core.__all__)}", namespace)  # noqa: S102
    assert set(ash_core.__all__) <= set(namespace)


def test_unknown_name_is_an_attribute_error():
    try:
        ash_core.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_bundle_info_in_a_fresh_process_does_not_import_torch():
    code = ("import sys; from ash_core.cli import main; "
            f"rc = main(['bundle', 'info', {str(DEMO)!r}]); "
            "print('TORCH', 'torch' in sys.modules, rc)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    wall = time.perf_counter() - start
    print(f"bundle info as a fresh process: {wall:.2f} s")
    assert proc.returncode == 0, proc.stderr
    assert "name:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TORCH False 0", proc.stdout


def test_bundle_info_via_module_entry_point():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ash_core.cli", "bundle", "info", str(DEMO)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    print(f"ash-explore bundle info: {time.perf_counter() - start:.2f} s")
    assert proc.returncode == 0, proc.stderr
    assert "verified:    not checked" in proc.stdout
