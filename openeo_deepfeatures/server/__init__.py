"""A local openEO API 1.2 backend over the executor: ``deepfeatures serve``.

Needs the ``server`` extra (FastAPI, uvicorn)::

    deepfeatures serve --data ./cubes --jobs ./jobs     # prints the URL and the token

then ``openeo.connect("http://127.0.0.1:8000").authenticate_basic("me", TOKEN)``, or the openEO
Web Editor pointed at the same URL. :func:`create_app` gives the ASGI application itself.
"""

from __future__ import annotations

from typing import Any

from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def create_app(config: ServerConfig | None = None) -> Any:
    """The FastAPI application (imported lazily: FastAPI is an optional dependency)."""
    from .app import create_app as _create

    return _create(config)
