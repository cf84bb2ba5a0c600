"""A tail's stored weights into a freshly built model: every key the tail needs present, no
other key, every shape as built; checked before anything is loaded (never pickled code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ash_core.errors import ModelError


def load_tail_weights(model: nn.Module, need: Sequence[str], state: Mapping[str, np.ndarray],
                      arch: str, layer: str) -> None:
    """Load ``state`` into ``model`` when its keys are exactly ``need`` with the model's own
    shapes; ModelError naming what does not fit otherwise."""
    own = model.state_dict()
    missing = [k for k in need if k not in state]
    extra = [k for k in state if k not in need]
    bad = [k for k in need if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise ModelError(f"tail weights of {arch} {layer} do not fit: missing {missing[:4]}, "
                         f"unexpected {extra[:4]}, wrong shape {bad[:4]}. Re-extract the maps.")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                          strict=False)
