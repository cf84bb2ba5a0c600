"""The score cube: every grid p of every ASH variant at once.

Modules, one job each: ``model`` (ScoreCube / SplitCube, lookups), ``thresholds`` (grid,
global thresholds), ``build`` (building, backend choice), ``torch_backend`` and
``native`` + ``kernel`` (the two backends), ``store`` (the cache file format), ``cache``
(keys, paths, get_cube / get_cubes), ``lookup`` (one grid point as an EvalResult), ``strategies`` (the ReAct and
SCALE grids), ``private_dir``.

Words: the *engine* is how a setting's numbers are computed ("exact" Evaluator or
"cube"); the *backend* is how a cube is built ("native" C kernel or "torch").
"""

from ash_core.cube.build import BACKENDS, build_cubes, choose_backend
from ash_core.cube.cache import cube_key, cube_path, get_cube, get_cubes
from ash_core.cube.kernel import kernel_status
from ash_core.cube.lookup import point_metrics, point_result
from ash_core.cube.model import (
    CUBE_METHODS,
    CUBE_STRATEGIES,
    ScoreCube,
    SplitCube,
    grid_strategy,
    is_cube_method,
)
from ash_core.cube.store import load_cube, save_cube
from ash_core.maths.metrics import IdScores

__all__ = [
    "BACKENDS", "CUBE_METHODS", "CUBE_STRATEGIES", "IdScores",
    "ScoreCube", "SplitCube", "build_cubes", "choose_backend", "cube_key",
    "cube_path", "get_cube", "get_cubes",
    "grid_strategy", "is_cube_method", "kernel_status", "load_cube", "point_metrics", "point_result",
    "save_cube",
]
