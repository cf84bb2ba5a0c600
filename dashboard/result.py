"""What a replay hands a page: a setting's ``EvalResult``, labelled for what computed it.

The one result type of both paths (``dashboard.penultimate``: the exact engine or the score
cube; ``dashboard.layer_replay``: an inner layer), so that neither path imports the other
and a view reads ``label``, ``note`` and ``preparing`` without asking which path served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ash_core import EvalResult
from ash_core.layers import PENULTIMATE

if TYPE_CHECKING:  # a type only: the builds live above this module
    from dashboard.builds import Build

LABELS = {
    "exact": "exact, as `ash-explore evaluate`",
    "cube": "score cube (float32; equal to `ash-explore evaluate` up to rounding)",
}


@dataclass(frozen=True)
class Replay:
    """A setting's result (``result.engine``: what computed it) and, when the asked or
    automatic engine was not used, why."""

    result: EvalResult
    note: str = ""
    #: the cube's background build while exact numbers stand in for it
    preparing: Build | None = None

    @property
    def engine(self) -> str:
        return self.result.engine

    @property
    def label(self) -> str:
        return LABELS[self.engine]


@dataclass(frozen=True)
class LayerReplay(Replay):
    """A setting's result at an inner layer (``engine``: ``replay:<layer>``)."""

    layer: str = PENULTIMATE
    looked_up: bool = False

    @property
    def label(self) -> str:
        how = "a lookup in the layer's sweep (equal to the exact replay)" if self.looked_up \
            else "an exact replay (p off the grid 0..95 step 5 while the layer's cube is " \
                 "prepared, or a score other than energy)"
        return f"replayed from {self.layer} through the network's tail, {how}"
