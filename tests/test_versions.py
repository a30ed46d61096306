from __future__ import annotations

from importlib import metadata

from openeo_deepfeatures.versions import software_versions


def test_installed_versions_and_missing_ones_skipped():
    got = software_versions(["numpy", "no-such-distribution-xyz"])
    assert got == {"numpy": metadata.version("numpy")}
