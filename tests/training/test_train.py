"""Training: config checks, normalisation from the train split, metrics, seeds, resume, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openeo_deepfeatures.cli.training import add_train
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.training import (
    load_checkpoint,
    load_config,
    make_training_cube,
    models,
    open_training_cube,
    train,
    training_cube_provenance,
)
from openeo_deepfeatures.training.checkpoint import CHECKPOINT, METRICS
from openeo_deepfeatures.training.config import config_schema, config_sha256, model_defaults

from .fixtures import SI_CHANNELS, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dense_run_outputs(dense_run, tile_cube):
    assert dense_run.epochs == 1
    folder = dense_run.checkpoint.parent
    assert sorted(p.name for p in folder.iterdir()) == [CHECKPOINT, METRICS]  # no leftovers
    rows = [json.loads(line) for line in dense_run.metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    for row in rows:
        assert {"train_loss", "validation_loss", "validation_mae", "best", "seconds"} <= set(row)
        assert set(row["validation_mae_per_channel"]) == set(SI_CHANNELS)
        assert np.isfinite(row["train_loss"]) and np.isfinite(row["validation_loss"])
    contract = dense_run.contract
    assert contract.family == "dense" and contract.name == "test-dense"
    assert contract.channels == tuple(SI_CHANNELS)
    assert contract.features == ("F01", "F02", "F03", "F04", "F05", "F06")
    assert 2 * contract.spatial_radius + 1 >= 15 and contract.temporal_window >= 11
    training = contract.training
    ds = open_training_cube(tile_cube)
    assert training["data_sha256"] == training_cube_provenance(ds)["content_sha256"]
    assert len(training["config_sha256"]) == 64 and training["seed"] == 0
    assert training["samples"]["train"] == int((ds["split"].values == "train").sum())


def test_normalisation_is_the_robust_range_of_the_train_split(dense_run, tile_cube):
    ds = open_training_cube(tile_cube)
    train_x = ds["x"].values[np.array([str(s) for s in ds["split"].values]) == "train"]
    norm = dense_run.contract.normalisation
    for i, _ in enumerate(SI_CHANNELS):
        values = train_x[:, :, i].astype(np.float64)
        low, high = np.nanquantile(values, [0.02, 0.98])
        assert norm.offset[i] == pytest.approx((low + high) / 2, rel=1e-12, abs=1e-12)
        assert norm.scale[i] == pytest.approx((high - low) / 2, rel=1e-12)
    assert norm.quantiles == (0.02, 0.98) and norm.clip == 4.0


def test_same_seed_same_weights_and_resume(tile_cube, tmp_path):
    """Two runs of one config agree bit for bit; a run resumed from epoch 2 ends the same."""
    runs = {}
    for name in ("a", "b"):
        runs[name] = train(tiny_config(tile_cube, tmp_path / name, epochs=3))
    resumed = tmp_path / "resumed"
    train(tiny_config(tile_cube, resumed, epochs=2))
    first = load_checkpoint(resumed / CHECKPOINT)
    assert first["state"]["epoch"] == 2
    runs["resumed"] = train(tiny_config(tile_cube, resumed, epochs=3))
    a, b, c = (load_checkpoint(r.checkpoint) for r in runs.values())
    assert same_weights(a["model"], b["model"]) and same_weights(a["best_model"], b["best_model"])
    assert same_weights(a["model"], c["model"]) and same_weights(a["best_model"], c["best_model"])
    assert a["optimizer"]["state"][0]["step"] == c["optimizer"]["state"][0]["step"]
    assert (
        a["state"]["history"][-1]["validation_loss"] == c["state"]["history"][-1]["validation_loss"]
    )
    assert len(runs["resumed"].metrics.read_text().splitlines()) == 3
    other = train(tiny_config(tile_cube, tmp_path / "seed1", epochs=3, seed=1))
    assert not same_weights(a["model"], load_checkpoint(other.checkpoint)["model"])
    # a finished run is not trained again
    again = train(tiny_config(tile_cube, resumed, epochs=3))
    assert same_weights(load_checkpoint(again.checkpoint)["model"], c["model"])


def test_resume_refuses_another_config(tile_cube, tmp_path):
    train(tiny_config(tile_cube, tmp_path, epochs=1))
    with pytest.raises(ProcessParameterInvalid, match=r"output.dir.*another config"):
        train(tiny_config(tile_cube, tmp_path, epochs=2, learning_rate=0.01))
    restarted = train(tiny_config(tile_cube, tmp_path, epochs=1, learning_rate=0.01), resume=False)
    assert restarted.epochs == 1


def test_early_stopping(tile_cube, tmp_path):
    """With an unreachable min_delta only epoch 1 improves: patience 2 stops after epoch 3."""
    result = train(tiny_config(tile_cube, tmp_path, epochs=10, patience=2, min_delta=1e9))
    assert result.stopped_early and result.epochs == 3 and result.best_epoch == 1
    rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    assert [r["best"] for r in rows] == [True, False, False]
    saved = load_checkpoint(result.checkpoint)
    assert not same_weights(saved["best_model"], saved["model"])


def test_patch_family_trains_on_patches_and_on_tiles(patch_run, tile_cube, tmp_path):
    assert patch_run.contract.family == "patch"
    assert patch_run.contract.patch_size == (11, 15, 15)
    assert (patch_run.contract.spatial_radius, patch_run.contract.temporal_window) == (7, 11)
    # larger tiles are cropped at random to the patch size
    config = tiny_config(tile_cube, tmp_path, "patch", spectral_angle_weight=0.5)
    result = train(config)
    assert np.isfinite(result.best_validation_loss)
    assert "spectral angle" in result.contract.training["loss"]


def test_channel_subset(tile_cube, tmp_path):
    config = tiny_config(tile_cube, tmp_path, epochs=1)
    config["data"]["channels"] = ["EVI", "NDVI"]
    result = train(config)
    assert result.contract.channels == ("EVI", "NDVI")


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"train": {"lr": 0.1}}, "train.lr", "unknown key; known keys: .*'learning_rate'"),
        ({"trian": {}}, "trian", "unknown table"),
        ({"train": 5}, "train", "not of type 'object'"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "less than the minimum of 1"),
        ({"train": {"epochs": True}}, "train.epochs", "not of type 'integer'"),
        ({"train": {"epochs": 2.0}}, "train.epochs", "not of type 'integer'"),
        ({"train": {"learning_rate": -1}}, "train.learning_rate", "less than or equal to"),
        ({"train": {"learning_rate": float("nan")}}, "train.learning_rate", "not of type"),
        ({"train": {"input_dropout": 1.5}}, "train.input_dropout", "maximum of 0.9"),
        ({"train": {"device": "tpu"}}, "train.device", "one of"),
        ({"normalisation": {"quantiles": [0.9, 0.1]}}, "normalisation.quantiles", "increasing"),
        ({"normalisation": {"quantiles": [0.1, 1.5]}}, "normalisation.quantiles", "maximum of 1"),
        ({"model": {"family": "lstm"}}, "model.family", "one of"),
        ({"model": {"heads": 4}}, "model.heads", "unknown key for a dense model"),
        ({"model": {"family": "patch", "fill_window": 3}}, "model.fill_window", "patch model"),
        ({"model": {"fill_window": 4}}, "model.fill_window", "not an odd integer"),
        ({"model": {"latent": 0}}, "model.latent", "less than the minimum of 1"),
        ({"model": {"temporal_dilations": [1]}}, "model.temporal_dilations", "as many entries"),
        ({"model": {"family": "patch", "width": 10, "heads": 4}}, "model.heads", "divide"),
        ({"model": {"family": "patch", "patch_size": [11, 15]}}, "model.patch_size", "too short"),
        ({"model": {"family": "patch", "patch_size": [11, 14, 14]}}, "model.patch_size", "odd"),
        ({"model": {"family": "patch", "patch_size": [11, 15, 13]}}, "model.patch_size", "square"),
        ({"output": {"name": "9 lives"}}, "output.name", "start with a letter"),
        ({"data": {"channels": ["NDVI", "NDVI"]}}, "data.channels", "non-unique"),
        ({"data": {"channels": []}}, "data.channels", "non-empty"),
    ],
)
def test_bad_configs_name_the_key(change, key, message, tmp_path):
    config = {"data": {"cube": "c.zarr"}, "output": {"dir": "out"}}
    for section, values in change.items():
        config[section] = (
            {**config.get(section, {}), **values} if isinstance(values, dict) else values
        )
    with pytest.raises(
        ProcessParameterInvalid, match=f"parameter '{key}' in process 'train'.*{message}"
    ):
        load_config(config)


def test_missing_required_keys():
    with pytest.raises(ProcessParameterInvalid, match=r"'data.cube'.*is required"):
        load_config({"output": {"dir": "x"}})
    with pytest.raises(ProcessParameterInvalid, match=r"'output.dir'.*is required"):
        load_config({"data": {"cube": "x"}})
    with pytest.raises(ProcessParameterInvalid, match=r"'output.dir'.*is required"):
        load_config({"data": {"cube": "x"}, "output": {"name": "run"}})


def test_defaults_come_from_the_schema():
    """Every default is the schema's; the model defaults are those of the chosen family."""
    schema = config_schema()
    config = load_config({"data": {"cube": "c"}, "output": {"dir": "o"}})
    for section in ("normalisation", "train"):
        properties = schema["properties"][section]["properties"]
        assert config[section] == {k: v["default"] for k, v in properties.items()}
    assert config["model"] == {"family": "dense", **model_defaults()["dense"]}
    assert model_defaults()["patch"]["patch_size"] == [11, 15, 15]
    patch = load_config(
        {"data": {"cube": "c"}, "output": {"dir": "o"}, "model": {"family": "patch"}}
    )
    assert patch["model"] == {"family": "patch", **model_defaults()["patch"]}
    assert patch["output"]["name"] == "deepfeatures-patch"
    assert model_defaults() == models.DEFAULTS


