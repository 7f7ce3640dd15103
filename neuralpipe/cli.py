"""The ``neuralpipe`` command line: one sub-command per module in ``neuralpipe.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under neuralpipe.commands; each module defines add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "serve": "serve",
    "models": "models",
    "pipelines": "pipelines",
    "ingest": "ingest",
    "search": "search",
    "demo": "demo",
    "eval": "eval",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="neuralpipe",
        description="OpenSearch neural search with local models: ML node, pipelines, ingest, embedded data node.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded = {}
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"neuralpipe.commands.{module_name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name == f"neuralpipe.commands.{module_name}":
                continue
            raise
        module.add_parser(sub)
        loaded[name] = module
    return parser, loaded


def main(argv: list[str] | None = None) -> int:
    parser, loaded = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(loaded[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
