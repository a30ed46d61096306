#!/usr/bin/env bash
# What the tests need besides the Python extras (README command 2 and .ci/run run this; the
# tests themselves install nothing and fail, naming this script, where a tool is missing):
# - webeditor/node_modules: the Web Editor's validator (@openeo/js-processgraphs) and the openEO
#   JS client (needs Node.js >= 18 and npm);
# - .venv-driver (or $DEEPFEATURES_DRIVER_VENV): openeo-driver for tests/driver in its own virtual
#   environment, as it pins an older pystac than ours. Kept while it holds the pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --prefix webeditor

driver_version="0.136.0a4"  # tests/driver/test_openeo_driver.py: DRIVER_VERSION
venv="${DEEPFEATURES_DRIVER_VENV:-.venv-driver}"
probe="import importlib.metadata as m, openeo_driver; print(m.version('openeo-driver'))"
if [ "$("$venv/bin/python" -c "$probe" 2>/dev/null)" != "$driver_version" ]; then
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
        echo "$venv exists and is not a virtual environment: remove it or move it" >&2
        exit 1
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    echo '*' > "$venv/.gitignore"  # keep it out of git, wherever it is
    "$venv/bin/python" -m pip install --quiet "openeo-driver==$driver_version"
fi