@pytest.mark.parametrize(
    ("config", "stac_item"),
    [("default_dense.toml", "default.stac.json"), ("s2_10m_dense.toml", "s2_10m.stac.json")],
)
def test_shipped_models_configs_hash_as_recorded(config, stac_item):
    """The configs in configs/ read to the very settings the shipped models were trained with
    (their contracts record the config's sha256)."""
    cfg = load_config(ROOT / "configs" / config)
    item = json.loads((ROOT / "openeo_deepfeatures" / "data" / "encoder" / stac_item).read_text())
    assert config_sha256(cfg) == item["properties"]["deepfeatures:training"]["config_sha256"]


def test_config_file_paths_are_relative_to_it(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "config.toml"
    path.write_text('[data]\ncube = "cube.zarr"\n[output]\ndir = "../run"\n[train]\nepochs = 3\n')
    config = load_config(path)
    assert config["data"]["cube"] == str(tmp_path / "sub" / "cube.zarr")
    assert config["output"]["dir"] == str(tmp_path / "run")
    assert config["train"]["epochs"] == 3 and config["train"]["batch_size"] == 8
    assert config["model"]["family"] == "dense" and config["model"]["latent"] == 6
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(ProcessParameterInvalid, match=r"bad.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ProcessParameterInvalid, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_data_problems(demo_si, tile_cube, tmp_path):
    with pytest.raises(ProcessParameterInvalid, match="not a training cube"):
        train(tiny_config(tmp_path / "nothing.zarr", tmp_path / "o1"))
    config = tiny_config(tile_cube, tmp_path / "o2")
    config["data"]["channels"] = ["NDVI", "NBR"]
    with pytest.raises(ProcessParameterInvalid, match=r"data.channels.*\['NBR'\] are not in"):
        train(config)
    config = tiny_config(tile_cube, tmp_path / "o3", "patch")
    config["model"]["patch_size"] = [11, 21, 21]
    with pytest.raises(ProcessParameterInvalid, match="larger than the training cube"):
        train(config)
    only_train = tmp_path / "only_train.zarr"
    make_training_cube(
        demo_si, only_train, kind="tile", size=(6, 8, 8), n_samples=4, split=(1, 0, 0), block=(8, 8)
    )
    with pytest.raises(ProcessParameterInvalid, match="has no validation samples"):
        train(tiny_config(only_train, tmp_path / "o4"))
    assert not (tmp_path / "o4").exists()  # nothing half-written


def test_cli(tile_cube, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="deepfeatures")
    add_train(parser.add_subparsers(dest="command"))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[data]\ncube = "{tile_cube.as_posix()}"\n'
        "[model]\nwidth = 8\ndecoder_width = 8\n"
        "[train]\nepochs = 1\nbatch_size = 4\n"
        '[output]\ndir = "run"\nname = "cli-model"\n'
    )
    args = parser.parse_args(["train", str(config)])
    assert args.func(args) == 0
    assert "trained dense encoder 'cli-model': 1 epochs" in capsys.readouterr().err
    assert (tmp_path / "run" / CHECKPOINT).is_file()
    args = parser.parse_args(["train", str(config), "-o", str(tmp_path / "elsewhere"), "-q"])
    assert args.func(args) == 0
    assert Path(tmp_path / "elsewhere" / METRICS).is_file()
