"""What every request passes before a route sees it: the Host it names, the Origin of a state-changing one,
and the size of its body, checked while it is read (a lying or missing Content-Length too) and before the
key, so a 100 MB body with no key costs nothing.

Written as one small ASGI middleware rather than Starlette's TrustedHostMiddleware: that one answers a
plain-text 400 and knows nothing of Origin, and here every refusal is this API's JSON error with its reason.
Keys travel in headers only (never cookies), so a web page that gets past these checks still has no key.
HostGuard is the same Host rule for the Streamlit app (app.py), which Streamlit itself does not check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UPLOAD = re.compile(r"^/v1/collections/[^/]+/documents/?$")


class BodyTooLarge(StarletteHTTPException):
    """Raised from the body's reader; an HTTPException so that FastAPI's body parsing lets it through."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(413, f"the {what} is over {limit / 1e6:g} MB; the limit is set by "
                         + ("serve --upload-limit-mb" if what == "upload" else "RAG_MAX_REQUEST_MB"))


@dataclass(frozen=True)
class ServedHosts:
    """The Host names a server answers (None: any) and the names an operator configured (RAG_ALLOWED_HOSTS).
    One recipe for the API (RequestGuard) and the app (HostGuard, served by app.py), so the two never differ."""

    names: frozenset[str] | None
    configured: frozenset[str] = frozenset()

    def host_refusal(self, host_header: str) -> str | None:
        """Why a request naming ``host_header`` is refused (a DNS-rebinding page names its own); None when served."""
        host = host_of(host_header)
        if self.names is None or host in self.names:
            return None
        return (f"this server does not serve the host '{host or '(none)'}': add it to RAG_ALLOWED_HOSTS if it is one "
                "of this server's names")

    def origin_refusal(self, origin: str, host_header: str, scheme: str) -> str | None:
        """Why a web page at ``origin`` may not change anything here; None when it is this server's own page (the
        same scheme, name and port as the request's Host) or on a configured name. A loopback name on another port
        is another program's page, not ours."""
        if self.names is None or origin_key(origin) == origin_key(f"{scheme}://{host_header}"):
            return None
        if host_of(origin) in self.configured:
            return None
        return (f"requests from the web page origin '{origin}' are refused: add its host to RAG_ALLOWED_HOSTS if "
                "that page is yours")


def allowed_host_names(extra: str, bind_host: str) -> ServedHosts:
    """The Host names served: loopback, the bound address, RAG_ALLOWED_HOSTS (any, when that says '*')."""
    configured = {name.strip().lower().strip("[]") for name in extra.split(",")} - {""}
    if "*" in configured:
        return ServedHosts(None)
    bound = {bind_host.strip().lower().strip("[]")} - {"", "0.0.0.0", "::"}
    return ServedHosts(LOOPBACK_NAMES | bound | configured, frozenset(configured - LOOPBACK_NAMES))


def host_of(value: str) -> str:
    """The name in a Host header or an Origin (no port, no brackets), lowercased."""
    value = value.strip().lower()
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_header(scope: Scope) -> str:
    """The request's one Host header; two or more are joined, so that no single one of them is served (a server
    behind it might read the other)."""
    return ", ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host")


def origin_key(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, name, port) of an origin, the scheme's default port filled in; None when it does not parse."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return None
    return (parts.scheme.replace("ws", "http", 1), parts.hostname or "", port) if parts.hostname else None


class RequestGuard:
    def __init__(self, app: ASGIApp, *, hosts: ServedHosts, body_limit: int, upload_limit: int) -> None:
        self.app, self.hosts, self.body_limit, self.upload_limit = app, hosts, body_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        headers["host"] = host_header(scope)
        refusal = self._refusal(scope["method"], headers, scope.get("scheme", "http"))
        if refusal is not None:
            await _send_error(send, *refusal)
            return
        upload = scope["method"] == "POST" and bool(_UPLOAD.match(scope["path"]))
        limit, what = (self.upload_limit, "upload") if upload else (self.body_limit, "request body")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _send_error(send, 413, str(BodyTooLarge(limit, what).detail), "request_too_large")
            return
        await self.app(scope, _limited(receive, limit, what), send)

    def _refusal(self, method: str, headers: dict[str, str], scheme: str) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if (why := self.hosts.host_refusal(host)) is not None:
            return 403, why, "forbidden_host"
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None:
            if (why := self.hosts.origin_refusal(origin, host, scheme)) is not None:
                return 403, why, "forbidden_origin"
        return None


class HostGuard:
    """The Host check alone, for every HTTP request and websocket handshake of a server that has no other guard
    (the Streamlit app): a refused page gets a plain 403 sentence, a refused websocket is closed before it opens
    (the client sees 403), so nothing of the app runs for a name that is not this server's."""

    def __init__(self, app: ASGIApp, *, hosts: Callable[[], ServedHosts]) -> None:
        self.app, self._hosts_of, self._hosts = app, hosts, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._hosts is None:  # read on the first request, once the server's own configuration is loaded
            self._hosts = self._hosts_of()
        why = self._hosts.host_refusal(host_header(scope))
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
        else:
            body = (why + "\n").encode()
            await send({"type": "http.response.start", "status": 403, "headers": [
                (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def _limited(receive: Receive, limit: int, what: str) -> Callable:
    seen = 0

    async def inner() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit, what)
        return message

    return inner


async def _send_error(send: Send, status: int, message: str, kind: str) -> None:
    body = json.dumps(error_body(message, kind)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
