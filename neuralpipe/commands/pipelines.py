"""neuralpipe pipelines validate FILE... and neuralpipe pipelines export FILE [--ml-url URL] (neuralpipe.admin.pipelines
does the work)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from neuralpipe.admin.pipelines import export, validate


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("pipelines", help="validate pipeline files, export their OpenSearch JSON bodies")
    sub = parser.add_subparsers(dest="pipelines_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="check pipeline files; report every error")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--ml-url", help="also resolve model names/ids on this ML node")
    export = sub.add_parser("export", help="print the OpenSearch JSON body of a pipeline file")
    export.add_argument("file", metavar="FILE")
    export.add_argument("--ml-url", help="replace model names by their ids on this ML node")
    export.add_argument("--mapping", action="store_true",
                        help="print the index body (settings + mappings) for an ingest pipeline instead "
                             "(needs --ml-url)")
    export.add_argument("--indent", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    if args.pipelines_command == "validate":
        return asyncio.run(validate(args.files, args.ml_url))
    return asyncio.run(export(args.file, ml_url=args.ml_url, mapping=args.mapping, indent=args.indent))
