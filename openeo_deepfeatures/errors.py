"""Exceptions named after openEO error codes.

One root, :class:`OpenEOError`; each leaf carries the openEO ``code``, an HTTP-like
``status_code`` and a message template filled from keyword arguments, following the openEO
API's error list (and openeo-python-driver's ``errors.py``). Leaf classes that refine a standard
openEO code (``BandMissing``, ``IndexUnknown``, ``FormulaInvalid``) subclass the standard one,
so ``except ProcessParameterInvalid`` catches them too.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BandMissing",
    "CollectionNotFound",
    "DataCubePropertiesImmutable",
    "DimensionNotAvailable",
    "FeatureUnsupported",
    "FileContentInvalid",
    "FileNotFound",
    "FormulaInvalid",
    "IndexUnknown",
    "InvalidRuntime",
    "InvalidVersion",
    "NoDataAvailable",
    "OpenEOError",
    "PermissionDenied",
    "ProcessGraphInvalid",
    "ProcessParameterInvalid",
    "ProcessParameterMissing",
    "ProcessUnsupported",
    "TemporalExtentEmpty",
]


class OpenEOError(Exception):
    """Root of all errors raised by openeo-deepfeatures."""

    code: ClassVar[str] = "Internal"
    status_code: ClassVar[int] = 500
    message: ClassVar[str] = "{reason}"

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        self.node_id: str | None = None  # set by the executor: the process-graph node that failed
        text = message if message is not None else self.message.format(**fields)
        super().__init__(text)

    def __str__(self) -> str:
        where = f" (process graph node '{self.node_id}')" if self.node_id else ""
        return f"[{self.code}] {super().__str__()}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The error as an openEO API error object (``code`` and ``message``)."""
        return {"code": self.code, "message": Exception.__str__(self)}


class ProcessParameterInvalid(OpenEOError):
    code = "ProcessParameterInvalid"
    status_code = 400
    message = (
        "The value passed for parameter '{parameter}' in process '{process}' is invalid: {reason}"
    )


class ProcessParameterMissing(OpenEOError):
    code = "ProcessParameterMissing"
    status_code = 400
    message = "Process '{process}' parameter '{parameter}' is missing."


class DimensionNotAvailable(OpenEOError):
    code = "DimensionNotAvailable"
    status_code = 400
    message = "A dimension with the specified name does not exist: {reason}"


class BandMissing(ProcessParameterInvalid):
    code = "BandMissing"
    message = "Process '{process}': the data cube lacks bands needed: {reason}"


class IndexUnknown(ProcessParameterInvalid):
    code = "IndexUnknown"
    message = "Process '{process}': unknown spectral index {reason}"


class FormulaInvalid(ProcessParameterInvalid):
    code = "FormulaInvalid"
    message = "Formula {name!r} is invalid: {reason}"


class ProcessGraphInvalid(OpenEOError):
    code = "ProcessGraphInvalid"
    status_code = 400
    message = "Invalid process graph specified: {reason}"


class ProcessUnsupported(OpenEOError):
    code = "ProcessUnsupported"
    status_code = 400
    message = "Process with identifier '{process}' is not available in namespace '{namespace}'."


class CollectionNotFound(OpenEOError):
    code = "CollectionNotFound"
    status_code = 404
    message = "Collection '{collection}' does not exist."


class NoDataAvailable(OpenEOError):
    code = "NoDataAvailable"
    status_code = 400
    message = "There is no data available for the given extents: {reason}"


class FileNotFound(OpenEOError):
    code = "FileNotFound"
    status_code = 404
    message = "File '{file}' does not exist."


class FileContentInvalid(OpenEOError):
    code = "FileContentInvalid"
    status_code = 400
    message = "File '{file}' cannot be read: {reason}"


class FeatureUnsupported(OpenEOError):
    code = "FeatureUnsupported"
    status_code = 501
    message = "Unsupported feature: {reason}"


class DataCubePropertiesImmutable(OpenEOError):
    code = "DataCubePropertiesImmutable"
    status_code = 400
    message = "The dimension properties (name, type, labels, reference system and resolution) must remain unchanged: {reason}"


class InvalidRuntime(OpenEOError):
    code = "InvalidRuntime"
    status_code = 400
    message = "The specified UDF runtime is not supported: {reason}"


class InvalidVersion(OpenEOError):
    code = "InvalidVersion"
    status_code = 400
    message = "The specified UDF runtime version is not supported: {reason}"


class TemporalExtentEmpty(ProcessParameterInvalid):
    code = "TemporalExtentEmpty"
    message = "The temporal extent is empty. The second instant in time must always be greater/later than the first instant in time: {reason}"


class PermissionDenied(OpenEOError):
    """The execution policy forbids what the process graph asks for.

    The message names the offending path, URL or limit and the policy setting that would allow
    it (:class:`openeo_deepfeatures.policy.ExecutionPolicy`). Nothing was read, written or
    fetched for the refused request.
    """

    code = "PermissionDenied"
    status_code = 403
    message = "Permission denied: {reason}"
