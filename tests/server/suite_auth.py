"""pytest plugin for openeo-test-suite runs against ``deepfeatures serve``.

Two adaptations, nothing else. The request payloads of ``tests/general`` are read from
``OPENEO_TEST_SUITE_PAYLOADS`` (an absolute folder: the suite's own guess is a relative path,
which its ``load_payloads_from_directory`` then joins twice). The suite's ``tests/general`` gets its bearer token from ``authenticate_oidc()``; this backend
has one local user with HTTP Basic instead, so the token comes from ``/credentials/basic``
(user and password from ``OPENEO_AUTH_BASIC_USERNAME``/``_PASSWORD``, the variables the suite's
own ``connection`` fixture reads for basic auth).
"""

from __future__ import annotations

import os
from pathlib import Path

import openeo
import pytest


def pytest_configure(config: pytest.Config) -> None:
    from openeo_test_suite.lib import compliance_util
    from openeo_test_suite.lib.backend_under_test import get_backend_url

    def basic_token(pytestconfig: pytest.Config) -> str:
        con = openeo.connect(get_backend_url(pytestconfig), auto_validate=False)
        con.authenticate_basic(
            os.environ["OPENEO_AUTH_BASIC_USERNAME"], os.environ["OPENEO_AUTH_BASIC_PASSWORD"]
        )
        return con.auth.bearer

    compliance_util.get_access_token = basic_token
    compliance_util.get_examples_path = lambda: Path(os.environ["OPENEO_TEST_SUITE_PAYLOADS"])
