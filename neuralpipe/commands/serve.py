"""neuralpipe serve: run an ML node, a data node, or both in one process.

--roles ml answers ML Commons' REST API under /_plugins/_ml; --roles data the embedded data node;
--roles ml,data both on one port (the data node answers GET /, its predict calls go to this same server).
The data dir holds ml/ and data/, the layout the other commands' embedded node uses too. The port opens
only once the node is ready: models deployed before a restart are deployed again first.

Security: --tls-cert/--tls-key serve HTTPS (TLS 1.2+); --users-file (basic auth and API keys, hashes only) or
--auth-opensearch URL (each caller's credentials checked by that cluster's security plugin, cached) require
authentication on every request; with it on, ML Commons' model-group access control applies once
plugins.ml_commons.model_access_control_enabled is true. Bodies must be JSON (Content-Type application/json or
application/x-ndjson), and a node bound to loopback answers only Host names of loopback unless --allowed-hosts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from neuralpipe.node import NodeStartError, add_data_dir_argument, parse_roles, serve_forever
from neuralpipe.security import SecurityOptions

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
    parser.add_argument("--query-cache-size", type=int, default=None, metavar="N",
                        help="data role: query embeddings kept in an LRU cache so a repeated neural query does not "
                             "call the model again; 0 turns it off (default: 1024)")
    parser.add_argument("--registry", default=os.environ.get("NEURALPIPE_REGISTRY") or None, metavar="URL",
                        help="OpenSearch (or data node) URL of a model registry shared by several ML nodes; "
                             "default: $NEURALPIPE_REGISTRY (keeps a password in the URL out of the process list), "
                             "else this node's data dir")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    sec = parser.add_argument_group("security (default: none beyond the Host and Content-Type checks)")
    sec.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate (chain): serve HTTPS only")
    sec.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    sec.add_argument("--users-file", type=Path, metavar="FILE",
                     help="YAML users (basic auth) and api_keys with hashes, backend_roles, roles")
    sec.add_argument("--auth-opensearch", metavar="URL",
                     help="authenticate each caller with this cluster's security plugin (_plugins/_security/authinfo)")
    sec.add_argument("--auth-ca-certs", metavar="FILE", help="CA bundle for --auth-opensearch's certificate")
    sec.add_argument("--auth-no-verify-certs", action="store_true",
                     help="do not verify --auth-opensearch's certificate (demo clusters only)")
    sec.add_argument("--auth-cache-ttl", type=float, default=60.0, metavar="SECONDS",
                     help="how long a cluster's answer for one set of credentials is reused (default: %(default)s)")
    sec.add_argument("--allowed-hosts", metavar="NAMES",
                     help="comma-separated Host names this node answers ('*': any); default: loopback names when "
                          "bound to loopback, any otherwise")
    return parser


def security_options(args: argparse.Namespace) -> SecurityOptions:
    hosts = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip()) if args.allowed_hosts else None
    return SecurityOptions(tls_cert=args.tls_cert, tls_key=args.tls_key, users_file=args.users_file,
                           auth_opensearch=args.auth_opensearch, auth_ca_certs=args.auth_ca_certs,
                           auth_verify_certs=not args.auth_no_verify_certs, auth_cache_ttl=args.auth_cache_ttl,
                           allowed_hosts=hosts)


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
        if args.query_cache_size is not None and args.query_cache_size < 0:
            raise ValueError(f"--query-cache-size must be 0 or more, got [{args.query_cache_size}]")
        if args.config is not None and not args.config.is_file():
            raise ValueError(f"--config file [{args.config}] does not exist")
        security = security_options(args)
        serve_forever(roles, data_dir=args.data_dir, config=args.config, host=args.host, port=args.port,
                      ml_url=args.ml_url, query_cache_size=args.query_cache_size, registry=args.registry,
                      say=lambda msg: print(f"neuralpipe serve: {msg}", file=sys.stderr), security=security)
    except (ValueError, NodeStartError) as exc:
        print(f"neuralpipe serve: {exc}", file=sys.stderr)
        return 2
    return 0
