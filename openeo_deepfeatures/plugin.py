"""openeo-deepfeatures as an openEO backend plugin.

Backends built on openeo-processes-dask + openeo-pg-parser-networkx hold an
openeo-pg-parser-networkx ``ProcessRegistry``; :func:`register` adds our process descriptions
and native implementations to it (as plain ids and under the namespace ``deepfeatures``).
Installed plugins are advertised through the entry point group :data:`ENTRY_POINT_GROUP`
(``[project.entry-points."openeo.processes"] deepfeatures = "openeo_deepfeatures.plugin:register"``),
so a host discovers them with :func:`load_plugins` without importing them by name; a plugin
that fails to load warns (:class:`PluginWarning`) instead of crashing the host.

:func:`processes_listing` and :func:`udf_runtimes` are what a backend serves at
``GET /processes`` for our processes (with links to the portable UDP JSON) and the
``GET /udf_runtimes`` block of what our UDF files need; ``deepfeatures processes [--json]``
prints them (:func:`add_parser` / :func:`main`).

Driver-based backends (openeo-python-driver, the geopyspark driver) need no Python plugin:
they register the UDP JSON files of ``process_graphs/`` as predefined processes (see
``tests/driver/check_driver.py``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from . import processes as ours
from .errors import ProcessParameterInvalid

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROCESS_SCHEMA",
    "PluginWarning",
    "load_plugins",
    "process_schema",
    "processes_listing",
    "register",
    "udf_runtimes",
    "validate_spec",
]

#: Entry point group of plugins that add processes to an openeo-pg-parser-networkx
#: ``ProcessRegistry``: each entry point is a callable ``register(registry)``.
#: (openeo-processes-dask, openeo-pg-parser-networkx, openeo-fastapi and openeo-python-driver
#: define no plugin group of their own.)
ENTRY_POINT_GROUP = "openeo.processes"
_REGISTER = "openeo_deepfeatures.plugin.register"
_DEFAULT_NAMESPACE = "predefined"  # openeo_pg_parser_networkx.process_registry.DEFAULT_NAMESPACE
_SOURCE = "https://github.com/openeo-deepfeatures/openeo-deepfeatures"
# a namespace the registry keeps as given (it strips leading and trailing "_")
_NAME = re.compile(r"[A-Za-z0-9](\w*[A-Za-z0-9])?")


class PluginWarning(UserWarning):
    """A process plugin could not be loaded; the host goes on without it."""


# --------------------------------------------------------------------------- spec schema


def process_schema(definition: str = "predefined_process") -> dict[str, Any]:
    """The project's JSON Schema (draft 7) of openEO process descriptions (openEO API 1.2,
    ``openeo_deepfeatures/processes/process.schema.json``), rooted at ``definition``:
    ``predefined_process`` (what ``GET /processes`` lists), ``user_defined_process`` or
    ``process_graph_with_metadata``. The Web Editor check (``webeditor/validate.mjs``) uses the
    same file."""
    text = resources.files("openeo_deepfeatures.processes").joinpath("process.schema.json")
    document = json.loads(text.read_text(encoding="utf-8"))
    if definition not in document["definitions"]:
        raise KeyError(f"no definition {definition!r} in the process schema")
    return {**document, "$ref": f"#/definitions/{definition}"}


#: JSON Schema of an openEO process description as listed by ``GET /processes`` (``id``,
#: ``description``, ``parameters`` and ``returns`` required); :func:`validate_spec` adds the
#: checks a schema cannot express.
PROCESS_SCHEMA: Mapping[str, Any] = process_schema()


def _invalid(process_id: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(
        process=process_id, parameter="spec", reason=f"the process description {reason}"
    )


def _schemas(schema: Any) -> list[Mapping[str, Any]]:
    return list(schema) if isinstance(schema, list) else [schema]


def validate_spec(spec: Any, implementation: Callable[..., Any] | None = None) -> None:
    """Check an openEO process description; raise ProcessParameterInvalid naming the process.

    Checks :data:`PROCESS_SCHEMA`, unique parameter names, that every parameter and return
    schema is a valid JSON Schema (draft 7, the openEO keywords ``subtype``, ``dimensions``,
    ... allowed), that defaults other than null satisfy their schema, and, given
    ``implementation``, that its parameters are the spec's.
    """
    import jsonschema

    process_id = spec.get("id", "<no id>") if isinstance(spec, Mapping) else "<not a dict>"
    validator = jsonschema.Draft7Validator(PROCESS_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(spec))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise _invalid(
            str(process_id), f"fails the openEO process schema at {where}: {error.message}"
        )
    names = [p["name"] for p in spec["parameters"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _invalid(process_id, f"lists the parameters {duplicates} more than once")
    places = [(f"parameter '{p['name']}'", p["schema"]) for p in spec["parameters"]]
    for where, schema in [*places, ("return value", spec["returns"]["schema"])]:
        for one in _schemas(schema):
            try:
                jsonschema.Draft7Validator.check_schema(one)
            except jsonschema.exceptions.SchemaError as e:
                raise _invalid(
                    process_id, f"has an invalid schema for its {where}: {e.message}"
                ) from None
    for param in spec["parameters"]:
        if param.get("default") is None:  # null: "not given", allowed whatever the schema
            continue
        schemas = _schemas(param["schema"])
        if not any(jsonschema.Draft7Validator(s).is_valid(param["default"]) for s in schemas):
            raise _invalid(
                process_id,
                f"gives parameter '{param['name']}' the default {param['default']!r}, "
                "which its schema does not allow",
            )
    if implementation is not None:
        accepted = list(inspect.signature(implementation).parameters)
        if accepted != names:
            raise _invalid(
                process_id,
                f"has the parameters {names}, its implementation {accepted}",
            )


# --------------------------------------------------------------------------- register


@dataclass(frozen=True)
class _Entry:
    key: tuple[str, str]
    spec: dict[str, Any]
    implementation: Callable[..., Any]


@functools.cache
def _process_class() -> type:
    """openeo-pg-parser-networkx's ``Process``, remembering the native implementation: the
    registry replaces ``implementation`` by its wrapped version, so this is how a later
    :func:`register` recognises its own entries whatever the registry's ``wrap_funcs``."""
    from openeo_pg_parser_networkx.process_registry import Process

    @dataclass
    class DeepFeaturesProcess(Process):
        native: Callable[..., Any] | None = None

    return DeepFeaturesProcess


