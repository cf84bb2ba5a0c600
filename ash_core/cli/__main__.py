"""``python -m ash_core.cli``: the same as the ``ash-explore`` console script."""

import sys

from ash_core.cli import main

sys.exit(main())
