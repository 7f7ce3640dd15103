"""The ``neuralpipe`` command line: one sub-command per module in ``neuralpipe.commands``.

Each command module defines ``add_parser(subparsers)`` and ``run(args) -> int`` and only parses arguments; the work
is done by the packages named for the use case (``ingest``, ``search``, ``eval``, ``admin``) and ``node``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from types import ModuleType

from neuralpipe.commands import demo, eval, ingest, models, pipelines, search, serve

COMMANDS: dict[str, ModuleType] = {
    "serve": serve,
    "models": models,
    "pipelines": pipelines,
    "ingest": ingest,
    "search": search,
    "demo": demo,
    "eval": eval,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuralpipe",
        description="OpenSearch neural search with local models: ML node, pipelines, ingest, embedded data node.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('neuralpipe')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(COMMANDS[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
