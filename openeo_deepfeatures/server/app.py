"""The FastAPI application: openEO API 1.2 over the local executor.

:func:`create_app` builds it from a :class:`~.config.ServerConfig`; ``deepfeatures serve``
runs it with uvicorn. Executor errors become openEO error bodies with their HTTP status; an
unexpected failure is a 500 with the error's type and message (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..errors import OpenEOError
from . import capabilities as caps
from .auth import basic_login, check_bearer, check_signature
from .auth import signature as sign_path
from .collections import Catalog, with_links
from .config import ServerConfig
from .errors import BadRequest, NotFound, ProcessGraphMissing, error_body
from .execute import RUN_LOCK, execute
from .jobs import JobManager, connect_scheduler
from .process_graphs import ProcessGraphStore
from .results import save_value
from .validation import validate_graph

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

_EXPOSED = ["Location", "OpenEO-Identifier", "OpenEO-Costs", "Link", "Content-Disposition"]


class Process(BaseModel):
    """A process (graph) as the API carries it: ``process_graph`` plus any metadata."""

    model_config = ConfigDict(extra="allow")
    process_graph: dict[str, Any]


class ResultRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    process: Process


class JobRequest(ResultRequest):
    title: str | None = None
    description: str | None = None
    plan: str | None = None
    budget: float | None = None


class JobUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")
    title: str | None = None
    description: str | None = None
    plan: str | None = None
    budget: float | None = None
    process: Process | None = None


class StoredProcess(Process):
    id: str | None = Field(default=None)


class _CollapseSlashes:
    """``//jobs/1`` is ``/jobs/1``: clients that join a base URL ending in ``/`` still arrive."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            path = re.sub("/{2,}", "/", scope["path"])
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _json_error(exc: OpenEOError) -> JSONResponse:
    body = error_body(exc)
    level = logging.ERROR if exc.status_code >= 500 else logging.INFO
    _log.log(level, "openEO error %s: %s %s", body["id"], exc.code, body["message"])
    return JSONResponse(body, status_code=exc.status_code)


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The openEO API application for ``config`` (defaults: demo cube only, jobs in ./)."""
    config = config or ServerConfig()
    from ..local.registry import default_registry

    registry = default_registry()
    catalog = Catalog(config.data)
    udps = ProcessGraphStore(config.jobs / "process_graphs")
    builtin = _builtin_udps()

    def run(process: Mapping[str, Any], output: Path) -> Any:
        with RUN_LOCK:  # a cube result is written as netCDF: serialized like the run
            value = execute(
                dict(process),
                collections=catalog.collections(),
                udps=udps.all(),
                output=output,
                allow_udf=config.allow_udf,
                data=config.data,
            )
            return save_value(value, output)

    jobs = JobManager(config.jobs / "jobs", run)
    # connected now, so an unreachable scheduler is an error before the server starts
    client = connect_scheduler(config.scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            jobs.shutdown()
            if client is not None:
                client.close()

    app = FastAPI(title=config.title, version=caps.API_VERSION, lifespan=lifespan)
    app.state.config = config
    app.state.jobs = jobs
    app.state.dask_client = client
    app.add_middleware(_CollapseSlashes)
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=".*",
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=_EXPOSED,
    )

    @app.exception_handler(OpenEOError)
    async def _openeo_error(request: Request, exc: OpenEOError) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        missing = any(
            e.get("type") == "missing" and e.get("loc", ())[-1] in ("process", "process_graph")
            for e in exc.errors()
        )
        if missing:
            return _json_error(ProcessGraphMissing(reason=problems))
        return _json_error(BadRequest(reason=problems or "malformed request body."))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error: OpenEOError = NotFound(reason=f"{request.method} {request.url.path}")
        else:
            error = OpenEOError(str(exc.detail))
            error.code = "MethodNotAllowed" if exc.status_code == 405 else "BadRequest"
            error.status_code = exc.status_code
        return _json_error(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex
        _log.error("internal error %s", error_id, exc_info=exc)
        return JSONResponse(
            {
                "id": error_id,
                "code": "Internal",
                "message": f"Server error: {type(exc).__name__}: {exc}",
                "links": [],
            },
            status_code=500,
        )

    def user(authorization: str | None) -> None:
        check_bearer(authorization, config.token)

    # -- discovery --------------------------------------------------------------------------
    @app.get("/")
    def get_capabilities(request: Request) -> dict[str, Any]:
        return caps.capabilities(_base(request), config.title)

    @app.get("/.well-known/openeo")
    def get_well_known(request: Request) -> dict[str, Any]:
        return caps.well_known(_base(request))

    @app.get("/conformance")
    def get_conformance() -> dict[str, Any]:
        return caps.conformance()

    @app.get("/file_formats")
    def get_file_formats() -> dict[str, Any]:
        return caps.file_formats()

    @app.get("/udf_runtimes")
    def get_udf_runtimes() -> dict[str, Any]:
        from ..local.udf import udf_runtimes

        return udf_runtimes()

    @app.get("/service_types")
    def get_service_types() -> dict[str, Any]:
        return {}  # no secondary web services (WMTS, ...)

    @app.get("/collections")
    def get_collections(request: Request) -> dict[str, Any]:
        base = _base(request)
        found = [with_links(meta, base) for meta in catalog.describe_all()]
        return {"collections": found, "links": [{"rel": "self", "href": f"{base}/collections"}]}

    @app.get("/collections/{collection_id}")
    def get_collection(collection_id: str, request: Request) -> dict[str, Any]:
        return with_links(catalog.describe(collection_id), _base(request))

    @app.get("/processes")
    def get_processes() -> dict[str, Any]:
        return {"processes": [dict(s) for s in registry.specs()], "links": []}

    # -- authentication ---------------------------------------------------------------------
    @app.get("/credentials/basic")
    def get_token(authorization: str | None = Header(None)) -> dict[str, Any]:
        return {"access_token": basic_login(authorization, config.token)}

    @app.get("/me")
    def get_me(authorization: str | None = Header(None)) -> dict[str, Any]:
        user(authorization)
        return {"user_id": config.user, "name": config.user, "links": []}

    # -- user-defined processes -------------------------------------------------------------
    @app.get("/process_graphs")
    def list_process_graphs(authorization: str | None = Header(None)) -> dict[str, Any]:
        user(authorization)
        return {"processes": udps.summaries(), "links": []}

    @app.get("/process_graphs/{process_graph_id}")
    def get_process_graph(
        process_graph_id: str, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        user(authorization)
        return udps.get(process_graph_id)

    @app.put("/process_graphs/{process_graph_id}")
    def put_process_graph(
        process_graph_id: str, body: StoredProcess, authorization: str | None = Header(None)
    ) -> Response:
        user(authorization)
        graph = _top_level(body)
        from ..local.graph import load_graph

        load_graph(graph)  # ProcessGraphInvalid before anything is stored
        udps.put(process_graph_id, graph)
        return Response(status_code=200)

    @app.delete("/process_graphs/{process_graph_id}", status_code=204)
    def delete_process_graph(
        process_graph_id: str, authorization: str | None = Header(None)
    ) -> Response:
        user(authorization)
        udps.delete(process_graph_id)
        return Response(status_code=204)

    # -- validation and synchronous processing ----------------------------------------------
    @app.post("/validation")
    def post_validation(
        body: Annotated[dict[str, Any], Body()], authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        if authorization:
            user(authorization)
        stored = udps.all()
        if "process_graph" not in body:
            return {"errors": [ProcessGraphMissing(reason="no 'process_graph'.").to_dict()]}
        errors = validate_graph(
            body,
            registry=registry,
            udp_specs=stored,
            builtin_udp=lambda pid: pid in builtin,
            collections=set(catalog.ids()),
        )
        return {"errors": errors}

    @app.post("/result")
    def post_result(body: ResultRequest, authorization: str | None = Header(None)) -> Response:
        user(authorization)
        tmp = Path(tempfile.mkdtemp(prefix="deepfeatures-result-"))
        try:
            item = run(body.process.model_dump(), tmp)
            path, media = _asset_file(item)
            if path.is_dir():  # zarr: one zip archive
                archive = shutil.make_archive(str(tmp / ".download"), "zip", root_dir=path)
                path, media = Path(archive), "application/zip"
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return FileResponse(
            path,
            media_type=media,
            filename=path.name if path.suffix != ".zip" else "result.zarr.zip",
            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
        )

    # -- batch jobs -------------------------------------------------------------------------
    @app.get("/jobs")
    def list_jobs(request: Request, authorization: str | None = Header(None)) -> dict[str, Any]:
        user(authorization)
        return {"jobs": jobs.list(), "links": []}

    @app.post("/jobs", status_code=201)
    def create_job(
        body: JobRequest, request: Request, authorization: str | None = Header(None)
    ) -> Response:
        user(authorization)
        from ..local.graph import load_graph

        load_graph(body.process.model_dump())
        job = jobs.create(_top_level(body))
        location = f"{_base(request)}/jobs/{job['id']}"
        return Response(
            status_code=201, headers={"Location": location, "OpenEO-Identifier": job["id"]}
        )

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        user(authorization)
        return jobs.describe(job_id)

    @app.patch("/jobs/{job_id}", status_code=204)
    def patch_job(
        job_id: str, body: JobUpdate, authorization: str | None = Header(None)
    ) -> Response:
        user(authorization)
        update = _top_level(body, exclude_unset=True)
        if "process" in update:
            from ..local.graph import load_graph

            load_graph(update["process"])
        jobs.update(job_id, update)
        return Response(status_code=204)

    @app.delete("/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str, authorization: str | None = Header(None)) -> Response:
        user(authorization)
        jobs.delete(job_id)
        return Response(status_code=204)

    @app.post("/jobs/{job_id}/results", status_code=202)
    def start_job(job_id: str, authorization: str | None = Header(None)) -> Response:
        user(authorization)
        jobs.start(job_id)
        return Response(status_code=202)

    @app.get("/jobs/{job_id}/results")
    def job_results(
        job_id: str, request: Request, authorization: str | None = Header(None)
    ) -> JSONResponse:
        user(authorization)
        # a local backend charges nothing: the API asks for 0 then
        sign = partial(sign_path, token=config.token)
        results = jobs.results(job_id, _base(request), sign)
        return JSONResponse(results, headers={"OpenEO-Costs": "0"})

    @app.get("/jobs/{job_id}/estimate")
    def job_estimate(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        user(authorization)
        jobs.describe(job_id)  # JobNotFound for unknown ids
        return {"costs": 0}

    @app.delete("/jobs/{job_id}/results", status_code=204)
    def cancel_job(job_id: str, authorization: str | None = Header(None)) -> Response:
        user(authorization)
        jobs.cancel(job_id)
        return Response(status_code=204)

    @app.get("/jobs/{job_id}/results/assets/{name}")
    def job_asset(
        job_id: str,
        name: str,
        request: Request,
        signature: str | None = None,
        authorization: str | None = Header(None),
    ) -> Response:
        if not check_signature(request.url.path, signature, config.token):
            user(authorization)
        path = jobs.asset(job_id, name)
        return FileResponse(path, filename=name)

    @app.get("/jobs/{job_id}/logs")
    def job_logs(
        job_id: str,
        offset: str | None = None,
        level: str = "debug",
        authorization: str | None = Header(None),
    ) -> dict[str, Any]:
        user(authorization)
        return jobs.logs(job_id, offset, level)

    return app


def _top_level(body: BaseModel, *, exclude_unset: bool = False) -> dict[str, Any]:
    """The body as a dict without its top-level nulls; nulls inside the graph are arguments."""
    dumped = body.model_dump(exclude_unset=exclude_unset)
    return {k: v for k, v in dumped.items() if v is not None}


def _asset_file(item: Mapping[str, Any]) -> tuple[Path, str]:
    asset = item["assets"]["data"]
    return Path(asset["href"]), str(asset.get("type") or "application/octet-stream")


def _builtin_udps() -> set[str]:
    from importlib import resources

    folder = resources.files("openeo_deepfeatures.process_graphs")
    return {p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")}
