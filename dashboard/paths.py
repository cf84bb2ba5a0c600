"""Which bundle directories a link may open, and the bundles the sidebar lists.

A URL is written by anyone who can reach the server, so it may only name a bundle the
server was started with or a directory under one of its bundle roots (``--bundle-root
DIR``; by default the directories holding the given bundles and the repository's
``cached_features/``). Symlinks are resolved before the containment check, and a path
that is missing gets the same message as one that is not allowed, so the page never
tells what exists elsewhere on the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ash_core.errors import BundleError
from dashboard.config import DEMO_BUNDLE, REPO, AppArgs

MANIFEST = "manifest.json"


def _candidates(text: str) -> list[Path]:
    """A typed path as the server would read it: absolute, or relative to the working
    directory and then to the repository (no ``~`` expansion)."""
    p = Path(text)
    return [p] if p.is_absolute() else [Path.cwd() / p, REPO / p]


def _first_dir(text: str) -> Path | None:
    return next((c.resolve() for c in _candidates(text) if c.is_dir()), None)


@dataclass(frozen=True)
class BundlePolicy:
    """The bundles given at start-up and the roots under which others may be opened."""

    given: tuple[Path, ...]
    roots: tuple[Path, ...]

    @classmethod
    def from_args(cls, args: AppArgs) -> BundlePolicy:
        given = [_first_dir(b) for b in (args.bundles or (DEMO_BUNDLE,))]
        given = [g for g in given if g is not None]
        roots = [Path(r).resolve() for r in args.bundle_roots]
        if not args.bundle_roots:
            roots += [g.parent for g in given] + [(REPO / "cached_features").resolve()]
        return cls(tuple(dict.fromkeys(given)), tuple(dict.fromkeys(roots)))

    def allows(self, real: Path) -> bool:
        """Whether a resolved path is a given bundle or lies under a root."""
        return real in self.given or any(real.is_relative_to(r) for r in self.roots)

    def resolve(self, text: str) -> str:
        """The real path of the bundle directory ``text`` names, if a link may open it;
        else a BundleError that reads the same whether the path is missing or not allowed."""
        for c in _candidates(text):
            real = c.resolve()
            if self.allows(real) and real.is_dir():
                return str(real)
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise BundleError(
            f"bundle {shown!r} is not available: pick one of the listed bundles, or start "
            "the dashboard with that bundle (or a --bundle-root DIR above it)."
        )

    def discover(self, extra: tuple[str, ...] = ()) -> list[str]:
        """Bundles to list: those given first, then every bundle directory under a root."""
        found: list[str] = list(dict.fromkeys(extra))
        seen = {str(g) for g in self.given} | set(found)
        for root in self.roots:
            dirs = [root] if (root / MANIFEST).is_file() else \
                sorted(d for d in root.iterdir() if (d / MANIFEST).is_file()) \
                if root.is_dir() else []
            for d in dirs:
                label = display_path(d)
                if label not in seen and str(d) not in seen:
                    found.append(label)
                    seen.add(label)
        return found or [DEMO_BUNDLE]


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    cwd = Path.cwd()
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)
