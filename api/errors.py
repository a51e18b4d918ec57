"""Errors as the client reads them: ``{"error": {"message", "type"}}`` in plain words, never a traceback."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.workers import Busy
from rag.embedders.models import ModelUnavailableError
from rag.store import ReservedCollectionError, StoreError


class ApiError(Exception):
    """An error the client should read: an HTTP status, an error type and a message in plain words."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


def error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind}}


def store_error_status(error: StoreError) -> tuple[int, str]:
    """StoreError says everything in its message; map the ones the client caused to 4xx."""
    text = str(error)
    if isinstance(error, ReservedCollectionError):
        return 400, "invalid_request_error"
    if text.startswith("invalid collection name"):
        return 400, "invalid_request_error"
    if "was built with the embedder" in text:
        return 409, "conflict"
    if "in use by another process" in text:
        return 409, "conflict"
    return 503, "store_unavailable"


def describe_invalid(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        if item.get("type") == "json_invalid":
            return "invalid request: the body is not valid JSON"
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def reply(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return reply(error.status, error.message, error.kind, error.headers)

    @app.exception_handler(Busy)
    async def _busy(_: Request, error: Busy) -> JSONResponse:
        return reply(503, str(error), "overloaded", {"Retry-After": str(error.retry_after)})

    @app.exception_handler(StoreError)
    async def _store(_: Request, error: StoreError) -> JSONResponse:
        status, kind = store_error_status(error)
        return reply(status, str(error), kind)

    @app.exception_handler(ModelUnavailableError)
    async def _model(_: Request, error: ModelUnavailableError) -> JSONResponse:
        return reply(503, f"a model this server is configured with cannot be loaded: {error}", "model_unavailable")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return reply(400, describe_invalid(error), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            error.status_code, "invalid_request_error")
        message = str(error.detail)
        if error.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = (f"no endpoint {request.method} {request.url.path}: the API is described at /docs"
                       if error.status_code == 404 else f"{request.url.path} does not take {request.method}")
        return reply(error.status_code, message, kind, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises it after this reply, and uvicorn logs the traceback: the log has it, the client not.
        return reply(500, f"internal error ({type(error).__name__}); the server's log has the details",
                     "internal_error")
