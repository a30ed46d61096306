"""``deepfeatures demo``, ``feature-cube``, ``embed`` and ``indices list|compute``: cubes in,
zarr out."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import FileContentInvalid, ProcessParameterInvalid
from .options import add_release_memory

__all__ = ["add_feature_parsers", "add_indices_parsers"]


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
    from ..indices import get_index, list_indices

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


#: Where xarray reads stored arrays: an error raised below these frames is a reading error.
_READ_FRAMES = ("__getitem__", "_getitem")


@contextlib.contextmanager
def _reading(path: str | os.PathLike) -> Iterator[None]:
    """Errors of the file readers while the cube is computed -> ``FileContentInvalid``.

    Files are read lazily: a file whose header is fine but whose data are corrupt fails only
    when its chunks are read. An error raised while xarray's backends read a stored array
    (judged by the traceback: ``xarray.backends.*.__getitem__``) names the input file; any
    other error (writing the output included) passes unchanged.
    """
    try:
        yield
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        tb, reading = exc.__traceback__, False
        while tb is not None and not reading:
            frame = tb.tb_frame
            module = str(frame.f_globals.get("__name__", ""))
            reading = module.startswith("xarray.backends.") and frame.f_code.co_name in _READ_FRAMES
            tb = tb.tb_next
        if not reading:
            raise
        from ..io import reading_failure

        raise FileContentInvalid(file=str(path), reason=reading_failure(exc, Path(path))) from None


def _is_dn(cube) -> bool:
    """Whether a canonical cube holds digital numbers (so the CLI preprocesses it)."""
    import numpy as np

    from ..cube_input import VALUES_ATTR

    kind = cube.attrs.get(VALUES_ATTR)
    return kind == "DN" or (kind is None and np.issubdtype(cube.dtype, np.integer))


def _cmd_compute(args: argparse.Namespace) -> int:
    from ..index_cube import write_index_cube
    from ..indices import compute_indices, load_formulas
    from ..io import INDICES_CODEC, open_cube
    from ..sentinel2 import canonical_cube, preprocess_s2

    t0 = time.perf_counter()
    cube = open_cube(
        args.input, variable=args.variable, band_names=args.band_names, chunks=_chunks(args.chunks)
    )
    cube = canonical_cube(cube, "deepfeatures_spectral_indices")
    if args.preprocess or _is_dn(cube) or "SCL" in cube["bands"].values.tolist():
        if not args.preprocess and not args.quiet:
            print(
                "deepfeatures: the input holds Sentinel-2 digital numbers: converting to "
                "reflectance (and masking clouds with SCL when present) first.",
                file=sys.stderr,
            )
        cube = preprocess_s2(cube, dilation=args.dilation)
    formulas = load_formulas(args.formulas) if args.formulas else None
    si = compute_indices(
        cube,
        args.indices,
        constants=_key_values(args.constants, "--constants") or None,
        formulas=formulas,
    )
    with _reading(args.input):
        files = write_index_cube(
            si,
            args.output,
            overwrite=args.overwrite,
            source=str(args.input),
            progress=not args.quiet,
            codec=args.codec or INDICES_CODEC,
            level=args.level,
        )
    if not args.quiet:
        print(
            f"wrote {files.zarr} and {files.item}: {si.sizes['bands']} indices, shape {dict(si.sizes)}, "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0


def _scheduler(address: str | None):
    """A dask.distributed client: ``local`` starts a LocalCluster, else connects to an address."""
    from ..scheduler import connect_scheduler

    return connect_scheduler(address, process="feature-cube")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..data import load_demo_cube
    from ..encoder import load_encoder
    from ..features import feature_cube, write_feature_cube

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = []

    def stage(name: str, t0: float, detail: str) -> None:
        stages.append((name, time.perf_counter() - t0, detail))
        if not args.quiet:
            print(f"  {name:<34} {stages[-1][1]:6.2f} s  {detail}", file=sys.stderr)

    t = time.perf_counter()
    cube = load_demo_cube(chunks={"t": 20})
    stage("load demo cube (DN + SCL)", t, f"{dict(cube.sizes)}")
    t = time.perf_counter()
    model = load_encoder(args.model)
    c = model.contract
    stage("load encoder", t, f"{c.name} ({c.family}), {len(c.channels)} indices -> {c.k} features")
    t = time.perf_counter()
    features = feature_cube(cube, model=model)
    stage("build lazy graph (mask, indices, embed)", t, f"{dict(features.sizes)}")
    t = time.perf_counter()
    files = write_feature_cube(
        features,
        out_dir / "features.zarr",
        overwrite=args.overwrite,
        source="DEMO_S2 (embedded demo cube)",
        progress=not args.quiet,
    )
    stage("compute + write zarr, STAC, quicklook", t, str(files.zarr))
    print(
        f"DeepFeatures demo: Sentinel-2 L2A, {cube.sizes['t']} dates, 1 km2 forest in Romania -> "
        f"{c.k} features per pixel and date ({sum(s[1] for s in stages):.1f} s)"
    )
    for path in (files.zarr, files.item, files.quicklook):
        print(f"  {path}")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from ..features import embed, feature_cube, write_feature_cube
    from ..io import open_cube

    client = _scheduler(args.scheduler)
    try:
        t0 = time.perf_counter()
        cube = open_cube(args.input, variable=args.variable, chunks=_chunks(args.chunks))
        options = {
            "model": args.model,
            "providers": args.providers,
            "tile": args.tile,
            "threads": args.threads,
            "batch_size": args.batch_size,
        }
        if args.command == "embed":
            result = embed(cube, **options)
        else:
            result = feature_cube(cube, mask=_MASKS[args.mask], **options)
        with _reading(args.input):
            files = write_feature_cube(
                result,
                args.output,
                overwrite=args.overwrite,
                source=str(args.input),
                progress=not args.quiet,
            )
        if not args.quiet:
            print(
                f"{files.zarr} ({dict(result.sizes)}) in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
    finally:
        if client is not None:
            client.close()
    return 0


_MASKS = {"auto": "auto", "scl": True, "none": False}


def add_feature_parsers(subparsers: Any) -> None:
    """``deepfeatures demo``, ``feature-cube`` and ``embed``."""
    sub = subparsers
    demo = sub.add_parser("demo", help="run the main job on the embedded demo cube")
    demo.add_argument("-o", "--output", default="deepfeatures-demo", help="output folder")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("-q", "--quiet", action="store_true")
    add_release_memory(demo)
    demo.set_defaults(func=_cmd_demo)

    demo.add_argument("--model", help="ONNX encoder (default: the shipped model)")

    for name, text in (
        ("feature-cube", "Sentinel-2 L2A cube (DN or reflectance) -> feature cube (zarr + STAC)"),
        ("embed", "spectral-index cube -> feature cube (zarr + STAC)"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("input", help="input cube (.nc, .zarr, .tif)")
        cmd.add_argument("-o", "--output", required=True, help="output .zarr")
        cmd.add_argument(
            "--model",
            help=(
                "ONNX encoder: a path, or a shipped model 'default' (B02, B03, B04, B08, B8A, "
                "B11) or 's2-10m' (B02, B03, B04, B08); default: the first shipped model "
                "whose bands the input has"
            ),
        )
        if name == "feature-cube":
            cmd.add_argument(
                "--mask",
                choices=sorted(_MASKS),
                default="auto",
                help="cloud mask from SCL: auto (when the input has SCL), scl (required), none",
            )
        cmd.add_argument(
            "--providers", nargs="+", help="onnxruntime providers, e.g. CPUExecutionProvider"
        )
        cmd.add_argument("--tile", type=int, help="spatial tile size (px)")
        cmd.add_argument(
            "--threads", type=int, help="onnxruntime intra-op threads per session (default: all)"
        )
        cmd.add_argument(
            "--batch-size", type=int, help="patch models: windows per onnxruntime call"
        )
        cmd.add_argument("--variable", help="variable holding the cube (netCDF/zarr)")
        cmd.add_argument("--chunks", nargs="+", metavar="DIM=SIZE", help="dask chunks, e.g. t=20")
        cmd.add_argument("--scheduler", help="dask.distributed: 'local' or a scheduler address")
        cmd.add_argument("--overwrite", action="store_true")
        cmd.add_argument("-q", "--quiet", action="store_true")
        add_release_memory(cmd)
        cmd.set_defaults(func=_cmd_features)


def add_indices_parsers(subparsers: Any) -> None:
    """``deepfeatures indices list`` and ``indices compute``."""
    sub = subparsers
    indices = sub.add_parser("indices", help="spectral indices").add_subparsers(
        dest="indices_command", required=True
    )
    ls = indices.add_parser("list", help="list the spectral indices")
    ls.add_argument("--bands", nargs="+", help="only indices computable from these bands")
    ls.add_argument("--domain", nargs="+", help="application domains (vegetation, water, …)")
    ls.add_argument("--json", action="store_true", help="JSON with formulas and bands")
    ls.set_defaults(func=_cmd_list)

    comp = indices.add_parser(
        "compute", help="compute an SI cube: netCDF/zarr/GeoTIFF in, zarr + STAC item out"
    )
    comp.add_argument("input", help="input cube (.nc, .zarr, .tif)")
    comp.add_argument("-o", "--output", required=True, help="output .zarr")
    comp.add_argument("--indices", nargs="+", help="index names (default: all computable)")
    comp.add_argument(
        "--constants",
        "--constant",
        nargs="+",
        metavar="NAME=VALUE",
        help="override constants (the process parameter `constants`)",
    )
    comp.add_argument("--formulas", help='JSON file of extra indices {"NAME": "formula"}')
    comp.add_argument(
        "--preprocess",
        action="store_true",
        help="input is L2A DN: convert and mask first (automatic for integer DN or with SCL)",
    )
    comp.add_argument("--dilation", type=int, default=0, help="cloud-mask dilation (px)")
    comp.add_argument("--variable", help="variable holding the cube (netCDF/zarr)")
    comp.add_argument("--band-names", nargs="+", help="band labels (GeoTIFF without descriptions)")
    comp.add_argument("--chunks", nargs="+", metavar="DIM=SIZE", help="dask chunks, e.g. t=10")
    comp.add_argument(
        "--codec",
        choices=["zstd", "lz4", "none"],
        help="zarr compression of the index cube (default lz4: blosc lz4 + shuffle, fastest to "
        "stream; zstd: zarr's default)",
    )
    comp.add_argument(
        "--level", type=int, help="compression level (zstd 1-22, default 3; lz4 1-9, default 5)"
    )
    comp.add_argument("--overwrite", action="store_true")
    comp.add_argument("-q", "--quiet", action="store_true")
    add_release_memory(comp)
    comp.set_defaults(func=_cmd_compute)
