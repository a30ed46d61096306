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
