"""Run every benchmark in this folder, one after the other (``make bench``).

    python benchmarks/run_all.py [--quick]

Each benchmark prints its own ratios measured side by side in one run; this script
only runs them and stops at the first failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: every bench_*.py here, so a new benchmark is run without being listed
BENCHMARKS = tuple(sorted(p.name for p in HERE.glob("bench_*.py")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick mode of each benchmark")
    args = ap.parse_args(argv)
    for name in BENCHMARKS:
        cmd = [sys.executable, str(HERE / name), *(["--quick"] if args.quick else [])]
        print(f"\n===== {' '.join(cmd[1:])}", flush=True)
        rc = subprocess.call(cmd)
        if rc:
            print(f"{name} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
