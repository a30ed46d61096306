"""openEO API errors of the HTTP layer, and their JSON bodies.

Executor errors (:class:`~openeo_deepfeatures.errors.OpenEOError` and its leaves) already carry
their openEO ``code`` and HTTP ``status_code``; the classes here add what only a server can get
wrong (authentication, unknown jobs, a job in the wrong state). :func:`error_body` writes the
openEO error object: ``id`` (logged with the error), ``code``, ``message``, ``links``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import OpenEOError

__all__ = [
    "AuthenticationRequired",
    "BadRequest",
    "CredentialsInvalid",
    "FormatUnsupported",
    "JobLocked",
    "JobNotFinished",
    "JobNotFound",
    "NotFound",
    "ProcessGraphMissing",
    "ProcessGraphNotFound",
    "TokenInvalid",
    "error_body",
]


class AuthenticationRequired(OpenEOError):
    code = "AuthenticationRequired"
    status_code = 401
    message = "Unauthorized: {reason}"


class TokenInvalid(OpenEOError):
    code = "TokenInvalid"
    status_code = 403
    message = "Authorization token has expired or is invalid. Please authenticate again."


class CredentialsInvalid(OpenEOError):
    code = "CredentialsInvalid"
    status_code = 403
    message = "Credentials are not correct."


class BadRequest(OpenEOError):
    code = "BadRequest"
    status_code = 400
    message = "The request is invalid: {reason}"


class NotFound(OpenEOError):
    code = "NotFound"
    status_code = 404
    message = "Resource not found: {reason}"


class JobNotFound(OpenEOError):
    code = "JobNotFound"
    status_code = 404
    message = "The batch job '{job_id}' does not exist."


class JobNotFinished(OpenEOError):
    code = "JobNotFinished"
    status_code = 400
    message = "Batch job '{job_id}' has not finished computing the results yet (status: {status})."


class JobLocked(OpenEOError):
    code = "JobLocked"
    status_code = 400
    message = "Batch job '{job_id}' is {status}: it can't be modified now."


class ProcessGraphMissing(OpenEOError):
    code = "ProcessGraphMissing"
    status_code = 400
    message = "No valid process graph specified: {reason}"


class ProcessGraphNotFound(OpenEOError):
    code = "ProcessGraphNotFound"
    status_code = 404
    message = "Process graph '{process_graph_id}' does not exist."


class FormatUnsupported(OpenEOError):
    code = "FormatUnsupported"
    status_code = 400
    message = "Output format not supported: {reason}"


def error_body(exc: OpenEOError, error_id: str | None = None) -> dict[str, Any]:
    """The openEO error object of ``exc``: ``id``, ``code``, ``message`` (with the node), links."""
    message = Exception.__str__(exc)
    if exc.node_id:
        message += f" (process graph node '{exc.node_id}')"
    return {
        "id": error_id or uuid.uuid4().hex,
        "code": exc.code,
        "message": message,
        "links": [],
    }
