"""The ``deepfeatures`` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import OpenEOError, ProcessParameterInvalid

__all__ = ["main"]


def _key_values(items: Sequence[str] | None, option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ProcessParameterInvalid(
                process="deepfeatures",
                parameter=option,
                reason=f"expected NAME=NUMBER, got {item!r}.",
            ) from None
    return out


def _chunks(items: Sequence[str] | None) -> dict[str, int] | str:
    if not items:
        return "auto"
    return {k: int(v) for k, v in _key_values(items, "--chunks").items()}


def _cmd_list(args: argparse.Namespace) -> int:
    from .indices import get_index, list_indices

    names = list_indices(bands=args.bands, application_domain=args.domain)
    if args.json:
        rows = [
            {
                "name": n,
                "long_name": get_index(n).long_name,
                "formula": get_index(n).formula,
                "bands": list(get_index(n).bands),
                "domain": get_index(n).application_domain,
            }
            for n in names
        ]
        print(json.dumps(rows, indent=1))
    else:
        for n in names:
            spec = get_index(n)
            print(
                f"{n:<12} {spec.application_domain:<11} {','.join(spec.bands):<28} {spec.long_name}"
            )
        print(f"# {len(names)} indices", file=sys.stderr)
    return 0


def _cmd_compute(args: argparse.Namespace) -> int:
    from .indices import compute_indices, load_formulas
    from .io import open_cube, write_zarr
    from .sentinel2 import canonical_cube, preprocess_s2

    t0 = time.perf_counter()
    cube = open_cube(
        args.input, variable=args.variable, band_names=args.band_names, chunks=_chunks(args.chunks)
    )
    cube = canonical_cube(cube, "deepfeatures_spectral_indices")
    if args.preprocess:
        cube = preprocess_s2(cube, dilation=args.dilation)
    formulas = load_formulas(args.formulas) if args.formulas else None
    si = compute_indices(
        cube,
        args.indices,
        constants=_key_values(args.constant, "--constant") or None,
        formulas=formulas,
    )
    write_zarr(si, args.output, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        print(
            f"wrote {args.output}: {si.sizes['bands']} indices, shape {dict(si.sizes)}, "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .data import load_demo_cube
    from .indices import compute_indices
    from .io import write_zarr
    from .sentinel2 import preprocess_s2

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = []
    t = time.perf_counter()
    cube = load_demo_cube(chunks={"t": 20})
    stages.append(("load demo cube (DN)", dict(cube.sizes), time.perf_counter() - t))
    t = time.perf_counter()
    refl = preprocess_s2(cube)
    si = compute_indices(refl)
    target = out_dir / "spectral_indices.zarr"
    write_zarr(si, target, overwrite=args.overwrite, progress=not args.quiet)
    stages.append(("preprocess + indices -> zarr", dict(si.sizes), time.perf_counter() - t))
    print(f"DeepFeatures demo: Sentinel-2 L2A, {cube.sizes['t']} dates, 1 km2 forest in Romania")
    for name, sizes, seconds in stages:
        print(f"  {name:<30} {seconds:6.2f} s  {sizes}")
    print(f"  SI Data Cube: {si.sizes['bands']} spectral indices -> {target}")
    return 0


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


def _cmd_run(args: argparse.Namespace) -> int:
    from .local import run_process_graph

    t0 = time.perf_counter()
    params = dict(_parse_param(p) for p in args.param or ())
    collections = dict(_parse_param(c) for c in args.collection or ())
    result = run_process_graph(
        args.graph,
        parameters=params,
        collections=collections,
        output=args.output,
        allow_udf=not args.no_udf,
    )
    if isinstance(result, dict):  # STAC metadata of what save_result wrote
        print(json.dumps(result, indent=1, default=str))
    elif hasattr(result, "dims") and args.output:
        from .io import write_zarr

        target = Path(args.output) / "result.zarr"
        write_zarr(result, target, overwrite=args.overwrite, progress=not args.quiet)
        print(f"wrote {target}")
    else:
        print(result if not hasattr(result, "compute") else result.compute())
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfeatures",
        description="DeepFeatures for openEO: spectral-index and feature data cubes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on the embedded demo cube")
    demo.add_argument("-o", "--output", default="deepfeatures-demo", help="output folder")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("-q", "--quiet", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run an openEO process graph locally (dask)")
    run.add_argument("graph", help="process graph JSON file (as exported by the openEO client)")
    run.add_argument(
        "--param", nargs="+", metavar="NAME=VALUE", help="graph parameters (JSON values)"
    )
    run.add_argument("--collection", nargs="+", metavar="ID=PATH", help="extra load_collection ids")
    run.add_argument("-o", "--output", help="folder for save_result (and for a cube result)")
    run.add_argument("--no-udf", action="store_true", help="refuse run_udf (untrusted graphs)")
    run.add_argument("--overwrite", action="store_true")
    run.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=_cmd_run)

    indices = sub.add_parser("indices", help="spectral indices").add_subparsers(
        dest="indices_command", required=True
    )
    ls = indices.add_parser("list", help="list the spectral indices")
    ls.add_argument("--bands", nargs="+", help="only indices computable from these bands")
    ls.add_argument("--domain", nargs="+", help="application domains (vegetation, water, …)")
    ls.add_argument("--json", action="store_true", help="JSON with formulas and bands")
    ls.set_defaults(func=_cmd_list)

    comp = indices.add_parser(
        "compute", help="compute an SI cube: netCDF/zarr/GeoTIFF in, zarr out"
    )
    comp.add_argument("input", help="input cube (.nc, .zarr, .tif)")
    comp.add_argument("-o", "--output", required=True, help="output .zarr")
    comp.add_argument("--indices", nargs="+", help="index names (default: all computable)")
    comp.add_argument("--constant", nargs="+", metavar="NAME=VALUE", help="override constants")
    comp.add_argument("--formulas", help='JSON file of extra indices {"NAME": "formula"}')
    comp.add_argument("--preprocess", action="store_true", help="input is L2A DN with SCL")
    comp.add_argument("--dilation", type=int, default=0, help="cloud-mask dilation (px)")
    comp.add_argument("--variable", help="variable holding the cube (netCDF/zarr)")
    comp.add_argument("--band-names", nargs="+", help="band labels (GeoTIFF without descriptions)")
    comp.add_argument("--chunks", nargs="+", metavar="DIM=SIZE", help="dask chunks, e.g. t=10")
    comp.add_argument("--overwrite", action="store_true")
    comp.add_argument("-q", "--quiet", action="store_true")
    comp.set_defaults(func=_cmd_compute)

    from .encoder.export import add_cli as add_export
    from .encoder.train import add_cli as add_train
    from .encoder.training_cube import add_cli as add_training_cube

    add_training_cube(sub)
    add_train(sub)
    add_export(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OpenEOError as exc:
        print(f"deepfeatures: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `deepfeatures indices list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
