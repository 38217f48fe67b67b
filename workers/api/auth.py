"""Bearer-token authentication.

- State-changing requests (POST, PUT, PATCH, DELETE) need the full-access token.
- Reads under /api/ need the full-access token or the read token, unless
  ``public_reads`` is on.
- Quality reviews (/api/v1/qa/...) need the reviewer token, and the reviewer token opens
  nothing else: reviewers read recorded calls and their agents' scores, supervisors' and
  agent desktops' tokens do not; a reviewer changes no routing state.
- /health, /ready, /metrics, /openapi.json and the wallboard page itself are open (the
  page fetches its data with a token taken from the URL fragment, which browsers never
  send to the server).

Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from enum import Enum

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from workers.api.errors import ApiError, Handler

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="acd"'}
QA_PREFIX = "/api/v1/qa/"


class Access(Enum):
    NONE = 0
    READ = 1
    FULL = 2
    REVIEW = 3  # quality reviews only


class TokenAuth:
    """Decides what a request's bearer token allows."""

    def __init__(
        self,
        token: SecretStr,
        read_token: SecretStr | None,
        *,
        public_reads: bool,
        reviewer_token: SecretStr | None = None,
    ) -> None:
        self._token = token.get_secret_value().encode()
        self._read_token = read_token.get_secret_value().encode() if read_token else None
        self._reviewer_token = reviewer_token.get_secret_value().encode() if reviewer_token else None
        self.public_reads = public_reads

    def access(self, presented: str) -> Access:
        given = presented.encode()
        if hmac.compare_digest(given, self._token):
            return Access.FULL
        if self._read_token is not None and hmac.compare_digest(given, self._read_token):
            return Access.READ
        if self._reviewer_token is not None and hmac.compare_digest(given, self._reviewer_token):
            return Access.REVIEW
        return Access.NONE

    def check(self, request: web.Request) -> None:
        if not request.path.startswith("/api/"):
            return
        if request.path.startswith(QA_PREFIX):
            self._check_reviewer(request)
            return
        writing = request.method in WRITE_METHODS
        if not writing and self.public_reads:
            return
        hint = "ACD_API__TOKEN" + ("" if writing else ", or ACD_API__READ_TOKEN for reads")
        access = self._presented(request, hint)
        if access is Access.REVIEW:
            raise ApiError(403, "forbidden", f"the reviewer token opens only {QA_PREFIX}...")
        if writing and access is not Access.FULL:
            raise ApiError(403, "forbidden", "this token may only read; changes need the full-access token")

    def _check_reviewer(self, request: web.Request) -> None:
        access = self._presented(request, "ACD_API__REVIEWER_TOKEN")
        if access is Access.REVIEW:
            return
        if self._reviewer_token is None:
            raise ApiError(
                403,
                "forbidden",
                "quality reviews need the reviewer token, and none is configured: set "
                "ACD_API__REVIEWER_TOKEN or ACD_API__REVIEWER_TOKEN_FILE for acd api",
            )
        raise ApiError(
            403, "forbidden", "quality reviews need the reviewer token (ACD_API__REVIEWER_TOKEN), not this one"
        )

    def _presented(self, request: web.Request, hint: str) -> Access:
        """The access the request's bearer token gives; 401 for none, a malformed or an unknown one."""
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if not header:
            raise ApiError(
                401,
                "unauthorized",
                f"missing token: send 'Authorization: Bearer <token>' ({hint})",
                headers=CHALLENGE,
            )
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "unauthorized",
                "malformed Authorization header: expected 'Bearer <token>'",
                headers=CHALLENGE,
            )
        access = self.access(presented.strip())
        if access is Access.NONE:
            raise ApiError(401, "unauthorized", "invalid token", headers=CHALLENGE)
        return access

    def middleware(self) -> Middleware:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.check(request)
            return await handler(request)

        return authenticate
