"""openeo-deepfeatures: DeepFeatures for openEO users.

Spectral-index data cubes from Sentinel-2 L2A, and (in later releases) ONNX encoders that
reduce them to feature cubes, as a native xarray/dask API, openEO processes and UDFs.
"""

from . import errors
from .data import load_demo_cube
from .encoder import load_encoder
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
    "errors",
    "get_index",
    "list_indices",
    "load_demo_cube",
    "load_encoder",
    "load_formulas",
    "preprocess_s2",
    "run_process_graph",
]
