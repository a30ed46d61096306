"""``deepfeatures serve``: the local openEO backend from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parsers"]


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures serve``."""
    p = subparsers.add_parser(
        "serve",
        help="a local openEO API 1.2 backend (Web Editor, openeo.connect); needs the `server` extra",
        description=(
            "Serve the local executor over HTTP as an openEO API 1.2 backend: collections "
            "(DEMO_S2 and the cubes in --data), processes, synchronous results, batch jobs on "
            "dask, stored process graphs. One user: authenticate with HTTP Basic (any user "
            "name, the token as password)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    p.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders whose cubes (.nc, .zarr, .tif) are collections (id: file name stem)",
    )
    p.add_argument(
        "--jobs", default="deepfeatures-jobs", help="folder of batch jobs and process graphs"
    )
    p.add_argument(
        "--scheduler",
        help="dask for batch jobs: 'local' (a LocalCluster) or a dask.distributed address "
        "(default: dask's threads in the server process)",
    )
    p.add_argument("--allow-udf", action="store_true", help="let graphs run Python UDFs")
    p.add_argument("--token", help="the user's token (default: generated and printed)")
    p.set_defaults(func=_cmd_serve)
    return p


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print(
            "deepfeatures serve needs the server extra: pip install 'openeo-deepfeatures[server]'",
            file=sys.stderr,
        )
        return 2
    from ..server import ServerConfig, create_app

    kwargs: dict[str, Any] = {"token": args.token} if args.token else {}
    config = ServerConfig(
        data=tuple(Path(d) for d in args.data),
        jobs=Path(args.jobs),
        scheduler=args.scheduler,
        allow_udf=args.allow_udf,
        **kwargs,
    )
    app = create_app(config)
    url = f"http://{args.host}:{args.port}"
    print(f"openEO backend at {url}  (token: {config.token})", flush=True)
    print(
        f'  python: openeo.connect("{url}").authenticate_basic("me", "{config.token}")',
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
