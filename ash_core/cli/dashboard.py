"""``ash-explore dashboard``: open the Streamlit dashboard (headless-safe)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ..errors import AshError

DEFAULT_BUNDLE = "cached_features/cifar10_resnet20"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="explore ASH live in the browser (Streamlit dashboard)",
        description="Start the ASH Explorer dashboard on BUNDLE (default: the demo bundle "
                    f"{DEFAULT_BUNDLE}). Opens headless: browse to the printed address. Extra "
                    "bundles are listed in the sidebar and can be compared.",
    )
    p.add_argument("bundles", nargs="*", metavar="BUNDLE",
                   help=f"bundle directories (default: {DEFAULT_BUNDLE})")
    p.add_argument("--data-root", default=None,
                   help="directory holding the original images (e.g. ../shared/data), for the "
                        "inspector's pictures of sets without bundled thumbnails")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 to share on a network)")
    p.set_defaults(func=run)


def app_path() -> Path:
    """dashboard/app.py, found through the import system (ash_core never imports it)."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise AshError("the dashboard package is not installed; run `pip install -e .`.")
    path = Path(next(iter(spec.submodule_search_locations))) / "app.py"
    if not path.is_file():
        raise AshError(f"dashboard entry script not found at {path}.")
    return path


def command(args: argparse.Namespace) -> list[str]:
    """The streamlit command line this subcommand runs."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path()),
           "--server.headless", "true", "--server.port", str(args.port),
           "--server.address", args.address, "--browser.gatherUsageStats", "false",
           "--", *(args.bundles or [DEFAULT_BUNDLE])]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise AshError(f"--port must be in 1..65535, got {args.port}.")
    repo = app_path().parents[1]
    for b in args.bundles:
        if not Path(b).exists() and not (repo / b).exists():
            print(f"warning: bundle {b} does not exist; the dashboard will say so.",
                  file=sys.stderr)
    cmd = command(args)
    print(f"ASH Explorer dashboard: http://{args.address}:{args.port}", flush=True)
    env = dict(os.environ)
    env.setdefault("ASH_TORCH_THREADS", "1")  # one intra-op thread per session (see app)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
