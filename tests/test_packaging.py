"""The wheel holds every subpackage and data file the source tree has.

These check pyproject.toml offline; ``scripts/check_wheel.py`` (run by ``.ci/run``) builds the
wheel itself, which needs setuptools>=77 from the package index.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    """Every folder with files is a listed package: Python imports a folder of data files as a
    namespace package, and setuptools warns that it would ignore such a folder when a
    package-data pattern reaches into it (``encoder/*.onnx``) instead of listing it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {"openeo_deepfeatures": ROOT / "openeo_deepfeatures"}
    roots.update({p: ROOT / f for p, f in config["package-dir"].items()})
    found = {
        ".".join((package, *path.parent.relative_to(folder).parts))
        for package, folder in roots.items()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    for package, folder in config["package-dir"].items():
        assert package in listed and (ROOT / folder / "__init__.py").is_file()


def test_every_data_file_is_listed():
    """Files that are not Python (specs, schemas, models, demo data) need a package-data
    pattern, or a non-editable install (``pip install .``) lacks them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p: ROOT / p.replace(".", "/") for p in config["packages"]}
    folders.update({p: ROOT / f for p, f in config["package-dir"].items()})
    package_folders = {f.resolve() for f in folders.values()}
    unlisted = []
    for package, folder in folders.items():
        patterns = config["package-data"].get(package, [])
        for path in folder.rglob("*"):
            sub = path.relative_to(folder)
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in sub.parts:
                continue
            if any((folder / p).resolve() in package_folders for p in sub.parents[:-1]):
                continue  # in a subpackage: its own patterns apply
            if not any(_matches(sub, pattern) for pattern in patterns):
                unlisted.append(str(path.relative_to(ROOT)))
    assert unlisted == [], f"add to [tool.setuptools.package-data]: {unlisted}"


def _matches(path: Path, pattern: str) -> bool:
    """setuptools' package-data glob: ``*`` does not cross folders."""
    return len(Path(pattern).parts) == len(path.parts) and path.match(pattern)
