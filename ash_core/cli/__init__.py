"""``ash-explore``: the command line. Each subcommand lives in its own module.

A subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import warnings

from ash_core import __version__
from ash_core.errors import AshError

#: Subcommand modules under ash_core.cli, in --help order.
SUBCOMMANDS = ("evaluate", "sweep", "search", "methods", "extract", "bundle", "dashboard")
#: Subcommands that need an optional extra: command -> (module it imports, extra name).
EXTRAS = {"dashboard": ("streamlit", "dashboard")}

DESCRIPTION = """\
ASH Explorer: see what activation shaping (ASH) does to out-of-distribution detection.

Typical use:
  ash-explore evaluate cached_features/cifar10_resnet20 --method ash-s --p 90
  ash-explore sweep cached_features/cifar10_resnet20 --methods ash-p,ash-b,ash-s --p 60:95:5
  ash-explore methods            # every shaping method and its parameters

Run `ash-explore COMMAND --help` for the options of each command.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only`` (a subcommand), just that subcommand's parser, so a
    fast command (``bundle info``) imports nothing of the others (torch among them)."""
    parser = argparse.ArgumentParser(
        prog="ash-explore", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ash-explore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS if only is None else (only,):
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def check_extra(command: str | None) -> None:
    """An AshError naming the pip extra when ``command`` needs one that is not installed."""
    if command not in EXTRAS:
        return
    module, extra = EXTRAS[command]
    if importlib.util.find_spec(module) is None:
        raise AshError(f"`ash-explore {command}` needs {module}, which is not installed; "
                       f"install the extra: pip install 'ash-explorer[{extra}]'.")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():  # restores filters and showwarning on exit
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            check_extra(args.command)
            return int(args.func(args) or 0)
        except AshError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `ash-explore ... | head`: the reader left, stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


if __name__ == "__main__":
    sys.exit(main())
