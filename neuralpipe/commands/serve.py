"""neuralpipe serve: run an ML node, a data node, or both in one process.

--roles ml answers ML Commons' REST API under /_plugins/_ml; --roles data the embedded data node;
--roles ml,data both on one port (the data node answers GET /, its predict calls go to this same server).
The data dir holds ml/ and data/, the layout the other commands' embedded node uses too. The port opens
only once the node is ready: models deployed before a restart are deployed again first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from neuralpipe.local import add_data_dir_argument
from neuralpipe.node import NodeStartError, parse_roles, serve_forever

__all__ = ["add_parser", "run", "parse_roles"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="run an ML node (ML Commons REST API) and/or an embedded data node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--roles", default="ml", help="comma-separated node roles: ml, data, or ml,data (default: ml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=9200, help="port to listen on (default: %(default)s)")
    add_data_dir_argument(parser)
    parser.add_argument("--config", type=Path, default=None,
                        help="ML node settings file (layout of the shipped mlnode.yaml)")
    parser.add_argument("--ml-url", default=None, help="ML node the data role calls when this process has no ml role")
    parser.add_argument("--registry", default=os.environ.get("NEURALPIPE_REGISTRY") or None, metavar="URL",
                        help="OpenSearch (or data node) URL of a model registry shared by several ML nodes; "
                             "default: $NEURALPIPE_REGISTRY (keeps a password in the URL out of the process list), "
                             "else this node's data dir")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    # Inference runs in worker_threads threads sized to the cores (mlnode.yaml); the tokenizers library would
    # add a thread pool of its own per batch on top of them.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss' loader tells at INFO, with a ModuleNotFoundError, that it has no AVX2 build before it loads the generic
    # one: not an error, and the first thing a user would read
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        roles = parse_roles(args.roles)
        if args.config is not None and not args.config.is_file():
            raise ValueError(f"--config file [{args.config}] does not exist")
        serve_forever(roles, data_dir=args.data_dir, config=args.config, host=args.host, port=args.port,
                      ml_url=args.ml_url, registry=args.registry,
                      say=lambda msg: print(f"neuralpipe serve: {msg}", file=sys.stderr))
    except (ValueError, NodeStartError) as exc:
        print(f"neuralpipe serve: {exc}", file=sys.stderr)
        return 2
    return 0
