"""What a process graph may read, write and fetch: the execution policy.

One :class:`ExecutionPolicy` object goes with every run of the local executor
(:func:`openeo_deepfeatures.local.run_process_graph`, ``deepfeatures run``, an HTTP backend).
Every file path and URL a graph names goes through it before use:

- :meth:`~ExecutionPolicy.check_read`: a path (or ``file://`` URL) resolved (``..``, symlinks)
  must lie in one of ``read_roots`` (the package's own data is always readable);
- :meth:`~ExecutionPolicy.check_write`: ``save_result`` writes only inside ``write_root``;
- :meth:`~ExecutionPolicy.check_url`: the scheme must be in ``url_schemes`` and every address
  the host resolves to must be public, unless the host is in ``allowed_hosts`` or
  ``allow_private_hosts`` is set;
- :meth:`~ExecutionPolicy.open_url`: fetches a URL, connected to the addresses that were
  checked (no second DNS answer is trusted) and re-checking the target of every redirect.

A refusal raises :class:`~openeo_deepfeatures.errors.PermissionDenied` naming the path or URL
and the setting that would allow it, before anything is read, written or fetched.

The executor also holds graphs to the limits: nodes (``max_nodes``), UDP nesting
(``max_udp_depth``), window extents (``max_window``) and the bytes of an array held at once
(``max_array_bytes``: an in-memory array, one chunk of a lazy one, one window).

``ExecutionPolicy()`` itself is the strict base (the demo data readable, nothing writable,
public ``https`` only); :meth:`ExecutionPolicy.local` is what ``run_process_graph`` uses when
no policy is given (the working directory readable and writable). Code that calls process
functions directly, outside the executor, runs without a policy (:func:`current_policy` is
then :meth:`ExecutionPolicy.unrestricted`).

UDFs (``allow_udf``) run arbitrary Python in this process: the policy decides whether they may
run at all, not what their code does. Keep ``allow_udf=False`` for graphs you do not trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import os
import socket
import ssl
import urllib.error
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

from .errors import PermissionDenied

__all__ = [
    "ExecutionPolicy",
    "PermissionDenied",
    "current_policy",
    "package_roots",
    "use_policy",
]

#: Defaults of the limits (every policy; ``unrestricted()`` lifts them).
DEFAULT_MAX_NODES = 20_000
DEFAULT_MAX_UDP_DEPTH = 32
DEFAULT_MAX_WINDOW = 8192
DEFAULT_MAX_ARRAY_BYTES = 16 * 2**30
#: Redirects :meth:`ExecutionPolicy.open_url` follows (each one checked).
MAX_REDIRECTS = 10
#: The largest document :meth:`ExecutionPolicy.read_url` reads (UDPs, STAC JSON, UDF code).
MAX_DOCUMENT_BYTES = 64 * 2**20

_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNLIMITED = 2**62


@cache
def package_roots() -> tuple[Path, ...]:
    """The package's own data (demo cube, shipped encoder, UDPs): readable under every policy."""
    from importlib import resources

    found = []
    for package in ("openeo_deepfeatures.data", "openeo_deepfeatures.process_graphs"):
        try:
            folder = Path(str(resources.files(package)))
        except ModuleNotFoundError:  # pragma: no cover - a broken install
            continue
        if folder.is_dir():
            found.append(_real(folder))
    return tuple(found)


def _real(path: str | os.PathLike) -> Path:
    """``path`` absolute, ``..`` and every symlink that exists resolved."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _as_path(path: Any) -> Path:
    """A path, a ``file://`` URL or a PathLike as a :class:`Path` (not resolved)."""
    if isinstance(path, os.PathLike):
        return Path(path)
    text = str(path)
    if text.lower().startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise PermissionDenied(
                reason=f"{text!r}: file URLs on another host ({parts.netloc!r}) are not read."
            )
        return Path(url2pathname(unquote(parts.path)))
    return Path(text)


