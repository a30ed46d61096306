"""Batch jobs: a store of one folder per job (``job.json`` + ``results/``) and a runner.

Jobs run in a background thread each (at most ``workers`` at once); their dask work goes to the
configured scheduler: dask's threads in this process, or a ``dask.distributed`` client that
:func:`connect_scheduler` made the default. A job's results are written into a temporary folder
and moved into ``results/`` only when the whole graph succeeded. Metadata and logs are JSON
files written atomically, so a restarted server lists its finished jobs again; a job that was
queued or running when the server stopped is marked ``error`` with a log entry saying so.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dask.callbacks import Callback

from ..errors import OpenEOError
from ..io import atomic_path
from .errors import JobLocked, JobNotFinished, JobNotFound, NotFound, error_body
from .storage import read_json, safe_id, write_json

__all__ = ["JobManager", "connect_scheduler"]

_log = logging.getLogger(__name__)

Runner = Callable[[Mapping[str, Any], Path], Any]
_ACTIVE = ("queued", "running")
_PUBLIC = ("id", "title", "description", "status", "progress", "created", "updated", "plan")
_MEDIA = {
    ".nc": "application/netcdf",
    ".tif": "image/tiff; application=geotiff",
    ".json": "application/json",
    ".zarr": "application/zip",  # a zarr store is a folder: downloaded as a zip archive
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect_scheduler(address: str | None) -> Any:
    """A dask.distributed client set as dask's default: ``local`` starts a LocalCluster."""
    from ..scheduler import connect_scheduler as connect

    return connect(address, process="serve", timeout="10s")


class _Progress(Callback):
    """Counts finished dask tasks of computations started in one thread (the job's)."""

    def __init__(self, on_progress: Callable[[float], None]) -> None:
        super().__init__()
        self._thread = threading.get_ident()
        self._on_progress = on_progress
        self._total = 0
        self._done = 0

    def _start_state(self, dsk: Any, state: Any) -> None:
        if threading.get_ident() == self._thread:
            self._total += len(state["ready"]) + len(state["waiting"])

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if threading.get_ident() == self._thread and self._total:
            self._done += 1
            self._on_progress(self._done / self._total)


class _Canceled(Exception):
    """Raised inside the results' atomic folder so a canceled job leaves nothing behind."""


