"""The method registry and the built-in methods, one family per file.

``_registry`` holds the catalogue and imports no method, ``shaper`` the configured,
callable method (``Shaper``, ``create_method``); each family module registers its methods
when this package is imported, in the order the tools list them. Adding a method
is one new file here plus one import line below.
"""

from ash_core.methods._registry import (
    GRID_STRATEGIES,
    SEED_RANGE,
    THRESHOLD_MODES,
    MethodSpec,
    check_seed,
    check_threshold_mode,
    fit_percentile,
    get_method,
    list_methods,
    register_method,
    setting_label,
    unchanged,
)
from ash_core.methods.shaper import Shaper, create_method

# isort: off
# the families register in this order, which is the order every tool lists them in
from ash_core.methods import none  # noqa: F401
from ash_core.methods import ash  # noqa: F401
from ash_core.methods import react  # noqa: F401
from ash_core.methods import scale  # noqa: F401
from ash_core.methods import logits  # noqa: F401
from ash_core.methods import odin  # noqa: F401
from ash_core.methods import dice  # noqa: F401
from ash_core.methods import feature_scores  # noqa: F401
# isort: on
from ash_core.methods.ash import P_ASH

__all__ = ["GRID_STRATEGIES", "P_ASH", "SEED_RANGE", "THRESHOLD_MODES", "MethodSpec",
           "Shaper", "check_seed", "check_threshold_mode", "create_method",
           "fit_percentile", "get_method", "list_methods", "register_method", "setting_label",
           "unchanged"]
