"""Our local executor as an ``openeo-test-suite`` process-test runner, and the list updater.

The official openEO process tests (``../shared/openeo-processes/tests/*.json5``) are run by
:mod:`tests.local.test_openeo_processes_conformance` through :class:`LocalExecutorRunner`.
Each test case becomes a one-node process graph that :func:`run_process_graph` evaluates, as a
backend would receive it: JSON arguments stay literal in the graph (so our argument checks
apply), child process graphs stay JSON (so our callback evaluation applies), and datacubes
are passed as xarray objects.

Regenerate the expected-failures list (after a fix, or when ../shared changes), or count
what the suite's plain openeo-processes-dask runner passes on the same cases::

    python -m tests.local.conformance_runner --update
    python -m tests.local.conformance_runner --upstream
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array
import pytest
import xarray as xr
from openeo_test_suite.lib.process_runner.base import ProcessTestRunner
from openeo_test_suite.lib.process_runner.util import (
    datacube_to_xarray,
    numpy_to_native,
    xarray_to_datacube,
)

from openeo_deepfeatures.local import Registry, default_registry, run_process_graph

__all__ = [
    "EXPECTED_FAILURES",
    "SPECS",
    "UPSTREAM_ENV",
    "LocalExecutorRunner",
    "main",
    "read_expected_failures",
]

HERE = Path(__file__).resolve().parent
SPECS = HERE.parents[2] / "shared" / "openeo-processes"  # ../shared beside the repository
EXPECTED_FAILURES = HERE / "conformance_expected_failures.txt"
TEST_MODULE = HERE / "test_openeo_processes_conformance.py"
UPSTREAM_ENV = "ODF_CONFORMANCE_UPSTREAM"  # "1": run the suite's plain openeo-processes-dask runner

_HEADER = """\
# Official openEO process tests (../shared/openeo-processes/tests/*.json5) that our local
# executor fails today. Each one is an xfail(strict=True) in test_openeo_processes_conformance:
# a failure not listed here, or a listed test that now passes, fails the suite.
# Regenerate with:  python -m tests.local.conformance_runner --update
"""


class LocalExecutorRunner(ProcessTestRunner):
    """Runs one process with its test arguments through ``run_process_graph``."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or default_registry()
        self._specs = list(self.registry.specs())

    def list_processes(self) -> list[Mapping[str, Any]]:
        return self._specs

    def execute(self, id: str, arguments: dict[str, Any]) -> Any:
        # a process graph holds JSON only: cubes and labeled arrays come in as parameters
        parameters: dict[str, Any] = {}
        node = {"process_id": id, "arguments": _parameterise(arguments, parameters), "result": True}
        graph = {"process_graph": {"run": node}}
        return run_process_graph(graph, parameters=parameters, registry=self.registry)

    def encode_process_graph(
        self, process: dict[str, Any], parent_process_id: str | None = None, parent_parameter=None
    ) -> dict[str, Any]:
        return process  # stays JSON: the executor turns it into a callback

    def encode_datacube(self, data: dict[str, Any]) -> Any:
        return datacube_to_xarray(data)

    def encode_labeled_array(self, data: dict[str, Any]) -> xr.DataArray:
        # openeo-processes-dask's labeled arrays: one dimension "labels" with the keys
        keys = [item["key"] for item in data["data"]]
        values = [item["value"] for item in data["data"]]
        return xr.DataArray(values, dims=["labels"], coords={"labels": keys})

    def decode_data(self, data: Any, expected: Any) -> Any:
        if isinstance(data, dask.array.Array):
            data = data.compute()
        labeled = isinstance(expected, Mapping) and expected.get("type") == "labeled-array"
        if labeled and isinstance(data, xr.DataArray) and data.dims == ("labels",):
            keys, values = data["labels"].values.tolist(), data.values.tolist()
            items = [{"key": k, "value": v} for k, v in zip(keys, values, strict=True)]
            return {"type": "labeled-array", "data": items}
        return xarray_to_datacube(numpy_to_native(data, expected))

    def get_nodata_value(self) -> Any:
        return float("nan")


def _parameterise(value: Any, parameters: dict[str, Any]) -> Any:
    """``value`` with every non-JSON part replaced by a ``from_parameter`` reference."""
    if isinstance(value, Mapping):
        return {k: _parameterise(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_parameterise(v, parameters) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    name = f"value{len(parameters)}"
    parameters[name] = value
    return {"from_parameter": name}


def read_expected_failures(path: Path = EXPECTED_FAILURES) -> set[str]:
    if not path.is_file():
        return set()
    lines = (line.strip() for line in path.read_text("utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("#")}


class _Outcomes:
    """A pytest plugin that records what each conformance case really did."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.passed: set[str] = set()
        self.skipped: set[str] = set()

    @staticmethod
    def _case(nodeid: str) -> str | None:
        if "[" not in nodeid or "test_official_case" not in nodeid:
            return None
        return nodeid[nodeid.index("[") + 1 : -1]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = self._case(report.nodeid)
        if case is None or (report.when != "call" and report.passed):
            return
        if hasattr(report, "wasxfail") and report.skipped:
            self.failed.add(case)  # an expected failure: still a failure
        elif report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
            self.passed.add(case)
        elif report.failed:
            self.failed.add(case)
        elif report.skipped:
            self.skipped.add(case)
        else:
            self.passed.add(case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--update", action="store_true", help=f"rewrite {EXPECTED_FAILURES.name} from this run"
    )
    parser.add_argument(
        "--upstream",
        action="store_true",
        help="run the suite's plain openeo-processes-dask runner instead (the baseline)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    if args.update and (pytest_args or args.upstream):
        parser.error("--update records a full run of our executor: use it alone")
    if not (SPECS / "tests").is_dir():
        print(f"no official tests in {SPECS}: nothing to run", file=sys.stderr)
        return 2
    if args.upstream:
        os.environ[UPSTREAM_ENV] = "1"
    outcomes = _Outcomes()
    command = [str(TEST_MODULE), "-q", "-rfE", "-p", "no:cacheprovider", *pytest_args]
    code = pytest.main(command, [outcomes])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        print(f"pytest ended with {code!r}: nothing recorded", file=sys.stderr)
        return int(code)
    runner = "plain openeo-processes-dask" if args.upstream else "local executor"
    print(
        f"official openEO process tests, {runner}: {len(outcomes.passed)} passed, "
        f"{len(outcomes.failed)} failed, {len(outcomes.skipped)} skipped"
    )
    if args.update:
        body = "".join(f"{case}\n" for case in sorted(outcomes.failed))
        EXPECTED_FAILURES.write_text(_HEADER + body, "utf-8")
        print(f"wrote {len(outcomes.failed)} expected failures to {EXPECTED_FAILURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
