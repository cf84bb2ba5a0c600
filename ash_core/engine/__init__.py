"""The score-cube engine: every grid p of every ASH variant at once (see ``cube``)."""

from ..metrics import IdScores
from .cube import (
    CUBE_METHODS,
    ScoreCube,
    SplitCube,
    build_cubes,
    get_cube,
    get_cubes,
    is_cube_method,
    point_metrics,
)
from .kernel import kernel_status

__all__ = [
    "CUBE_METHODS", "IdScores", "ScoreCube", "SplitCube", "build_cubes",
    "get_cube", "get_cubes", "is_cube_method", "kernel_status", "point_metrics",
]