class JobManager:
    def __init__(self, folder: Path, runner: Runner, *, workers: int = 2) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._runner = runner
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openeo-job")
        self._jobs: dict[str, dict[str, Any]] = {}
        for path in sorted(self.folder.glob("*/job.json")):
            job = read_json(path)
            if job.get("status") in _ACTIVE:
                job["status"] = "error"
                self._add_log(job, "error", "The server stopped while this job was queued or ran.")
                write_json(path, job)
            self._jobs[job["id"]] = job

    # -- metadata ---------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        return self.folder / job_id

    def _save(self, job: dict[str, Any]) -> None:
        job["updated"] = _now()
        write_json(self._path(job["id"]) / "job.json", job)

    def _get(self, job_id: str) -> dict[str, Any]:
        job = self._jobs.get(job_id) if safe_id(job_id) else None
        if job is None:
            raise JobNotFound(job_id=job_id)
        return job

    @staticmethod
    def _add_log(job: dict[str, Any], level: str, message: str, **extra: Any) -> None:
        logs = job.setdefault("logs", [])
        logs.append(
            {"id": str(len(logs)), "level": level, "message": message, "time": _now(), **extra}
        )

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:16]
        now = _now()
        job = {
            "id": job_id,
            "title": body.get("title"),
            "description": body.get("description"),
            "process": dict(body["process"]),
            "plan": body.get("plan"),
            "status": "created",
            "progress": 0,
            "created": now,
            "updated": now,
            "logs": [],
        }
        self._add_log(job, "info", "Job created.")
        with self._lock:
            self._jobs[job_id] = job
            self._save(job)
        return self.describe(job_id)

    def summary(self, job: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: job[k] for k in _PUBLIC if job.get(k) is not None}
        return out

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j["created"])
            return [self.summary(j) for j in jobs]

    def describe(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._get(job_id)
            return {**self.summary(job), "process": job["process"]}

    def update(self, job_id: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            job = self._get(job_id)
            if job["status"] in _ACTIVE:
                raise JobLocked(job_id=job_id, status=job["status"])
            for key in ("title", "description", "plan"):
                if key in body:
                    job[key] = body[key]
            if "process" in body:
                job["process"] = dict(body["process"])
            self._save(job)

    def delete(self, job_id: str) -> None:
        with self._lock:
            job = self._get(job_id)
            if job["status"] in _ACTIVE:
                job["status"] = "canceled"
            del self._jobs[job_id]
            shutil.rmtree(self._path(job_id), ignore_errors=True)

    # -- running ----------------------------------------------------------------------------
    def start(self, job_id: str) -> None:
        with self._lock:
            job = self._get(job_id)
            if job["status"] in _ACTIVE:
                return  # already queued or running: nothing to do (openEO: 202 again)
            job["status"] = "queued"
            job["progress"] = 0
            job.pop("usage", None)
            self._add_log(job, "info", "Job queued.")
            self._save(job)
            run_id = uuid.uuid4().hex
            job["run_id"] = run_id
        self._pool.submit(self._run, job_id, run_id)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._get(job_id)
            if job["status"] in _ACTIVE:
                job["status"] = "canceled"
                self._add_log(job, "info", "Job canceled.")
                self._save(job)

    def _current(self, job_id: str, run_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        if job is None or job.get("run_id") != run_id or job["status"] not in _ACTIVE:
            return None
        return job

    def _run(self, job_id: str, run_id: str) -> None:
        with self._lock:
            job = self._current(job_id, run_id)
            if job is None:
                return
            job["status"] = "running"
            self._add_log(job, "info", "Job started.")
            self._save(job)
            process = job["process"]
            started = datetime.now(timezone.utc)

        def progress(fraction: float) -> None:
            with self._lock:
                current = self._current(job_id, run_id)
                if current is None:
                    return
                # a later dask computation of the same graph adds tasks: never go back
                before = current["progress"]
                current["progress"] = max(before, round(99 * fraction, 1))
                for quarter in range(
                    int(4 * before / 99) + 1, int(4 * current["progress"] / 99) + 1
                ):
                    if quarter < 4:
                        self._add_log(current, "debug", f"{25 * quarter}% of the dask tasks done.")

        results = self._path(job_id) / "results"
        try:
            shutil.rmtree(results, ignore_errors=True)
            with atomic_path(results, overwrite=True) as tmp:
                tmp.mkdir(parents=True)
                with _Progress(progress):
                    value = self._runner(process, tmp)
                with self._lock:
                    if self._current(job_id, run_id) is None:
                        raise _Canceled
            outcome, level, message = "finished", "info", "Job finished."
            error = None
        except _Canceled:
            return
        except OpenEOError as exc:
            outcome, level, error = "error", "error", exc
            message = error_body(exc)["message"]
        except Exception as exc:  # a failure of the executor itself: logged, the job errors
            _log.exception("batch job %s failed", job_id)
            outcome, level, error = "error", "error", exc
            message = f"{type(exc).__name__}: {exc}"
        with self._lock:
            job = self._current(job_id, run_id)
            if job is None:
                shutil.rmtree(results, ignore_errors=True)
                return
            job["status"] = outcome
            if outcome == "finished":
                job["progress"] = 100
                job["extent"] = _extent(value)
            seconds = (datetime.now(timezone.utc) - started).total_seconds()
            job["usage"] = {"duration": {"value": round(seconds, 3), "unit": "seconds"}}
            code = getattr(error, "code", None) if error is not None else None
            self._add_log(job, level, message, **({"code": code} if code else {}))
            self._save(job)

    # -- results and logs -------------------------------------------------------------------
    def logs(self, job_id: str, offset: str | None = None, level: str = "debug") -> dict[str, Any]:
        order = ["debug", "info", "warning", "error"]
        minimum = order.index(level) if level in order else 0
        with self._lock:
            entries = list(self._get(job_id).get("logs", []))
        if offset is not None:
            ids = [e["id"] for e in entries]
            entries = entries[ids.index(offset) + 1 :] if offset in ids else entries
        entries = [e for e in entries if order.index(e["level"]) >= minimum]
        return {"level": level, "logs": entries, "links": []}

    def result_files(self, job_id: str) -> dict[str, Path]:
        with self._lock:
            job = self._get(job_id)
            if job["status"] != "finished":
                raise JobNotFinished(job_id=job_id, status=job["status"])
        folder = self._path(job_id) / "results"
        return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}

    def results(
        self, job_id: str, base_url: str, sign: Callable[[str], str] | None = None
    ) -> dict[str, Any]:
        """The results as a STAC Collection whose assets the server serves.

        ``sign(path)`` gives a query string that makes an asset URL work without the
        ``Authorization`` header (a browser following a download link sends none).
        """
        files = self.result_files(job_id)
        with self._lock:
            job = dict(self._get(job_id))
        assets = {}
        for name, path in files.items():
            href_name = f"{name}.zip" if path.is_dir() else name
            href = f"/jobs/{job_id}/results/assets/{href_name}"
            assets[href_name] = {
                "href": f"{base_url}{href}" + (f"?{sign(href)}" if sign else ""),
                "title": name,
                "type": _MEDIA.get(path.suffix.lower(), "application/octet-stream"),
                "roles": ["data"],
                "file:size": _size(path),
            }
        return {
            "stac_version": "1.0.0",
            "stac_extensions": ["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
            "type": "Collection",
            "id": job_id,
            "title": job.get("title") or f"Results of batch job {job_id}",
            "description": job.get("description") or "Results of a local batch job.",
            "license": "proprietary",
            "extent": job.get("extent") or _extent(None),
            "openeo:status": "finished",
            "assets": assets,
            "links": [
                {"rel": "self", "href": f"{base_url}/jobs/{job_id}/results"},
                {"rel": "canonical", "href": f"{base_url}/jobs/{job_id}/results"},
            ],
        }

    def asset(self, job_id: str, name: str) -> Path:
        files = self.result_files(job_id)
        if name in files and files[name].is_file():
            return files[name]
        stem = name.removesuffix(".zip")
        if name.endswith(".zip") and stem in files and files[stem].is_dir():
            archive = self._path(job_id) / f".{stem}.zip"
            if not archive.is_file():
                with atomic_path(archive, overwrite=True) as tmp:
                    shutil.make_archive(str(tmp), "zip", root_dir=files[stem])
                    Path(f"{tmp}.zip").rename(tmp)
            return archive
        raise NotFound(reason=f"job '{job_id}' has no result asset {name!r}.")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _extent(item: Any) -> dict[str, Any]:
    """Spatial and temporal extent of a job's result, from the STAC Item save_result returned."""
    bbox: list[Any] = [-180, -90, 180, 90]
    interval: list[Any] = [None, None]
    if isinstance(item, Mapping) and isinstance(item.get("properties"), Mapping):
        props = item["properties"]
        interval = [props.get("start_datetime"), props.get("end_datetime")]
        if interval == [None, None] and props.get("datetime"):
            interval = [props["datetime"], props["datetime"]]
        bbox = item.get("bbox") or bbox
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}}
