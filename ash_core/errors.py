"""Exceptions raised by ash_core.

Every error says what was wrong and what to do about it; callers (CLI, dashboard)
show the message as is.
"""

from __future__ import annotations


class AshError(Exception):
    """Base class of every error ash_core raises on bad input."""


class BundleError(AshError):
    """A feature bundle is missing, malformed, tampered with or inconsistent."""


class ParameterError(AshError, ValueError):
    """A method, score or parameter value is invalid."""


class FeatureError(AshError, ValueError):
    """Features are unusable (NaN/Inf, wrong shape, empty)."""


class CubeCacheError(BundleError):
    """A cached score cube is stale or corrupt (it is then rebuilt)."""


class ExtractError(AshError):
    """Extraction cannot proceed (bad layer, head mismatch, stale work directory ...)."""


class DataError(AshError):
    """A data spec, folder or file is unusable."""


class ModelError(AshError):
    """A model name, factory or weights file is unusable."""
