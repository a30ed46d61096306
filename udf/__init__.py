"""openEO UDF files of openeo-deepfeatures.

Each module here is a self-contained UDF (numpy/xarray/onnxruntime only) that runs on an
openEO backend without this package; the package imports the same files for its native path.
"""
