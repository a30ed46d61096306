"""torch is optional (the ``train`` extra): without it the package, the training modules and the
CLI import, inference runs, and training and export say which extra they need."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys

sys.modules["torch"] = None  # as if the train extra were not installed: `import torch` fails
sys.modules["onnx"] = None

import numpy as np

import openeo_deepfeatures as odf
import openeo_deepfeatures.training
import openeo_deepfeatures.training.onnx_export
from openeo_deepfeatures.cli import build_parser
from openeo_deepfeatures.encoder.inference import embed_reflectance
from openeo_deepfeatures.errors import FeatureUnsupported

build_parser()
cube = odf.preprocess_s2(odf.load_demo_cube()).isel(t=slice(0, 12), y=slice(0, 16), x=slice(0, 16))
features = embed_reflectance(cube, "default", tile={"t": None, "y": 16, "x": 16})
assert features.sizes["bands"] == 6 and np.isfinite(features.values).any()

config = {"data": {"cube": "c.zarr"}, "output": {"dir": "out"}}
for call in (
    lambda: openeo_deepfeatures.training.train(config),
    lambda: openeo_deepfeatures.training.export("checkpoint.pt", "model.onnx"),
):
    try:
        call()
    except FeatureUnsupported as exc:
        assert "openeo-deepfeatures[train]" in str(exc), exc
    else:
        raise AssertionError("no FeatureUnsupported without torch")
print("ok")
"""


def test_package_cli_and_inference_work_without_torch(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
