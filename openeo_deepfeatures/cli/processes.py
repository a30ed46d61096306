"""``deepfeatures processes`` (what a backend serves at ``GET /processes``) and ``deepfeatures
udps`` (process_graphs/ written from Python)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["add_processes_parser", "add_udps_parser"]


def add_processes_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures processes [--json]``."""
    parser = subparsers.add_parser(
        "processes",
        help="the deepfeatures processes as a backend lists them (GET /processes, /udf_runtimes)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"processes": <GET /processes body>, "udf_runtimes": <GET /udf_runtimes body>}',
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="URL of the folder serving process_graphs/*.json (default: the project's)",
    )
    parser.set_defaults(func=_cmd_processes)
    return parser


def _cmd_processes(args: argparse.Namespace) -> int:
    from ..plugin import processes_listing, udf_runtimes

    listing = processes_listing(base_url=args.base_url)
    runtimes = udf_runtimes()
    if args.json:
        json.dump({"processes": listing, "udf_runtimes": runtimes}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for spec in listing["processes"]:
        params = ", ".join(
            p["name"] + ("?" if p.get("optional") else "") for p in spec["parameters"]
        )
        print(f"{spec['id']}({params})")
        print(f"    {spec.get('summary', '')}")
        for link in _alternates(spec["links"]):
            print(f"    UDP: {link}")
    python = runtimes["Python"]["versions"]["3"]["libraries"]
    needs = ", ".join(f"{name}{lib['version']}" for name, lib in python.items())
    print(f"UDF runtime: Python 3 with {needs}")
    return 0


def _alternates(links: Iterable[Mapping[str, Any]]) -> list[str]:
    return [link["href"] for link in links if link.get("rel") == "alternate"]


def add_udps_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures udps [--check] [FOLDER]``."""
    udp = subparsers.add_parser(
        "udps", help="write the UDP JSON (process_graphs/) from the Python generator"
    )
    udp.add_argument("folder", nargs="?", default="process_graphs", help="(process_graphs)")
    udp.add_argument("--check", action="store_true", help="only report files that drifted")
    udp.set_defaults(func=_cmd_udps)
    return udp


def _cmd_udps(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..udps import write_udps

    paths = write_udps(args.folder, check=args.check)
    if args.check:
        for path in paths:
            print(f"drifted: {path} (regenerate with `deepfeatures udps`)")
        return 1 if paths else 0
    for path in paths:
        print(f"wrote {path} (openeo-deepfeatures {__version__})")
    return 0
