"""``python -m ash_core.extract ARGS`` == ``ash-explore extract ARGS`` (handy for torchrun -m)."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
