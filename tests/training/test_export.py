"""Export: ONNX with the contract, STAC MLM item, onnxruntime vs torch parity, loading, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
import torch
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import MLMExtension

from openeo_deepfeatures.cli.training import add_export
from openeo_deepfeatures.encoder import load_encoder, sha256_file, time_inputs
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.stac import read_item
from openeo_deepfeatures.training import export, load_checkpoint
from openeo_deepfeatures.training.models import build_model
from openeo_deepfeatures.training.onnx_export import random_inputs

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def dense_export(dense_run, tmp_path_factory):
    return export(dense_run.checkpoint, tmp_path_factory.mktemp("export") / "dense.onnx")


@pytest.fixture(scope="module")
def patch_export(patch_run, tmp_path_factory):
    return export(patch_run.checkpoint, tmp_path_factory.mktemp("export") / "patch.onnx")


def torch_model(run):
    payload = load_checkpoint(run.checkpoint)
    model = build_model(payload["family"], payload["n_channels"], payload["hyper"])
    model.load_state_dict(payload["best_model"])
    return model.eval()


def run_torch(model, feeds) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[k]) for k in ("x", "valid", "day", "doy"))).numpy()


def test_dense_file_contract_and_stac(dense_export, dense_run):
    path = dense_export.path
    assert path.stat().st_size < 5 * 2**20  # the default dense architecture
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["channels"]) == list(dense_run.contract.channels)
    encoder = load_encoder(path, sha256=dense_export.sha256)
    assert encoder.contract == dense_export.contract
    assert encoder.contract.training["export"]["parity_max_abs_diff"] <= TOLERANCE
    assert encoder.contract.training["data_sha256"] == dense_run.contract.training["data_sha256"]
    inputs = {i.name: i.shape for i in encoder.session.get_inputs()}
    assert inputs["x"][2] == len(encoder.contract.channels)
    assert all(isinstance(d, str) for d in (inputs["x"][0], inputs["x"][1], *inputs["x"][3:]))
    item = read_item(dense_export.stac_item)
    assert dense_export.stac_item == path.with_name("dense.stac.json")
    mlm = MLMExtension.ext(item)
    assert mlm.mlm_name == "test-dense" and mlm.framework == "PyTorch"
    assert mlm.input[0].bands == list(encoder.contract.channels)
    asset = item.assets["model"]
    assert asset.href == "./dense.onnx"
    assert FileExtension.ext(asset).checksum == "1220" + sha256_file(path)
    assert FileExtension.ext(asset).size == path.stat().st_size
    assert mlm.total_parameters == sum(p.numel() for p in torch_model(dense_run).parameters())


@pytest.mark.parametrize(("t", "h", "w"), [(20, 23, 17), (3, 40, 9), (1, 1, 1)])
def test_dense_parity_random(dense_export, dense_run, t, h, w):
    """Shapes unlike the training tiles (12 x 16 x 16)."""
    encoder = load_encoder(dense_export.path)
    feeds = random_inputs(encoder.contract, t=t, h=h, w=w, seed=t)
    out = encoder.run(**feeds)
    assert out.shape == (1, t, 6, h, w)
    assert np.abs(out - run_torch(torch_model(dense_run), feeds)).max() <= TOLERANCE


def test_dense_parity_real(dense_export, dense_run, demo_si):
    """Real SI values of the demo cube (clouds as NaN), 40 dates x 50 x 50 px in one call."""
    encoder = load_encoder(dense_export.path)
    cube = demo_si.sel(bands=list(encoder.contract.channels)).isel(t=slice(30, 70))
    x, valid = encoder.contract.normalise(cube.values[None], axis=2)
    day, doy = time_inputs(cube["t"].values[None])
    assert 0.1 < valid.mean() < 0.95  # real gaps
    feeds = {"x": x, "valid": valid, "day": day, "doy": doy}
    out = encoder.run(**feeds)
    assert out.shape == (1, 40, 6, 50, 50) and np.isfinite(out).all()
    assert np.abs(out - run_torch(torch_model(dense_run), feeds)).max() <= TOLERANCE


def test_receptive_field_of_the_onnx_model(dense_export):
    """Measured on the exported graph: within the contract's halo and at least 15 px x 11 dates."""
    encoder = load_encoder(dense_export.path)
    contract = encoder.contract
    size, centre = 31, 15
    feeds = random_inputs(contract, t=size, h=size, w=size, seed=5)
    feeds["valid"][0, centre, 0, centre, centre] = 1.0
    base = encoder.run(**feeds)

    def extent(changed: dict) -> list[tuple[int, int]]:
        diff = np.abs(encoder.run(**{**feeds, **changed}) - base).max(axis=(0, 2))
        where = np.argwhere(diff > 0)
        return [(int(lo), int(hi)) for lo, hi in zip(where.min(0), where.max(0), strict=True)]

    x = feeds["x"].copy()
    x[0, centre, :, centre, centre] += 2.0
    (t0, t1), (y0, y1), (x0, x1) = extent({"x": x})
    assert y1 - y0 + 1 >= 15 and x1 - x0 + 1 >= 15 and t1 - t0 + 1 >= 11
    r, s = contract.temporal_radius, contract.spatial_radius
    assert centre - s <= y0 and y1 <= centre + s and centre - s <= x0 and x1 <= centre + s
    assert centre - r <= t0 and t1 <= centre + r
    day = feeds["day"].copy()
    day[0, centre:] += 3.0  # a longer gap before the centre date
    (t0, t1), _, _ = extent({"day": day})
    assert centre - r <= t0 and t1 <= centre + r


