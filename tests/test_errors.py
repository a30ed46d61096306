"""The exception hierarchy follows openEO error codes."""

from __future__ import annotations

import pytest

from openeo_deepfeatures import errors


def test_codes_and_messages():
    exc = errors.ProcessParameterInvalid(process="p", parameter="x", reason="bad.")
    assert exc.code == "ProcessParameterInvalid"
    assert exc.status_code == 400
    assert (
        str(exc)
        == "[ProcessParameterInvalid] The value passed for parameter 'x' in process 'p' is invalid: bad."
    )
    assert exc.to_dict() == {
        "code": "ProcessParameterInvalid",
        "message": str(exc)[len("[ProcessParameterInvalid] ") :],
    }


@pytest.mark.parametrize("cls", [errors.BandMissing, errors.IndexUnknown, errors.FormulaInvalid])
def test_refinements_are_parameter_errors(cls):
    assert issubclass(cls, errors.ProcessParameterInvalid)
    assert cls.code == cls.__name__


def test_single_root():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.OpenEOError)
    assert errors.CollectionNotFound(collection="X").status_code == 404
