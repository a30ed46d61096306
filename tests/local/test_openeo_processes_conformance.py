"""The official openEO process tests, run through our local executor.

Every test case of ``../shared/openeo-processes/tests/*.json5`` (the process selection the
``openeo-test-suite`` runs by default: all non-experimental processes) is run by the suite's
own ``test_process`` with :class:`~tests.local.conformance_runner.LocalExecutorRunner` as the
backend. Cases in ``conformance_expected_failures.txt`` are strict xfails: a new failure fails
the suite, and so does a listed case that now passes (remove it from the list, or regenerate
the list with ``python -m tests.local.conformance_runner --update``).
"""

from __future__ import annotations

import copy
import os
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from openeo_test_suite.lib import process_selection
from openeo_test_suite.lib.process_registry import ProcessRegistry
from openeo_test_suite.lib.skipping import Skipper

from .conformance_runner import (
    EXPECTED_FAILURES,
    SPECS,
    UPSTREAM_ENV,
    LocalExecutorRunner,
    read_expected_failures,
)

MISSING = (
    f"The official openEO process specs and tests are missing: expected {SPECS} "
    "(the openeo-processes repository, with tests/*.json5, beside this repository in ../shared)."
)


def _load_suite() -> tuple[ModuleType | None, list[str]]:
    """The suite's test module and the selected process ids, reading the specs in SPECS.

    The suite finds its specs through ``ProcessRegistry._guess_root`` and a process filter
    that its pytest plugin sets; both are patched only while its module is imported (which
    reads the specs; the selection is cached from then on).
    """
    if not (SPECS / "tests").is_dir():
        return None, []
    filters = process_selection._process_filters or process_selection.ProcessFilters()
    with (
        mock.patch.object(process_selection, "_process_filters", filters),
        mock.patch.object(ProcessRegistry, "_guess_root", lambda self: SPECS),
    ):
        from openeo_test_suite.tests.processes.processing import test_example

        selected = process_selection.get_selected_processes()
    return test_example, [p.process_id for p in selected]


SUITE, SELECTED = _load_suite()
EXPECTED = read_expected_failures()


def _cases() -> list[Any]:
    if SUITE is None:
        return [pytest.param(None, None, None, None, None, id="specs-missing")]
    cases = []
    for process in process_selection.get_selected_processes():
        # $ref assets are relative to the JSON5 test file (tests/assets/...)
        file = SPECS / "tests" / f"{process.process_id}.json5"
        for i, test in enumerate(process.tests):
            case_id = f"{process.process_id}-{i}"
            marks = (
                [pytest.mark.xfail(strict=True, reason=f"listed in {EXPECTED_FAILURES.name}")]
                if case_id in EXPECTED
                else []
            )
            cases.append(
                pytest.param(
                    process.process_id,
                    test,
                    file,
                    test.get("level", process.level),
                    test.get("experimental", process.experimental),
                    id=case_id,
                    marks=marks,
                )
            )
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def connection() -> LocalExecutorRunner:
    if os.environ.get(UPSTREAM_ENV) == "1":  # the plain openeo-processes-dask runner
        from openeo_test_suite.lib.process_runner.dask import Dask

        return Dask()
    return LocalExecutorRunner()


@pytest.fixture
def skipper(connection: LocalExecutorRunner) -> Skipper:
    return Skipper(connection=connection, selected_processes=SELECTED)


@pytest.mark.parametrize(("process_id", "example", "file", "level", "experimental"), CASES)
def test_official_case(connection, skipper, process_id, example, file, level, experimental):
    if SUITE is None:
        pytest.fail(MISSING)
    # the suite rewrites parts of the example in place while checking: give it a copy
    SUITE.test_process(
        connection, process_id, copy.deepcopy(example), file, level, experimental, skipper
    )


def test_expected_failures_are_known_cases():
    if SUITE is None:
        pytest.fail(MISSING)
    known = {case.id for case in CASES}
    stale = sorted(EXPECTED - known)
    assert not stale, f"{EXPECTED_FAILURES.name} lists cases that do not exist: {stale}"
    assert len(known) > 900, f"only {len(known)} official test cases found in {SPECS}"
