"""Methods on the logits alone (no shaping): temperature scaling (Guo et al., ICML 2017)
and GEN (Liu et al., CVPR 2023; search grids: OpenOOD's ``gen.yml``)."""

from __future__ import annotations

from ash_core.maths import scores
from ash_core.methods._registry import register_method, unchanged
from ash_core.params import ParamSpec

LOGIT_OPTIONS = dict(keeps_features=True, family="logits")


register_method(
    "temp-scaling",
    params=(ParamSpec("T", 1.0, 0.0, 10000.0, "softmax temperature", low_open=True),),
    scorer=lambda logits, T: scores.temperature_msp_score(logits, T), **LOGIT_OPTIONS,
    description="temperature scaling: MSP of softmax(logits / T) (OpenOOD fits T on ID "
                "validation data; here T is set)",
    reference="Guo et al., ICML 2017",
)(unchanged)

register_method(
    "gen",
    params=(ParamSpec("gamma", 0.1, 0.0, 100.0, "generalized-entropy exponent", low_open=True,
                      recommended={"imagenet": 0.1},
                      search_grid=(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)),
            ParamSpec("M", 100, 1, 100001, "number of top softmax probabilities used",
                      kind="int", recommended={"imagenet": 100},
                      search_grid=(10, 50, 100, 200, 500, 1000))),
    scorer=lambda logits, gamma, M: scores.gen_score(logits, gamma, int(M)), **LOGIT_OPTIONS,
    description="GEN: -sum over the top-M softmax probabilities of p^gamma (1-p)^gamma",
    reference="Liu et al., CVPR 2023",
)(unchanged)
