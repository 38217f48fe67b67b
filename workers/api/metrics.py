"""The API process's own Prometheus metrics (on an injected registry)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge

from workers.api.errors import Handler


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "acd_api_requests_total",
            "API requests by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.live_subscribers = Gauge(
            "acd_api_live_subscribers", "Open live-update (server-sent events) streams", registry=registry
        )
        self.ami_connected = Gauge(
            "acd_api_ami_connected", "1 while the API's AMI session to Asterisk is up", registry=registry
        )

    def track(self, subscribers: Callable[[], int], ami_connected: Callable[[], bool]) -> None:
        self.live_subscribers.set_function(lambda: float(subscribers()))
        self.ami_connected.set_function(lambda: float(ami_connected()))

    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            route = request.match_info.route.resource
            template = route.canonical if route is not None else "unmatched"
            self.requests.labels(template, request.method, str(response.status)).inc()
            return response

        return count
