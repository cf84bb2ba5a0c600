"""The baseline: no shaping (energy, MSP or max-logit of the unshaped logits)."""

from ash_core.methods._registry import register_method, unchanged

register_method("none", keeps_features=True,
                description="no shaping: the plain energy/MSP/max-logit baseline")(unchanged)
