"""The ``neuralpipe`` command line: one sub-command per module in ``neuralpipe.commands``.

Each command module defines ``add_parser(subparsers)`` and ``run(args) -> int`` and only parses arguments; the work
is done by the packages named for the use case (``ingest``, ``search``, ``eval``, ``admin``) and ``node``.

Only the command being run is imported: the modules behind all seven pull in opensearch-py, onnxruntime, the ML
node and the ingest machinery, about a second of start-up that ``serve --roles data`` (a data node's restart)
never uses. ``--help`` and an unknown command build the whole parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import version
from types import ModuleType

COMMANDS = ("serve", "models", "pipelines", "ingest", "search", "demo", "eval")  # help lists them in this order


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"neuralpipe.commands.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` the parser of that one command (what ``main`` needs to run it)."""
    parser = argparse.ArgumentParser(
        prog="neuralpipe",
        description="OpenSearch neural search with local models: ML node, pipelines, ingest, embedded data node.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('neuralpipe')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMANDS:
        command_module(name).add_parser(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, when it names a known one first (the top level has no options with values)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(command_module(args.command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
