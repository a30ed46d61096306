"""openeo-python-driver serves our UDPs (process_graphs/*.json) as predefined processes.

openeo-driver pins an older pystac than openeo-deepfeatures needs, so it lives in its own
virtual environment: ``.venv-driver`` at the repository root (or ``$DEEPFEATURES_DRIVER_VENV``),
built by ``scripts/setup_test_tools.sh`` (README command 2, ``.ci/run``); the tests install
nothing and fail, naming that script, where it is missing. The check itself is
``check_driver.py``, run with that environment's python; these tests assert on its report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from openeo_deepfeatures.processes import PROCESS_IDS

DRIVER_VERSION = "0.136.0a4"
REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("check_driver.py")
VENV = Path(os.environ.get("DEEPFEATURES_DRIVER_VENV", REPO / ".venv-driver"))
SETUP = REPO / "scripts" / "setup_test_tools.sh"
INSTALL_HINT = f"run `bash scripts/setup_test_tools.sh` (builds {VENV} with openeo-driver)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed_driver(venv: Path) -> str | None:
    python = _python(venv)
    if not python.is_file():
        return None
    probe = "import importlib.metadata as m, openeo_driver; print(m.version('openeo-driver'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300)
    return result.stdout.strip() if result.returncode == 0 else None


def test_setup_script_installs_the_tested_version():
    """The script that builds the environment pins the version these tests expect."""
    pinned = re.search(r'^driver_version="([^"]+)"', SETUP.read_text("utf-8"), flags=re.M)
    assert pinned is not None and pinned[1] == DRIVER_VERSION


@pytest.fixture(scope="module")
def driver_python() -> Path:
    """The python of the virtual environment with openeo-driver==DRIVER_VERSION."""
    installed = _installed_driver(VENV)
    if installed is None:
        pytest.fail(f"no openeo-driver environment at {VENV}: {INSTALL_HINT}")
    if installed != DRIVER_VERSION:
        pytest.fail(f"{VENV} holds openeo-driver {installed}, not {DRIVER_VERSION}: {INSTALL_HINT}")
    return _python(VENV)


def check(python: Path, folder: Path) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [python, SCRIPT, folder], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check_driver.py printed no report (rc {result.returncode}):\n{result.stderr}")
    return result.returncode, report, result.stderr


def test_driver_serves_our_udps_as_predefined_processes(driver_python):
    folder = REPO / "process_graphs"
    udps = {p.stem: json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))}
    assert set(PROCESS_IDS) <= set(udps), "process_graphs/ lacks UDPs of our processes"
    rc, report, stderr = check(driver_python, folder)

    assert report["openeo_driver"] == DRIVER_VERSION
    assert sorted(report["udps"]) == sorted(udps)
    # GET /processes lists each UDP with its full metadata (equal to the JSON file) ...
    assert report["processes"]["status"] == 200
    assert report["processes"]["count"] > 100  # the driver's own processes are there too
    for pid in udps:
        assert report["processes"]["checks"][pid]["equal"], (pid, report["processes"]["checks"])
        # ... and so do GET /processes/deepfeatures and /processes/deepfeatures/<id>
        assert report["namespace_listing"]["checks"][pid]["equal"], pid
        assert report["process_details"][pid] == {
            "status": 200,
            "listed": True,
            "equal": True,
            "missing_keys": [],
            "differing_keys": [],
        }
    assert report["namespace_listing"]["ids"] == sorted(udps)
    # POST /validation: each UDP by plain id and by namespace, and the whole chain
    for pid in udps:
        assert report["validation"][pid] == {"plain": [], "deepfeatures": []}, pid
    assert report["chain"]["errors"] == []
    # the validation does refuse what is wrong
    assert [e["code"] for e in report["negative"]["unknown_process"]] == ["ProcessUnsupported"]
    missing = report["negative"]["missing_parameter"]
    assert [e["code"] for e in missing["errors"]] == ["ProcessParameterRequired"]
    assert "'data'" in missing["errors"][0]["message"]
    assert report["ok"] is True and rc == 0, stderr


def _udp(process_id: str, inner: str) -> dict[str, Any]:
    return {
        "id": process_id,
        "summary": "Test UDP",
        "description": "Scales a cube linearly.",
        "parameters": [
            {
                "name": "data",
                "description": "A cube.",
                "schema": {"type": "object", "subtype": "datacube"},
            },
            {
                "name": "factor",
                "description": "Scale.",
                "schema": {"type": "number"},
                "default": 2,
                "optional": True,
            },
        ],
        "returns": {"description": "A cube.", "schema": {"type": "object", "subtype": "datacube"}},
        "process_graph": {
            "scale": {
                "process_id": "apply",
                "arguments": {
                    "data": {"from_parameter": "data"},
                    "process": {
                        "process_graph": {
                            "m": {
                                "process_id": "multiply",
                                "arguments": {"x": {"from_parameter": "x"}, "y": 2},
                                "result": True,
                            }
                        }
                    },
                },
            },
            "out": {
                "process_id": inner,
                "arguments": {"data": {"from_node": "scale"}, "bands": ["B04"]},
                "result": True,
            },
        },
    }


def test_driver_check_fails_for_a_broken_udp(driver_python, tmp_path):
    """The check is no rubber stamp: a UDP calling an unknown process fails validation."""
    for pid, inner in [("test_good", "filter_bands"), ("test_broken", "no_such_process")]:
        (tmp_path / f"{pid}.json").write_text(json.dumps(_udp(pid, inner)))
    rc, report, _ = check(driver_python, tmp_path)
    assert rc == 1 and report["ok"] is False
    assert report["processes"]["checks"]["test_good"]["equal"]
    assert report["processes"]["checks"]["test_broken"]["equal"]
    assert report["validation"]["test_good"] == {"plain": [], "deepfeatures": []}
    for errors in report["validation"]["test_broken"].values():
        assert [e["code"] for e in errors] == ["ProcessUnsupported"]
        # openeo-driver's apply_process takes the inner ProcessUnsupported for its own and
        # names the UDP, not the unknown process inside it
        assert "'test_broken'" in errors[0]["message"]
    assert "chain" not in report
