"""openeo-deepfeatures: DeepFeatures for openEO users.

Sentinel-2 L2A in, Feature Data Cubes out: cloud-masked reflectance, spectral indices (Awesome
Spectral Indices), and ONNX encoders that reduce them to a few latent features per pixel and
date; as a native xarray/dask API, openEO processes, UDPs and UDFs.

The main job::

    import openeo_deepfeatures as odf

    features = odf.feature_cube(odf.load_demo_cube())  # lazy: mask -> indices -> encoder
    odf.write_feature_cube(features, "features.zarr")  # zarr + STAC Item + quicklook PNG

Its steps: :func:`preprocess_s2` (DN -> reflectance, SCL mask), :func:`compute_indices`,
:func:`embed` (encoder features of an index cube); :func:`load_encoder` opens a model once;
:func:`write_index_cube` writes an SI Data Cube (zarr + STAC Item).
"""

from . import errors
from .data import load_demo_cube
from .encoder import load_encoder
from .features import embed, feature_cube, write_feature_cube
from .index_cube import write_index_cube
from .indices import ASI_VERSION, compute_indices, get_index, list_indices, load_formulas
from .sentinel2 import preprocess_s2


def run_process_graph(graph, **kwargs):
    """Run an openEO process graph locally; see :func:`openeo_deepfeatures.local.run_process_graph`."""
    from .local import run_process_graph as run

    return run(graph, **kwargs)


__version__ = "0.1.0.dev0"

__all__ = [
    "ASI_VERSION",
    "__version__",
    "compute_indices",
    "embed",
    "errors",
    "feature_cube",
    "get_index",
    "list_indices",
    "load_demo_cube",
    "load_encoder",
    "load_formulas",
    "preprocess_s2",
    "run_process_graph",
    "write_feature_cube",
    "write_index_cube",
]
