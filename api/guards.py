"""What every request passes before a route sees it: the Host it names, the Origin of a state-changing one,
and the size of its body, checked while it is read (a lying or missing Content-Length too) and before the
key, so a 100 MB body with no key costs nothing.

Written as one small ASGI middleware rather than Starlette's TrustedHostMiddleware: that one answers a
plain-text 400 and knows nothing of Origin, and here every refusal is this API's JSON error with its reason.
Keys travel in headers only (never cookies), so a web page that gets past these checks still has no key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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


def allowed_host_names(extra: str, bind_host: str) -> frozenset[str] | None:
    """The Host names served: loopback, the bound address, RAG_ALLOWED_HOSTS; None when that says '*'."""
    names = set(LOOPBACK_NAMES)
    for name in [bind_host, *extra.split(",")]:
        name = name.strip().lower().strip("[]")
        if name == "*":
            return None
        if name and name not in ("0.0.0.0", "::"):
            names.add(name)
    return frozenset(names)


def host_of(value: str) -> str:
    """The name in a Host header or an Origin (no port, no brackets), lowercased."""
    value = value.strip().lower()
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    def __init__(self, app: ASGIApp, *, hosts: frozenset[str] | None, body_limit: int, upload_limit: int) -> None:
        self.app, self.hosts, self.body_limit, self.upload_limit = app, hosts, body_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope["method"], headers)
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

    def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if self.hosts is None:
            return None
        host = host_of(headers.get("host", ""))
        if host not in self.hosts:
            return (403, f"this server does not serve the host '{host or '(none)'}': add it to RAG_ALLOWED_HOSTS "
                    "if it is one of this server's names", "forbidden_host")
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and host_of(origin) not in self.hosts:
            return (403, f"requests from the web page origin '{origin}' are refused: add its host to "
                    "RAG_ALLOWED_HOSTS if that page is yours", "forbidden_origin")
        return None


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