def _check_registry(registry: Any) -> None:
    from openeo_pg_parser_networkx.process_registry import ProcessRegistry

    if not isinstance(registry, ProcessRegistry):
        raise ProcessParameterInvalid(
            process=_REGISTER,
            parameter="registry",
            reason=(
                "expected an openeo_pg_parser_networkx.ProcessRegistry (the registry of "
                "backends built on openeo-processes-dask), got "
                f"{type(registry).__module__}.{type(registry).__qualname__}. "
                "openeo-python-driver backends register the UDP JSON files instead."
            ),
        )


def _existing(registry: Any, key: tuple[str, str]) -> Any:
    """What the registry resolves ``key`` to now: an alias of that name or the process."""
    namespace, process_id = key
    target = registry.aliases.get(namespace, {}).get(key)
    if target is not None and target != key:
        return f"an alias of {target[1]!r}"
    return registry.store.get(namespace, {}).get(process_id)


def _is_ours(existing: Any, entry: _Entry) -> bool:
    return (
        isinstance(existing, _process_class())
        and existing.native is entry.implementation
        and existing.spec == entry.spec
        and existing.namespace == entry.key[0]
    )


def register(
    registry: Any,
    *,
    namespace: str | None = ours.NAMESPACE,
    predefined: bool = True,
    overwrite: bool = False,
) -> list[tuple[str, str]]:
    """Add the deepfeatures processes to an openeo-pg-parser-networkx ``ProcessRegistry``.

    Each process gets its openEO description and native implementation (wrapped by the
    registry's ``wrap_funcs``, e.g. openeo-processes-dask's ``process`` decorator), under
    ``namespace`` and, when ``predefined``, as plain ids (the registry's ``predefined``
    namespace, the one ``GET /processes`` lists and ``OpenEOProcessGraph.to_callable``
    resolves). Idempotent: processes already registered by this function are left as they
    are. Refuses, before changing anything, a registry that holds a different process under
    one of our ids unless ``overwrite``. Returns the (namespace, id) keys registered.
    """
    _check_registry(registry)
    namespaces = [_DEFAULT_NAMESPACE] if predefined else []
    if namespace is not None:
        if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
            raise ProcessParameterInvalid(
                process=_REGISTER,
                parameter="namespace",
                reason=(
                    f"expected letters, digits and inner '_' (as in 'deepfeatures'), "
                    f"got {namespace!r}."
                ),
            )
        if namespace not in namespaces:
            namespaces.append(namespace)
    if not namespaces:
        raise ProcessParameterInvalid(
            process=_REGISTER,
            parameter="namespace",
            reason="with predefined=False a namespace is needed, or nothing gets registered.",
        )
    entries = []
    for process_id in ours.PROCESS_IDS:
        spec, implementation = ours.get_spec(process_id), ours.get_implementation(process_id)
        validate_spec(spec, implementation)
        entries += [_Entry((ns, process_id), spec, implementation) for ns in namespaces]

    todo = []
    for entry in entries:
        existing = _existing(registry, entry.key)
        if existing is not None and _is_ours(existing, entry):
            continue
        if existing is not None and not overwrite:
            ns, process_id = entry.key
            raise ProcessParameterInvalid(
                process=process_id,
                parameter="registry",
                reason=(
                    f"the registry already holds a different process '{process_id}' in "
                    f"namespace '{ns}'; pass overwrite=True to replace it."
                ),
            )
        todo.append(entry)
    for entry in todo:
        ns, process_id = entry.key
        registry.aliases.get(ns, {}).pop((ns, process_id), None)  # an alias would shadow it
        spec = copy.deepcopy(entry.spec)  # each registry entry owns its copy
        registry[entry.key] = _process_class()(spec, entry.implementation, ns, entry.implementation)
    return [e.key for e in entries]


