"""ash_core: activation shaping (ASH) for OOD detection, replayed on cached features.

Public API::

    from ash_core import ash_p, ash_b, ash_s, ash_rand          # shaping primitives
    from ash_core import energy_score, ood_metrics              # scores and metrics
    from ash_core import list_methods, create_method            # the method registry
    from ash_core import load_bundle, write_bundle, evaluate    # bundles and evaluation
    from ash_core import Setting                                # one setting, labelled

Packages by layer, imports pointing down: ``maths`` (shaping, scores, metrics, curves),
``bundle``, ``methods`` (the registry), ``features`` (scores on features), ``engine``
(``FeatureStore``, fits, ``Evaluator``, ``EvalResult``), ``cube``, ``layers``, ``policy``,
``sweep`` (the function is not re-exported here so that it never hides its module),
``search``, ``reports``, ``cli``; ``diskcache`` (the cache beside a bundle), ``samples``
(per-sample inspection).
"""

from ash_core.bundle import (
    Bundle,
    Split,
    SplitArrays,
    SplitData,
    create_bundle,
    load_bundle,
    write_bundle,
)
from ash_core.engine.exact import EvalResult, Evaluator, evaluate
from ash_core.errors import (
    AshError,
    BundleError,
    CubeCacheError,
    DataError,
    ExtractError,
    FeatureError,
    ModelError,
    ParameterError,
)
from ash_core.maths.metrics import (
    CONVENTIONS,
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    OODMetrics,
    average_metrics,
    higher_is_better,
    ood_metrics,
)
from ash_core.maths.scores import (
    accuracy,
    energy_score,
    get_score,
    list_scores,
    maxlogit_score,
    msp_score,
)
from ash_core.maths.shaping import ash_b, ash_p, ash_rand, ash_s, kept_count, react, scale
from ash_core.methods import (
    THRESHOLD_MODES,
    MethodSpec,
    Shaper,
    create_method,
    get_method,
    list_methods,
    register_method,
)
from ash_core.params import ParamSpec
from ash_core.setting import Setting

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS", "HIGHER_IS_BETTER", "METRIC_NAMES", "THRESHOLD_MODES",
    "AshError", "Bundle", "BundleError", "CubeCacheError", "DataError", "EvalResult",
    "Evaluator", "ExtractError", "FeatureError", "MethodSpec", "ModelError", "OODMetrics",
    "ParamSpec", "ParameterError", "Setting", "Shaper", "Split", "SplitArrays", "SplitData",
    "accuracy", "ash_b", "ash_p", "ash_rand", "ash_s", "average_metrics", "create_bundle", "create_method",
    "energy_score", "evaluate", "get_method", "get_score", "higher_is_better", "kept_count",
    "list_methods", "list_scores", "load_bundle", "maxlogit_score", "msp_score",
    "ood_metrics", "react", "register_method", "scale", "write_bundle",
]
