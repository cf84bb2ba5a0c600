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

from ash_core.lazy import lazy_names

#: public name -> the module that defines it; imported on first use (PEP 562), so
#: ``import ash_core`` (and the CLI's fast paths, e.g. ``bundle info``) never pull in
#: torch until a name that needs it is touched.
_LAZY = {
    "Bundle": "ash_core.bundle",
    "Split": "ash_core.bundle",
    "SplitArrays": "ash_core.bundle",
    "SplitData": "ash_core.bundle",
    "create_bundle": "ash_core.bundle",
    "load_bundle": "ash_core.bundle",
    "write_bundle": "ash_core.bundle",
    "EvalResult": "ash_core.engine.exact",
    "Evaluator": "ash_core.engine.exact",
    "evaluate": "ash_core.engine.exact",
    "AshError": "ash_core.errors",
    "BundleError": "ash_core.errors",
    "CubeCacheError": "ash_core.errors",
    "DataError": "ash_core.errors",
    "ExtractError": "ash_core.errors",
    "FeatureError": "ash_core.errors",
    "ModelError": "ash_core.errors",
    "ParameterError": "ash_core.errors",
    "CONVENTIONS": "ash_core.maths.metrics",
    "HIGHER_IS_BETTER": "ash_core.maths.metrics",
    "METRIC_NAMES": "ash_core.maths.metrics",
    "OODMetrics": "ash_core.maths.metrics",
    "average_metrics": "ash_core.maths.metrics",
    "higher_is_better": "ash_core.maths.metrics",
    "ood_metrics": "ash_core.maths.metrics",
    "accuracy": "ash_core.maths.scores",
    "energy_score": "ash_core.maths.scores",
    "get_score": "ash_core.maths.scores",
    "list_scores": "ash_core.maths.scores",
    "maxlogit_score": "ash_core.maths.scores",
    "msp_score": "ash_core.maths.scores",
    "ash_b": "ash_core.maths.shaping",
    "ash_p": "ash_core.maths.shaping",
    "ash_rand": "ash_core.maths.shaping",
    "ash_s": "ash_core.maths.shaping",
    "kept_count": "ash_core.maths.shaping",
    "react": "ash_core.maths.shaping",
    "scale": "ash_core.maths.shaping",
    "THRESHOLD_MODES": "ash_core.methods",
    "MethodSpec": "ash_core.methods",
    "Shaper": "ash_core.methods",
    "create_method": "ash_core.methods",
    "get_method": "ash_core.methods",
    "list_methods": "ash_core.methods",
    "register_method": "ash_core.methods",
    "ParamSpec": "ash_core.params",
    "Setting": "ash_core.setting",
}


__getattr__, __dir__ = lazy_names(globals(), _LAZY)


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