def load_plugins(registry: Any, *, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Call ``register(registry)`` of every installed plugin of the entry point ``group``.

    A plugin that cannot be imported or whose ``register`` fails is skipped with a
    :class:`PluginWarning` naming it and the error; the others still load. Returns the names
    of the plugins loaded, in name order.
    """
    _check_registry(registry)
    loaded = []
    for entry_point in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            plugin = entry_point.load()
            plugin(registry)
        except Exception as e:  # a broken plugin must not take its host down
            warnings.warn(
                f"openEO process plugin '{entry_point.name}' ({entry_point.value}) was not "
                f"loaded: {type(e).__name__}: {e}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        loaded.append(entry_point.name)
    return loaded


# --------------------------------------------------------------------------- listings


def _udp_dir() -> Path:
    """The packaged ``process_graphs/`` folder (our UDP JSON files)."""
    return Path(str(resources.files("openeo_deepfeatures.process_graphs")))


def _default_base_url() -> str:
    from .udps import NAMESPACE_URL

    return NAMESPACE_URL


def processes_listing(*, base_url: str | None = None) -> dict[str, Any]:
    """The body of ``GET /processes`` for our processes.

    Each description links (``rel: alternate``) to the UDP JSON of the same id in
    ``process_graphs/`` (published under ``base_url``, default the project's), the portable
    graph that backends without this plugin run by namespace URL.
    """
    base = (base_url or _default_base_url()).rstrip("/")
    folder = _udp_dir()
    out = []
    for spec in ours.list_specs():
        process_id = spec["id"]
        if (folder / f"{process_id}.json").is_file():
            spec["links"] = [
                *spec.get("links", []),
                {
                    "rel": "alternate",
                    "href": f"{base}/{process_id}.json",
                    "type": "application/json",
                    "title": (
                        f"{process_id} as an openEO user-defined process (process graph); "
                        "use its folder URL as `namespace` on backends without this plugin"
                    ),
                },
            ]
        out.append(spec)
    links = [{"rel": "about", "href": _SOURCE, "type": "text/html", "title": "openeo-deepfeatures"}]
    return {"processes": out, "links": links}


_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def _script_metadata(source: str, name: str) -> dict[str, Any]:
    """The PEP 723 ``script`` block of a UDF file."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    blocks = [m for m in _PEP723.finditer(source) if m.group("type") == "script"]
    if len(blocks) != 1:
        raise ProcessParameterInvalid(
            process="udf_runtimes",
            parameter=name,
            reason=f"expected one `# /// script` metadata block (PEP 723), found {len(blocks)}.",
        )
    lines = blocks[0].group("content").splitlines(keepends=True)
    content = "".join(line[2:] if line.startswith("# ") else line[1:] for line in lines)
    return tomllib.loads(content)


@functools.cache
def _udf_sources() -> dict[str, str]:
    folder = resources.files("openeo_deepfeatures.udf")
    return {
        f.name: f.read_text("utf-8")
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".py") and not f.name.startswith("_")
    }


def udf_runtimes(sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``GET /udf_runtimes``-style block of what our UDF files need.

    Read from the PEP 723 ``# /// script`` header of each file in ``udf/``: the Python
    libraries with the version ranges all files accept together.
    """
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    sources = _udf_sources() if sources is None else sources
    needs: dict[str, SpecifierSet] = {}
    users: dict[str, list[str]] = {}
    pythons = set()
    for name, source in sources.items():
        meta = _script_metadata(source, name)
        if "requires-python" in meta:
            pythons.add(str(meta["requires-python"]))
        for text in meta.get("dependencies", []):
            req = Requirement(text)
            key = req.name.lower()
            needs[key] = needs.get(key, SpecifierSet()) & req.specifier
            users.setdefault(key, []).append(name)
    python = f"Python {', '.join(sorted(pythons))}" if pythons else "Python 3"
    libraries = {
        key: {
            "version": str(spec) or "any",
            "description": f"needed by {', '.join(users[key])}",
        }
        for key, spec in sorted(needs.items())
    }
    return {
        "Python": {
            "title": "Python 3 for the openeo-deepfeatures UDFs",
            "description": (
                f"What the UDF files of openeo-deepfeatures ({', '.join(sources)}) need: "
                f"{python} and the libraries below; nothing of openeo-deepfeatures itself."
            ),
            "type": "language",
            "default": "3",
            "versions": {"3": {"libraries": libraries}},
            "links": [
                {"rel": "about", "href": f"{_SOURCE}/tree/main/udf", "title": "The UDF files"}
            ],
        }
    }
