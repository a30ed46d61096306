"""The training config: ``deepfeatures train CONFIG.toml``, checked against a JSON Schema.

A config (TOML file or dict) has five tables; the schema, ``config.schema.json`` beside this
module, lists every key with its type, range and default. Unknown keys and impossible values
raise :class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` naming the key
(``train.learning_rate``)::

    [data]
    cube = "training.zarr"          # a training cube (relative paths: from the config file)
    channels = ["NDVI", "NDMI"]     # optional subset, in this order (default: all)

    [model]
    family = "dense"                # or "patch"; the other keys depend on the family
    latent = 6

    [normalisation]
    quantiles = [0.02, 0.98]        # robust range of each channel on the train split
    clip = 4.0

    [train]
    seed = 0
    epochs = 50
    batch_size = 8
    learning_rate = 1e-3
    patience = 5                    # early stopping on the validation loss

    [output]
    dir = "run"                     # checkpoint.pt and metrics.jsonl
    name = "deepfeatures-dense"
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ProcessParameterInvalid

__all__ = ["config_schema", "config_sha256", "load_config", "model_defaults"]

PROCESS = "train"
#: Keys that do not change the trained weights (left out of the config hash).
_NOT_HASHED = {("data", "cube"), ("train", "progress"), ("train", "threads"), ("output", None)}


def invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files(__package__).joinpath("config.schema.json").read_text("utf-8")


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a training config (a fresh copy)."""
    return json.loads(_schema_text())


def _is_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # not 1.0, as JSON Schema


def _is_number(checker: Any, value: Any) -> bool:
    # TOML has nan and inf; neither is a usable setting
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = config_schema()
    base = jsonschema.validators.validator_for(schema)
    base.check_schema(schema)
    types = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(base, type_checker=types)(schema)


def model_defaults() -> dict[str, dict[str, Any]]:
    """The hyper-parameters of each model family and their defaults (the ``[model]`` table)."""
    defs = config_schema()["$defs"]
    families = config_schema()["properties"]["model"]["properties"]["family"]["enum"]
    return {family: _defaults(defs[f"{family}_model"]) for family in families}


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: copy.deepcopy(sub["default"])
        for key, sub in schema.get("properties", {}).items()
        if isinstance(sub, dict) and "default" in sub
    }


def _error(error: jsonschema.ValidationError) -> ProcessParameterInvalid:
    """The schema violation as an openEO error naming the key (``train.epochs``)."""
    path = [part for part in error.absolute_path if isinstance(part, str)]  # no list indices
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        if not path:
            return invalid(unknown[0], f"unknown table; known: {known}.")
        title = error.schema.get("title")
        where = f" for a {title}" if title else ""
        return invalid(".".join([*path, unknown[0]]), f"unknown key{where}; known keys: {known}.")
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        inner = error.schema["properties"][missing].get("required", [])  # a table: its key
        return invalid(".".join([*path, missing, *inner[:1]]), "is required.")
    described = error.schema.get("description")
    if error.validator == "not" and described:
        reason = f"{error.instance!r} is not {described}"
    else:
        reason = error.message if described is None else f"{error.message} ({described})"
    return invalid(".".join(path) or "config", f"{reason}.")


def _check_combinations(cfg: Mapping[str, Any]) -> None:
    """What the schema cannot say: relations between values."""
    low, high = cfg["normalisation"]["quantiles"]
    if not low < high:
        raise invalid("normalisation.quantiles", f"must be increasing, not {[low, high]}.")
    model = cfg["model"]
    if model["family"] == "dense":
        n = len(model["spatial_dilations"])
        if len(model["temporal_dilations"]) != n:
            raise invalid(
                "model.temporal_dilations",
                f"needs as many entries as model.spatial_dilations ({n}).",
            )
    else:
        if model["width"] % model["heads"]:
            raise invalid("model.heads", f"must divide model.width ({model['width']}).")
        t, h, w = model["patch_size"]
        if h != w:
            raise invalid("model.patch_size", f"needs square patches (H == W), not {[t, h, w]}.")


def _read(config: Mapping[str, Any] | str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The raw config and the folder its relative paths start from."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), Path.cwd()
    if not isinstance(config, (str, os.PathLike)):
        raise invalid("config", f"must be a dict or the path of a TOML file, not {config!r}")
    path = Path(config)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise invalid("config", f"cannot read {str(path)!r}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise invalid("config", f"{path.name} is not valid TOML: {exc}.") from None
    return raw, path.resolve().parent


def load_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Read (TOML path) and check a training config; returns it complete with defaults.

    Relative paths (``data.cube``, ``output.dir``) are taken from the config file's folder
    (of a dict: from the working directory).
    """
    raw, base = _read(config)
    error = jsonschema.exceptions.best_match(_validator().iter_errors(raw))
    if error is not None:
        raise _error(error)
    schema = config_schema()
    family = raw.get("model", {}).get("family", "dense")
    cfg: dict[str, Any] = {
        "model": {
            "family": family,
            **_defaults(schema["$defs"][f"{family}_model"]),
            **raw.get("model", {}),
        }
    }
    for section in ("data", "normalisation", "train", "output"):
        cfg[section] = {**_defaults(schema["properties"][section]), **raw.get(section, {})}
    _check_combinations(cfg)
    cfg["data"]["cube"] = str((base / cfg["data"]["cube"]).resolve())
    cfg["output"]["dir"] = str((base / cfg["output"]["dir"]).resolve())
    if cfg["output"]["name"] is None:
        cfg["output"]["name"] = f"deepfeatures-{family}"
    return cfg


def config_sha256(cfg: Mapping[str, Any], *, ignore_epochs: bool = False) -> str:
    """sha256 of the keys that shape the weights (not paths, progress, threads, output)."""
    kept: dict[str, Any] = {}
    for section, table in cfg.items():
        if (section, None) in _NOT_HASHED:
            continue
        kept[section] = {
            k: v
            for k, v in table.items()
            if (section, k) not in _NOT_HASHED and not (ignore_epochs and k == "epochs")
        }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
