"""Build the wheel as ``pip install .`` does and check it: no setuptools warnings, and exactly
the repository's package files inside (every file git tracks or would track in ``openeo_deepfeatures/``, ``udf/``
and ``process_graphs/``, the latter two as ``openeo_deepfeatures.udf``/``.process_graphs``).

Run by ``.ci/run``. It needs the build requirements of pyproject.toml (setuptools>=77), which
pip fetches into an isolated build environment, so it is not a pytest test (the tests run
offline); ``tests/test_packaging.py`` checks the same configuration statically.

    python scripts/check_wheel.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folders installed under another name ([tool.setuptools.package-dir])
MAPPED = {"udf": "openeo_deepfeatures/udf", "process_graphs": "openeo_deepfeatures/process_graphs"}
# setuptools' warnings: SetuptoolsDeprecationWarning, SetuptoolsWarning, its `_Warning` ...
WARNING = re.compile(r"\b\w*Warning: ")


def source_files() -> list[str]:
    """The files git tracks or would track (not ignored), relative to the repository."""
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def expected_files(sources: list[str]) -> set[str]:
    """The package files the wheel must hold, by their path inside the wheel."""
    files = set()
    for name in sources:
        top, _, rest = name.partition("/")
        if top in MAPPED:
            files.add(f"{MAPPED[top]}/{rest}")
        elif top == "openeo_deepfeatures":
            files.add(name)
    return files


def build_wheel(sources: list[str], folder: Path) -> tuple[Path, str]:
    """Build the wheel from a copy of ``sources`` (no stale ``build/`` folder can leak into
    it) into ``folder``; return it and setuptools' output."""
    tree = folder / "tree"
    for name in sources:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(folder), "."]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        sys.exit(f"building the wheel failed:\n{output[-4000:]}")
    (wheel,) = folder.glob("*.whl")
    return wheel, output


def main() -> int:
    sources = source_files()
    expected = expected_files(sources)
    with tempfile.TemporaryDirectory() as tmp:
        wheel, output = build_wheel(sources, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            held = {n for n in archive.namelist() if ".dist-info/" not in n}
    problems = [line.strip() for line in output.splitlines() if WARNING.search(line)]
    missing = sorted(expected - held)
    extra = sorted(held - expected)
    if missing:
        problems.append(f"files missing from the wheel: {missing}")
    if extra:
        problems.append(f"files in the wheel that are not in the repository: {extra}")
    if problems:
        print(f"{wheel.name}:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{wheel.name}: {len(held)} files, those of the repository; no setuptools warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
