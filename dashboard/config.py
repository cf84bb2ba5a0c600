"""The app's start-up configuration: command-line arguments, environment, torch threads.

Nothing here runs at import time; ``app.py`` calls ``apply_torch_threads()`` and
``parse_app_args()`` when the script starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = "cached_features/cifar10_resnet20"
ENV_BUNDLES = "ASH_DASHBOARD_BUNDLES"
ENV_BUNDLE_ROOTS = "ASH_BUNDLE_ROOTS"
ENV_DATA_ROOT = "ASH_DATA_ROOT"
ENV_THREADS = "ASH_TORCH_THREADS"


@dataclass(frozen=True)
class AppArgs:
    """What the server was started with: bundles, bundle roots and the image data root."""

    bundles: tuple[str, ...]
    data_root: str | None
    bundle_roots: tuple[str, ...] = ()


def _env_list(env: dict, name: str) -> list[str]:
    return [b for b in (env.get(name) or "").split(os.pathsep) if b]


def parse_app_args(argv: Sequence[str] | None = None, env: dict | None = None) -> AppArgs:
    """Bundles, roots and data root from ``streamlit run app.py -- BUNDLE ... [--bundle-root
    DIR ...] [--data-root DIR]``.

    The environment variables ``ASH_DASHBOARD_BUNDLES``, ``ASH_BUNDLE_ROOTS`` (both
    os.pathsep-separated) and ``ASH_DATA_ROOT`` are used when no argument is given.
    ``argv`` is only read when the script itself is the program (so pytest's argv is
    never parsed).
    """
    env = os.environ if env is None else env
    if argv is None:
        argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("app.py") else []
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("bundles", nargs="*")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--bundle-root", action="append", default=[])
    args, _ = parser.parse_known_args(list(argv))
    bundles = list(args.bundles) or _env_list(env, ENV_BUNDLES)
    roots = list(args.bundle_root) or _env_list(env, ENV_BUNDLE_ROOTS)
    data_root = args.data_root or env.get(ENV_DATA_ROOT) or None
    if data_root is None and (REPO.parent / "shared" / "data").is_dir():
        data_root = str(REPO.parent / "shared" / "data")
    return AppArgs(tuple(bundles), data_root, tuple(roots))


def torch_threads_from_env(env: dict | None = None) -> int | None:
    """``ASH_TORCH_THREADS`` as a thread count (>= 1), None when unset; a value that is not
    an integer is ignored with a warning (it must not stop the dashboard from starting)."""
    text = ((os.environ if env is None else env).get(ENV_THREADS) or "").strip()
    if not text:
        return None
    try:
        return max(1, int(text))
    except ValueError:
        warnings.warn(f"ignoring {ENV_THREADS}={text!r}: not an integer", stacklevel=2)
        return None


def apply_torch_threads(env: dict | None = None) -> int | None:
    """Set torch's intra-op threads from ``ASH_TORCH_THREADS`` (called once at app start).

    The server runs one session per thread and the per-rerun tensors are small: intra-op
    threads only add contention (10x slower on a busy 2-core machine), so ``ash-explore
    dashboard`` sets ASH_TORCH_THREADS=1. Importing the dashboard's modules changes nothing.
    """
    threads = torch_threads_from_env(env)
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
