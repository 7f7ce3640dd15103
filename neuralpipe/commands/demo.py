"""neuralpipe demo: the whole job end to end on this machine, offline, in one command.

Starts an ML node and a data node in this process, registers and deploys the offline models,
ingests a few hundred standard-library docstrings through the shipped dense+sparse pipeline and
prints ranked results for example neural, neural_sparse and hybrid queries. Run it again: it
reuses the models and the index it built.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from neuralpipe.admin.models import ModelSetupError
from neuralpipe.demo import DemoError, run_demo
from neuralpipe.local import add_data_dir_argument, quiet_client_logs
from neuralpipe.node import NodeStartError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="end-to-end demo: models, ingest, neural / sparse / hybrid queries",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir_argument(p)
    p.add_argument("--size", type=int, default=5, help="hits shown per query (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_client_logs()
    try:
        asyncio.run(run_demo(args.data_dir, say=lambda msg: print(msg, flush=True), progress=not args.no_progress,
                             size=args.size))
    except NodeStartError as exc:
        print(f"neuralpipe demo: {exc}", file=sys.stderr)
        return 2
    except (ModelSetupError, DemoError) as exc:
        print(f"neuralpipe demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neuralpipe demo: interrupted; run it again to continue where it stopped", file=sys.stderr)
        return 130
    return 0
