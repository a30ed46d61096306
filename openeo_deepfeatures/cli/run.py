"""``deepfeatures run``: an openEO process graph on the local executor, under an execution
policy built from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ProcessParameterInvalid
from .options import add_release_memory

__all__ = ["add_parsers", "run_policy"]


def _parse_param(item: str) -> tuple[str, object]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ProcessParameterInvalid(
            process="deepfeatures run",
            parameter="--param",
            reason=f"expected NAME=VALUE, got {item!r}.",
        )
    try:
        return name, json.loads(value)  # numbers, lists, objects, true/false/null
    except json.JSONDecodeError:
        return name, value  # plain strings


def run_policy(args: argparse.Namespace):
    """The execution policy of ``deepfeatures run``: ``--data`` folders readable (default: the
    working directory), ``-o`` the only writable folder (default: the working directory)."""
    from ..policy import ExecutionPolicy

    return ExecutionPolicy(
        read_roots=tuple(args.data or ()) or (Path.cwd(),),
        write_root=args.output or Path.cwd(),
        allow_udf=not args.no_udf,
        url_schemes=("https", "http") if args.allow_http else ("https",),
        allowed_hosts=tuple(args.allow_url_host or ()),
        allow_private_hosts=args.allow_private_urls,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from ..local import run_process_graph

    t0 = time.perf_counter()
    params = dict(_parse_param(p) for p in args.param or ())
    collections = dict(_parse_param(c) for c in args.collection or ())
    result = run_process_graph(
        args.graph,
        parameters=params,
        collections=collections,
        output=args.output,
        allow_udf=not args.no_udf,
        policy=run_policy(args),
    )
    if isinstance(result, dict):  # STAC metadata of what save_result wrote
        print(json.dumps(result, indent=1, default=str))
    elif hasattr(result, "dims") and args.output:
        from ..io import write_zarr

        target = Path(args.output) / "result.zarr"
        write_zarr(result, target, overwrite=args.overwrite, progress=not args.quiet)
        print(f"wrote {target}")
    else:
        print(result if not hasattr(result, "compute") else result.compute())
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def add_parsers(subparsers: Any) -> None:
    """``deepfeatures run GRAPH``."""
    sub = subparsers
    run = sub.add_parser("run", help="run an openEO process graph locally (dask)")
    run.add_argument("graph", help="process graph JSON file (as exported by the openEO client)")
    run.add_argument(
        "--param", nargs="+", metavar="NAME=VALUE", help="graph parameters (JSON values)"
    )
    run.add_argument("--collection", nargs="+", metavar="ID=PATH", help="extra load_collection ids")
    run.add_argument(
        "-o",
        "--output",
        help="folder for save_result (and for a cube result): the only one the graph may "
        "write into (default: the working directory)",
    )
    run.add_argument(
        "--data",
        nargs="+",
        action="extend",
        metavar="DIR",
        help="folders (or files) the graph may read: load_stac, UDP namespaces, models, UDF "
        "files (default: the working directory; the --collection files are readable anyway)",
    )
    run.add_argument(
        "--allow-url-host",
        nargs="+",
        action="extend",
        metavar="HOST[:PORT]",
        help="hosts the graph may fetch from even on loopback/private addresses, http too",
    )
    run.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let the graph fetch from loopback, private and link-local addresses",
    )
    run.add_argument("--allow-http", action="store_true", help="allow plain http:// URLs")
    run.add_argument("--no-udf", action="store_true", help="refuse run_udf (untrusted graphs)")
    run.add_argument("--overwrite", action="store_true")
    run.add_argument("-q", "--quiet", action="store_true")
    add_release_memory(run)
    run.set_defaults(func=_cmd_run)
