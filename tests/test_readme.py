"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})  # our own README, not user input


def test_first_two_commands():
    lines = README.read_text("utf-8").split("```bash\n", 1)[1].splitlines()
    assert lines[0].startswith("pip install . && deepfeatures demo")
    # torch pinned first (CPU wheel), then the test and train extras, as .ci/run does
    assert lines[1].startswith('pip install torch==2.13.0 && pip install -e ".[test,train]"')
    assert "&& python -m pytest" in lines[1]
    # the tools the tests need (npm packages, the openeo-driver venv) come from one script
    assert "&& bash scripts/setup_test_tools.sh &&" in lines[1]


def test_ci_installs_only_what_the_readme_commands_install():
    """.ci/run runs README commands 1 and 2: each install it does is in them (the pip upgrade
    of its fresh venv aside)."""
    commands = README.read_text("utf-8").split("```bash\n", 1)[1].splitlines()[:2]
    ci = (README.parent / ".ci" / "run").read_text("utf-8").splitlines()
    installs = [
        re.sub(r"^python -m |--quiet ", "", line.strip())
        for line in ci
        if re.search(r"pip install|npm |setup_test_tools", line) and not line.startswith("#")
    ]
    installs.remove("pip install --upgrade pip")
    assert installs
    for install in installs:
        assert any(install in command for command in commands), install
