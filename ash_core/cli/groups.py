"""``--group SPLIT=GROUP``: a bundle's OOD groups on the command line (``bundle create``,
``extract``). Free of torch, as ``bundle`` must start fast."""

from __future__ import annotations

import argparse

from ash_core.errors import ParameterError


def add_group_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--group SPLIT=GROUP, repeatable: the bundle's OOD groups (OpenOOD's near/far)."""
    parser.add_argument("--group", action="append", default=[], metavar="SPLIT=GROUP",
                        help="put OOD split SPLIT in group GROUP (near or far, as OpenOOD "
                             "reports them; any name works), repeatable; reports add each "
                             "group's average")


def parse_groups(assignments: list[str]) -> dict[str, list[str]] | None:
    """``--group SPLIT=GROUP`` options as group -> split names, in the order given (None:
    no --group); a malformed option or a split given twice is a ParameterError."""
    if not assignments:
        return None
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for text in assignments:
        split, eq, group = (t.strip() for t in text.partition("="))
        if not eq or not split or not group:
            raise ParameterError(f"--group {text!r} is not SPLIT=GROUP; e.g. "
                                 "--group tinyimagenet=near --group dtd=far.")
        if split in seen:
            raise ParameterError(f"--group gives split {split!r} twice; a split is in at most "
                                 "one group.")
        seen.add(split)
        groups.setdefault(group, []).append(split)
    return groups
