"""Errors the API answers with: one JSON shape, a status, a code and what to do about it.

```json
{"error": {"code": "invalid_body", "message": "...", "details": [...]}}
```
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from router.errors import (
    AmiActionError,
    AmiConnectionError,
    DatabaseRefusedError,
    DatabaseUnavailableError,
    RedisUnavailableError,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success, with a machine-readable ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return web.json_response({"error": body}, status=self.status, headers=self.headers)


def unknown_agent(agent_id: str) -> ApiError:
    return ApiError(
        404,
        "unknown_agent",
        f"no agent {agent_id!r} is configured; agents come from the 'agents:' section of the "
        "configuration file (GET /api/v1/agents lists them)",
    )


def validation_error(exc: ValidationError, what: str) -> ApiError:
    """A pydantic error as a 400 naming each field, the value given and what was expected."""
    details = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(body)"
        entry = {"field": field, "problem": error["msg"]}
        if error["type"] != "missing":
            entry["got"] = json.dumps(error.get("input"), default=str)[:200]
        details.append(entry)
    summary = "; ".join(
        f"{d['field']}: {d['problem']}" + (f" (got {d['got']})" if "got" in d else "") for d in details
    )
    return ApiError(400, "invalid_" + what, f"invalid {what}: {summary}", details=details)


async def read_body[M: BaseModel](request: web.Request, model: type[M]) -> M:
    """The JSON body validated as ``model``; an empty body means ``{}``."""
    raw = await request.read()
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400, "invalid_json", f"the body is not valid JSON ({exc}); send a JSON object"
            ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


def ami_error(exc: AmiActionError | AmiConnectionError, roster_queue: str) -> ApiError:
    """What Asterisk's refusal means for the caller of the API."""
    if isinstance(exc, AmiConnectionError):
        return ApiError(
            503,
            "asterisk_unavailable",
            f"the AMI link to Asterisk is down ({exc}); the action was not sent, try again shortly",
            headers={"Retry-After": "2"},
        )
    text = exc.ami_message
    lowered = text.lower()
    if "already there" in lowered:
        return ApiError(409, "already_logged_in", f"Asterisk says the agent is already logged in ({text})")
    if "not there" in lowered or "interface not found" in lowered:
        return ApiError(409, "not_logged_in", f"Asterisk says the agent is not logged in ({text})")
    if "no such queue" in lowered:
        return ApiError(
            502,
            "roster_queue_missing",
            f"Asterisk has no queue {roster_queue!r} ({text}): define it in queues.conf "
            "(see docs/asterisk.md) or set ACD_API__ROSTER_QUEUE",
        )
    if "permission denied" in lowered:
        return ApiError(
            502,
            "ami_permission_denied",
            f"Asterisk refused {exc.action} ({text}): the API's AMI user needs 'write = agent' in manager.conf",
        )
    return ApiError(502, "asterisk_refused", f"Asterisk refused {exc.action}: {text}")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the JSON error shape; nothing leaks a traceback to clients."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc).response()
    except (RedisUnavailableError, RedisError) as exc:  # the stores' error, or a command Redis refused
        logger.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
        return ApiError(503, "redis_unavailable", f"the state store (Redis) is unavailable: {exc}").response()
    except (DatabaseUnavailableError, DatabaseRefusedError) as exc:  # the reports' PostgreSQL
        logger.warning("PostgreSQL unavailable for %s %s: %s", request.method, request.path, exc)
        return ApiError(
            503, "postgres_unavailable", f"the records database (PostgreSQL) cannot answer: {exc}"
        ).response()
    except Exception:
        logger.exception("unexpected error in %s %s", request.method, request.path)
        return ApiError(500, "internal_error", "unexpected error; see the API's log").response()


def _http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return ApiError(
            404, "not_found", f"no such endpoint: {request.path}; GET /openapi.json lists the endpoints"
        )
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    return ApiError(exc.status, "http_error", exc.reason or "error")