def _roots(paths: Iterable[str | os.PathLike]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in paths:
        real = _real(_as_path(p))
        if real not in out:
            out.append(real)
    return tuple(out)


@dataclass(frozen=True)
class ExecutionPolicy:
    """What a process graph may read, write and fetch, and how large it may be.

    ``read_roots``: folders (or single files) a graph may read, resolved when the policy is
    made; the package's demo data is always readable. ``write_root``: the only folder
    ``save_result`` writes into (and reads back from); ``None``: nothing may be written. ``allow_udf``: whether
    ``run_udf`` may run (arbitrary Python). ``url_schemes``: schemes a graph may fetch (UDP
    namespaces, ``load_stac``, models, UDF code). ``allowed_hosts``: ``host`` or ``host:port``
    entries reachable even on private or loopback addresses, and over plain ``http``.
    ``allow_private_hosts``: reach loopback, private, link-local and reserved addresses.
    Limits: ``max_nodes`` (process-graph nodes, callbacks and UDPs included), ``max_udp_depth``
    (UDPs calling UDPs), ``max_window`` (cells along one dimension of an ``apply_neighborhood``
    window, overlap included), ``max_array_bytes`` (an array in memory, one chunk of a lazy
    array, one window).
    """

    read_roots: tuple[Path, ...] = ()
    write_root: Path | None = None
    allow_udf: bool = True
    url_schemes: tuple[str, ...] = ("https",)
    allowed_hosts: tuple[str, ...] = ()
    allow_private_hosts: bool = False
    max_nodes: int = DEFAULT_MAX_NODES
    max_udp_depth: int = DEFAULT_MAX_UDP_DEPTH
    max_window: int = DEFAULT_MAX_WINDOW
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES

    def __post_init__(self) -> None:
        roots = self.read_roots
        if isinstance(roots, (str, os.PathLike)):
            roots = (roots,)
        object.__setattr__(self, "read_roots", _roots(roots))
        if self.write_root is not None:
            object.__setattr__(self, "write_root", _real(_as_path(self.write_root)))
        schemes = (self.url_schemes,) if isinstance(self.url_schemes, str) else self.url_schemes
        object.__setattr__(self, "url_schemes", tuple(str(s).lower() for s in schemes))
        hosts = (self.allowed_hosts,) if isinstance(self.allowed_hosts, str) else self.allowed_hosts
        object.__setattr__(self, "allowed_hosts", tuple(_host_key(h) for h in hosts))
        for name in ("max_nodes", "max_udp_depth", "max_window", "max_array_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ExecutionPolicy.{name} must be a non-negative integer.")

    # --- constructors ----------------------------------------------------------------------

    @classmethod
    def local(
        cls,
        read_roots: Sequence[str | os.PathLike] | None = None,
        write_root: str | os.PathLike | None = None,
        **settings: Any,
    ) -> ExecutionPolicy:
        """The policy of ``run_process_graph`` without ``policy=``: read ``read_roots``
        (default: the working directory), write into ``write_root`` (default: the working
        directory); URLs, UDFs and limits as in :class:`ExecutionPolicy`."""
        cwd = Path.cwd()
        return cls(
            read_roots=tuple(read_roots) if read_roots is not None else (cwd,),
            write_root=write_root if write_root is not None else cwd,
            **settings,
        )

    @classmethod
    def unrestricted(cls, write_root: str | os.PathLike | None = None) -> ExecutionPolicy:
        """For trusted code: every file readable and (below ``write_root``, default the file
        system root) writable, any URL scheme and host, UDFs, no limits."""
        anchor = Path(Path.cwd().anchor or os.sep)
        return cls(
            read_roots=(anchor,),
            write_root=write_root if write_root is not None else anchor,
            url_schemes=("*",),
            allow_private_hosts=True,
            max_nodes=_UNLIMITED,
            max_udp_depth=_UNLIMITED,
            max_window=_UNLIMITED,
            max_array_bytes=_UNLIMITED,
        )

    def replace(self, **changes: Any) -> ExecutionPolicy:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_read_roots(self, *paths: str | os.PathLike) -> ExecutionPolicy:
        """A copy that may also read ``paths``."""
        return self.replace(read_roots=(*self.read_roots, *paths)) if paths else self

    # --- files -----------------------------------------------------------------------------

    def check_read(self, path: Any, *, what: str = "a graph") -> Path:
        """``path`` (or a ``file://`` URL) resolved, when it lies in a readable folder: one of
        ``read_roots``, the package's data or ``write_root``."""
        real = _real(_as_path(path))
        readable = (*self.read_roots, *package_roots(), *filter(None, [self.write_root]))
        if any(_inside(real, root) for root in readable):
            return real
        roots = [str(r) for r in self.read_roots] or "none but the package's data"
        raise PermissionDenied(
            reason=(
                f"{what} may not read {str(path)!r}"
                + (f" (it resolves to {str(real)!r})" if str(real) != str(path) else "")
                + f": it is outside the readable folders ({roots}). Allow it with "
                "ExecutionPolicy(read_roots=...) (deepfeatures run: --data DIR)."
            )
        )

    def check_write(self, path: Any, *, what: str = "save_result") -> Path:
        """``path`` resolved, when it lies strictly inside ``write_root``."""
        real = _real(_as_path(path))
        root = self.write_root
        if root is None:
            raise PermissionDenied(
                reason=(
                    f"{what} may not write {str(path)!r}: this policy has no writable folder. "
                    "Allow it with ExecutionPolicy(write_root=DIR) or output=DIR "
                    "(deepfeatures run: -o DIR)."
                )
            )
        if real != root and _inside(real, root):
            return real
        raise PermissionDenied(
            reason=(
                f"{what} may not write {str(path)!r}"
                + (f" (it resolves to {str(real)!r})" if str(real) != str(path) else "")
                + f": it is not inside the output folder {str(root)!r}. Write below it, or "
                "choose another ExecutionPolicy(write_root=...) / output= (deepfeatures run: -o DIR)."
            )
        )

    # --- URLs ------------------------------------------------------------------------------

    def check_url(self, url: str, *, what: str = "a graph") -> str:
        """``url`` when its scheme is allowed and every address of its host may be reached."""
        self._addresses(url, what)
        return url

    def _addresses(self, url: str, what: str) -> list[str]:
        """The checked addresses to connect to (``[]``: do not pin, e.g. an allowed host)."""
        text = str(url)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise PermissionDenied(reason=f"{what} may not fetch {text!r}: {exc}.") from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = port or _DEFAULT_PORTS.get(scheme)
        allowed_host = host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts
        scheme_ok = (
            scheme in self.url_schemes
            or "*" in self.url_schemes
            or (allowed_host and scheme in _DEFAULT_PORTS)
        )
        if not scheme_ok:
            raise PermissionDenied(
                reason=(
                    f"{what} may not fetch {text!r}: the scheme {scheme!r} is not allowed "
                    f"(url_schemes={list(self.url_schemes)}). Allow it with "
                    "ExecutionPolicy(url_schemes=...) or its host with allowed_hosts "
                    "(deepfeatures run: --allow-url-host HOST[:PORT], --allow-http)."
                )
            )
        if not host:
            raise PermissionDenied(
                reason=f"{what} may not fetch {text!r}: not an absolute URL with a host."
            )
        if scheme not in _DEFAULT_PORTS:
            return []  # an allowed non-http scheme: read by other libraries, host not pinned
        if allowed_host:
            return []
        try:
            addresses = list(dict.fromkeys(_resolve(host, port)))
        except OSError as exc:
            raise urllib.error.URLError(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise urllib.error.URLError(f"cannot resolve {host!r}")
        if not self.allow_private_hosts:
            bad = [a for a in addresses if not _public(a)]
            if bad:
                raise PermissionDenied(
                    reason=(
                        f"{what} may not fetch {text!r}: {host} resolves to "
                        f"{', '.join(bad)}, a loopback, private, link-local or reserved address. "
                        f"Allow this host with ExecutionPolicy(allowed_hosts=['{host}:{port}']) "
                        "or all of them with allow_private_hosts=True (deepfeatures run: "
                        "--allow-url-host HOST[:PORT], --allow-private-urls)."
                    )
                )
        return addresses

    def open_url(
        self,
        url: str,
        *,
        timeout: float = 30,
        headers: dict[str, str] | None = None,
        what: str = "a graph",
    ) -> http.client.HTTPResponse:
        """GET ``url``; every redirect's target is checked before it is requested.

        Connects to the addresses :meth:`check_url` checked (a second DNS answer cannot
        point it elsewhere). Returns the final :class:`http.client.HTTPResponse` (use it in a
        ``with`` block, as ``urlopen``'s; its ``url`` attribute is the final URL). HTTP errors
        raise :class:`urllib.error.HTTPError`, network errors :class:`OSError`, refusals
        :class:`PermissionDenied`.
        """
        return self._get(str(url), timeout, dict(headers or {}), what)

    def read_url(
        self,
        url: str,
        *,
        timeout: float = 30,
        what: str = "a graph",
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> bytes:
        """The body of ``url`` (:meth:`open_url`), at most ``max_bytes`` of it."""
        with self.open_url(url, timeout=timeout, what=what) as response:
            body = response.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise PermissionDenied(
                reason=f"{what}: {url!r} is larger than {max_bytes:,} bytes, more than a "
                "process graph, STAC document or UDF is read whole."
            )
        return body

    def _get(
        self, url: str, timeout: float, headers: dict[str, str], what: str
    ) -> http.client.HTTPResponse:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            addresses = self._addresses(current, what)
            try:
                response = _request(current, addresses, timeout, headers)
            except http.client.HTTPException as exc:  # a malformed answer
                raise urllib.error.URLError(f"{current!r}: {exc!r}") from None
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                response.close()  # "Connection: close": nothing to drain
                current = urljoin(current, location)
                continue
            if response.status >= 400:
                raise urllib.error.HTTPError(
                    current, response.status, response.reason, response.headers, response
                )
            response.url = current  # type: ignore[attr-defined]
            return response
        raise urllib.error.URLError(f"{url!r}: more than {MAX_REDIRECTS} redirects")

    # --- limits ----------------------------------------------------------------------------

    def check_limit(self, name: str, value: int, what: str) -> None:
        """Refuse when ``value`` exceeds the limit ``name`` (e.g. ``"max_nodes"``)."""
        limit = getattr(self, name)
        if value > limit:
            raise PermissionDenied(
                reason=(
                    f"{what}: {value:,} exceeds the limit {name}={limit:,}. Allow it with "
                    f"ExecutionPolicy({name}=...)."
                )
            )


def _host_key(entry: str) -> str:
    """An ``allowed_hosts`` entry as ``host`` or ``host:port``, lower case, IPv6 unbracketed."""
    text = str(entry).strip().lower()
    if "://" in text:
        parts = urlsplit(text)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
    if text.startswith("["):  # [::1]:8000
        host, _, rest = text[1:].partition("]")
        return f"{host}{rest}" if rest.startswith(":") else host
    return text


def _resolve(host: str, port: int | None) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%")[0] for info in infos]


def _public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _request(
    url: str, addresses: list[str], timeout: float, headers: dict[str, str]
) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[scheme]
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if addresses:
        conn._create_connection = _pinned(addresses)  # type: ignore[attr-defined]
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    try:
        conn.request(
            "GET",
            target,
            headers={
                "User-Agent": "openeo-deepfeatures",
                "Accept-Encoding": "identity",
                "Connection": "close",
                **headers,
            },
        )
        return conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _pinned(addresses: list[str]):
    """``socket.create_connection`` to the checked addresses instead of a fresh DNS answer."""

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        error: OSError | None = None
        for ip in addresses:
            try:
                return socket.create_connection((ip, address[1]), *args, **kwargs)
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    return connect


# --- the policy of the running graph ------------------------------------------------------

_current: ContextVar[ExecutionPolicy | None] = ContextVar("deepfeatures_policy", default=None)


def current_policy() -> ExecutionPolicy:
    """The policy of the graph being run; :meth:`ExecutionPolicy.unrestricted` outside one."""
    policy = _current.get()
    return policy if policy is not None else _unrestricted()


@cache
def _unrestricted() -> ExecutionPolicy:
    return ExecutionPolicy.unrestricted()


@contextlib.contextmanager
def use_policy(policy: ExecutionPolicy | None) -> Iterator[ExecutionPolicy | None]:
    """Make ``policy`` the current one inside the block (``None``: leave it as it is)."""
    if policy is None:
        yield current_policy()
        return
    token = _current.set(policy)
    try:
        yield policy
    finally:
        _current.reset(token)
