"""The baselines: no shaping, scored by energy, MSP or max-logit.

``none`` takes the setting's score (``--method none --score msp``); ``energy``, ``msp`` and
``maxlogit`` are the same baseline under the names a reader of the OOD literature looks
for, each with its score fixed (``MethodSpec.fixed_score``). They are registered methods,
not aliases, so that every tool that enumerates the registry (the CLI's ``methods``, the
dashboard's method box and leaderboard, the tests, the benchmarks) lists them with no
special case; their numbers are ``none``'s with that score, through the same code path.
"""

from ash_core.maths.scores import SCORES
from ash_core.methods._registry import register_method, unchanged

register_method("none", keeps_features=True,
                description="no shaping: the plain energy/MSP/max-logit baseline (the score "
                            "from --score)")(unchanged)

#: the baselines under their own names, with the paper each comes from
BASELINES = {
    "energy": "Liu et al., NeurIPS 2020",
    "msp": "Hendrycks & Gimpel, ICLR 2017",
    "maxlogit": "Hendrycks et al., ICML 2022",
}
for _name, _reference in BASELINES.items():
    register_method(_name, keeps_features=True, fixed_score=_name, reference=_reference,
                    description=f"no shaping, {SCORES[_name][1]} (= --method none --score "
                                f"{_name})")(unchanged)
