"""``ash-explore dashboard``: open the Streamlit dashboard (headless-safe).

The Streamlit server runs as a child process; SIGTERM and SIGINT sent to this command
are forwarded to it, and the command waits for it to exit, so stopping the command
never leaves a server behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from ash_core.cli.common import add_device_arg
from ash_core.device import resolve_device
from ash_core.errors import AshError

DEFAULT_BUNDLE = "cached_features/cifar10_resnet20"
#: how long the child gets to exit after a forwarded signal before it is killed
STOP_TIMEOUT_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="explore ASH live in the browser (Streamlit dashboard)",
        description="Start the ASH Explorer dashboard on BUNDLE (default: the demo bundle "
                    f"{DEFAULT_BUNDLE}). Opens headless: browse to the printed address. Extra "
                    "bundles are listed in the sidebar and can be compared. A link may only "
                    "open the given bundles and bundles under a bundle root.",
    )
    p.add_argument("bundles", nargs="*", metavar="BUNDLE",
                   help=f"bundle directories (default: {DEFAULT_BUNDLE})")
    p.add_argument("--bundle-root", action="append", default=[], metavar="DIR",
                   help="directory whose bundles may be opened from the page or a link "
                        "(repeatable; default: the directories holding the given bundles and "
                        "the repository's cached_features/)")
    p.add_argument("--data-root", default=None,
                   help="directory holding the original images (e.g. ../shared/data), for the "
                        "inspector's pictures of sets without bundled thumbnails")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    add_device_arg(p)  # passed to the server as ASH_DEVICE
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
           # no Deploy button: the app is run locally, never deployed from its toolbar
           "--client.toolbarMode", "minimal",
           "--", *(args.bundles or [DEFAULT_BUNDLE])]
    for root in getattr(args, "bundle_root", None) or []:
        cmd += ["--bundle-root", root]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def supervise(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` as a child; forward SIGTERM/SIGINT to it, wait, return its exit code
    (128 + signal when a forwarded signal stopped it)."""
    child = subprocess.Popen(cmd, env=env)
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait(timeout=STOP_TIMEOUT_S if received else None)
                break
            except subprocess.TimeoutExpired:  # the child ignored the signal: stop it
                child.kill()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
    return 128 + received[0] if received else code


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise AshError(f"--port must be in 1..65535, got {args.port}.")
    device = resolve_device(args.device)  # --device cuda without CUDA: an error, no server
    repo = app_path().parents[1]
    for b in args.bundles:
        if not Path(b).exists() and not (repo / b).exists():
            print(f"warning: bundle {b} does not exist; the dashboard will say so.",
                  file=sys.stderr)
    cmd = command(args)
    print(f"ASH Explorer dashboard: http://{args.address}:{args.port}", flush=True)
    env = dict(os.environ)
    env.setdefault("ASH_TORCH_THREADS", "1")  # one intra-op thread per session (see app)
    env["ASH_DEVICE"] = str(device)
    return supervise(cmd, env)
