"""The score cube: every grid p of every ASH variant at once, and the engine policy.

Modules, one job each: ``model`` (ScoreCube / SplitCube, lookups), ``thresholds`` (grid,
global thresholds), ``build`` (building, backend choice), ``torch_backend`` and
``native`` + ``kernel`` (the two backends), ``store`` (the cache file format), ``cache``
(keys, paths, get_cube / get_cubes), ``lookup`` (one grid point as an EvalResult),
``policy`` (exact or cube for a setting, and serving it), ``strategies`` (the ReAct and
SCALE grids), ``private_dir``.

Words: the *engine* is how a setting's numbers are computed ("exact" Evaluator or
"cube"); the *backend* is how a cube is built ("native" C kernel or "torch").
"""

from ..metrics import IdScores
from .build import BACKENDS, build_cubes, choose_backend
from .cache import cube_key, cube_path, default_cache_dir, get_cube, get_cubes
from .kernel import kernel_status
from .lookup import point_metrics, point_result
from .model import (
    CUBE_METHODS,
    CUBE_STRATEGIES,
    ScoreCube,
    SplitCube,
    grid_strategy,
    is_cube_method,
)
from .policy import DEFAULT_GRID, ENGINES, EngineChoice, choose_engine, evaluate_setting
from .store import load_cube, save_cube

__all__ = [
    "BACKENDS", "CUBE_METHODS", "CUBE_STRATEGIES", "DEFAULT_GRID", "ENGINES", "EngineChoice", "IdScores",
    "ScoreCube", "SplitCube", "build_cubes", "choose_backend", "choose_engine", "cube_key",
    "cube_path", "default_cache_dir", "evaluate_setting", "get_cube", "get_cubes",
    "grid_strategy", "is_cube_method", "kernel_status", "load_cube", "point_metrics", "point_result",
    "save_cube",
]
