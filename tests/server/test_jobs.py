"""The job manager on its own: progress from dask, cancelling a running job."""

from __future__ import annotations

import threading
import time

import dask.array as da

from openeo_deepfeatures.server.jobs import JobManager, _Progress

PROCESS = {"process_graph": {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}}  # fmt: skip


def test_progress_counts_the_tasks_of_its_own_thread():
    seen: list[float] = []
    with _Progress(seen.append):
        other = threading.Thread(target=lambda: da.ones(50, chunks=1).sum().compute())
        other.start()
        other.join()
        assert seen == []  # another thread's computation is not this job's
        da.ones(10, chunks=1).sum().compute(scheduler="threads")
    assert seen[-1] == 1.0 and len(seen) > 10 and seen == sorted(seen)


def wait(manager: JobManager, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while manager.describe(job_id)["status"] != status:
        assert time.monotonic() < deadline, manager.describe(job_id)
        time.sleep(0.01)


def test_a_canceled_job_leaves_no_results(tmp_path):
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def runner(process, output):
        started.set()
        release.wait(30)
        (output / "result.json").write_text("3")
        done.set()
        return None

    manager = JobManager(tmp_path, runner)
    job_id = manager.create({"process": PROCESS})["id"]
    manager.start(job_id)
    assert started.wait(30)
    assert manager.describe(job_id)["status"] == "running"
    manager.cancel(job_id)
    release.set()
    assert done.wait(30)
    manager.shutdown()
    time.sleep(0.1)
    assert manager.describe(job_id)["status"] == "canceled"
    assert not (tmp_path / job_id / "results").exists()
    assert [e["message"] for e in manager.logs(job_id)["logs"]][-1] == "Job canceled."
    # and it can run again
    manager2 = JobManager(tmp_path, lambda process, output: (output / "r.json").write_text("1"))
    manager2.start(job_id)
    wait(manager2, job_id, "finished")
    assert sorted(manager2.result_files(job_id)) == ["r.json"]
    manager2.shutdown()