def test_patch_parity_random_and_real(patch_export, patch_run, demo_si):
    encoder = load_encoder(patch_export.path, sha256=patch_export.sha256)
    contract = encoder.contract
    assert contract.family == "patch" and contract.patch_size == (11, 15, 15)
    model = torch_model(patch_run)
    for n in (1, 5):  # trained with batches of 4
        feeds = random_inputs(contract, n=n, seed=n)
        out = encoder.run(**feeds)
        assert out.shape == (n, 6)
        assert np.abs(out - run_torch(model, feeds)).max() <= TOLERANCE
    cube = demo_si.sel(bands=list(contract.channels))
    windows = [(t, y, x) for t, y, x in [(0, 0, 0), (40, 10, 20), (100, 35, 35), (129, 17, 3)]]
    raw = np.stack([cube.values[t : t + 11, :, y : y + 15, x : x + 15] for t, y, x in windows])
    x, valid = contract.normalise(raw, axis=2)
    day, doy = time_inputs(np.stack([cube["t"].values[t : t + 11] for t, _, _ in windows]))
    feeds = {"x": x, "valid": valid, "day": day, "doy": doy}
    out = encoder.run(**feeds)
    assert np.isfinite(out).all() and (out > 0).all()
    assert np.abs(out - run_torch(model, feeds)).max() <= TOLERANCE
    item = read_item(patch_export.stac_item)
    assert MLMExtension.ext(item).input[0].input.shape == [-1, 11, len(contract.channels), 15, 15]


def test_tampered_or_truncated_models_are_refused(dense_export, tmp_path):
    data = dense_export.path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProcessParameterInvalid, match="sha256"):
        load_encoder(truncated, sha256=dense_export.sha256)
    with pytest.raises(ProcessParameterInvalid, match="not a readable ONNX model"):
        load_encoder(truncated)
    model = onnx.load(dense_export.path)
    for prop in model.metadata_props:
        if prop.key == "normalisation":
            norm = json.loads(prop.value)
            norm["scale"][0] = -1.0
            prop.value = json.dumps(norm)
    tampered = tmp_path / "tampered.onnx"
    onnx.save_model(model, tampered)
    with pytest.raises(ProcessParameterInvalid, match="scale must be finite and > 0"):
        load_encoder(tampered)


def test_export_refuses_bad_input_and_existing_files(dense_export, dense_run, tmp_path):
    before = dense_export.path.read_bytes()
    with pytest.raises(ProcessParameterInvalid, match="exists"):
        export(dense_run.checkpoint, dense_export.path)
    assert dense_export.path.read_bytes() == before
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ProcessParameterInvalid, match="not a readable checkpoint"):
        export(junk, tmp_path / "junk.onnx")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ProcessParameterInvalid, match="not an openeo-deepfeatures training"):
        export(other, tmp_path / "other.onnx")
    with pytest.raises(ProcessParameterInvalid, match="'weights'"):
        export(dense_run.checkpoint, tmp_path / "w.onnx", weights="first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt", "other.pt"]


def test_cli(patch_run, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="deepfeatures")
    add_export(parser.add_subparsers(dest="command"))
    target = tmp_path / "model.onnx"
    args = parser.parse_args(["export", str(patch_run.checkpoint), "-o", str(target)])
    assert args.func(args) == 0
    assert "onnxruntime vs torch max |diff|" in capsys.readouterr().err
    assert load_encoder(target).contract.family == "patch"
    assert (tmp_path / "model.stac.json").is_file()
