"""The API's endpoints: agent control, supervisor views, live updates.

Presence changes (login, logout, ready, pause) go to Asterisk as AMI actions and answer
202 Accepted: the state shows in GET once the roster event has flowed through ingest,
Kafka and a routing worker. After-call work and skills are the router's own state and
change in Redis at once (200).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import BeforeValidator, ConfigDict, Field

from router.clock import Clock
from router.domain import SKILL_LEVEL_MAX, SKILL_LEVEL_MIN, Frozen, SkillName
from router.errors import AmiActionError, AmiConnectionError
from router.store.admin import AdminStore, AgentView
from workers.api.errors import ApiError, ami_error, read_body, unknown_agent
from workers.api.live import TOPICS, LiveFeed
from workers.api.reports import ReportsContext
from workers.api.roster import Roster
from workers.api.settings import REASON_PATTERN, ApiSettings
from workers.api.views import AGENT_ACTIVITIES, Views

logger = logging.getLogger(__name__)

ReasonCode = Annotated[str, Field(pattern=REASON_PATTERN)]


def _whole_number(value: object) -> object:
    """JSON Schema's integer: 3.0 is one too (true, false and "3" are not)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Level = Annotated[int, BeforeValidator(_whole_number), Field(ge=SKILL_LEVEL_MIN, le=SKILL_LEVEL_MAX)]
LevelOrRemove = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=SKILL_LEVEL_MAX)]


class Body(Frozen):
    """A request body: its JSON types as the OpenAPI description says, nothing coerced.

    Lax parsing would read ``false`` as level 0 (which removes a skill) and ``"5"`` as 5:
    a client's mistake would change state instead of getting a 400.
    """

    model_config = ConfigDict(strict=True)


class LoginBody(Body):
    paused: bool = False
    reason: ReasonCode | None = None


class PauseBody(Body):
    reason: ReasonCode


class ExtendBody(Body):
    seconds: float = Field(gt=0)


class SkillsBody(Body):
    skills: dict[SkillName, Level]


class SkillsPatchBody(Body):
    skills: dict[SkillName, LevelOrRemove] = Field(min_length=1)


@dataclass
class ApiContext:
    """What the handlers work with."""

    settings: ApiSettings
    views: Views
    admin: AdminStore
    roster: Roster
    feed: LiveFeed
    clock: Clock
    stop: asyncio.Event
    reports: ReportsContext


def _accepted(agent_id: str, action: str, sent: str, **extra: Any) -> web.Response:
    body = {
        "status": "accepted",
        "agent_id": agent_id,
        "action": action,
        "sent": sent,
        "detail": "sent to Asterisk; the agent's state changes once the roster event has reached "
        "the routing workers (follow GET /api/v1/agents/{id} or the live updates)",
    }
    return web.json_response(body | extra, status=202)


class Handlers:
    """One method per endpoint."""

    def __init__(self, context: ApiContext) -> None:
        self.ctx = context

    async def _agent(self, request: web.Request) -> AgentView:
        agent_id = request.match_info["agent_id"]
        agent = await self.ctx.admin.agent(agent_id)
        if agent is None:
            raise unknown_agent(agent_id)
        return agent

    async def _ami(self, agent: AgentView, action: str, call: Awaitable[None]) -> None:
        logger.info("agent %s: %s requested", agent.agent_id, action, extra={"agent_id": agent.agent_id})
        try:
            await call
        except (AmiActionError, AmiConnectionError) as exc:
            logger.info(
                "agent %s: %s not done: %s", agent.agent_id, action, exc, extra={"agent_id": agent.agent_id}
            )
            raise ami_error(exc, self.ctx.settings.roster_queue) from None

    def _check_reason(self, reason: str) -> None:
        allowed = self.ctx.settings.allowed_pause_reasons
        if allowed and reason not in allowed:
            raise ApiError(
                400,
                "unknown_pause_reason",
                f"pause reason {reason!r} is not one of the configured codes {list(allowed)} "
                "(ACD_API__PAUSE_REASONS)",
            )

    # -- agent control --------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await read_body(request, LoginBody)
        agent = await self._agent(request)
        if body.paused and body.reason:
            self._check_reason(body.reason)
        reason = (body.reason or "") if body.paused else ""
        roster = self.ctx.roster
        await self._ami(
            agent, "login", roster.login(agent.device, paused=body.paused, reason=reason)
        )
        return _accepted(agent.agent_id, "login", "QueueAdd")

    async def logout(self, request: web.Request) -> web.Response:
        await read_body(request, Body)
        agent = await self._agent(request)
        await self._ami(agent, "logout", self.ctx.roster.logout(agent.device))
        return _accepted(agent.agent_id, "logout", "QueueRemove")

    async def ready(self, request: web.Request) -> web.Response:
        """Unpause in Asterisk; an agent in after-call work also ends it (the usual Ready button)."""
        await read_body(request, Body)
        agent = await self._agent(request)
        await self._ami(agent, "ready", self.ctx.roster.unpause(agent.device))
        finished = False
        if agent.state == "wrap_up":
            outcome = await self.ctx.admin.finish_wrapup(agent.agent_id, self.ctx.clock.now())
            finished = outcome.status == "ok"
        if finished:
            logger.info(
                "agent %s: wrap-up finished by Ready", agent.agent_id, extra={"agent_id": agent.agent_id}
            )
        return _accepted(agent.agent_id, "ready", "QueuePause Paused=false", wrapup_finished=finished)

    async def pause(self, request: web.Request) -> web.Response:
        body = await read_body(request, PauseBody)
        agent = await self._agent(request)
        self._check_reason(body.reason)
        await self._ami(agent, f"pause ({body.reason})", self.ctx.roster.pause(agent.device, body.reason))
        return _accepted(agent.agent_id, "pause", "QueuePause Paused=true")

    async def extend_wrapup(self, request: web.Request) -> web.Response:
        body = await read_body(request, ExtendBody)
        limit = self.ctx.settings.max_wrapup_extend_s
        if body.seconds > limit:
            problem = f"Input should be less than or equal to {limit:g} (ACD_API__MAX_WRAPUP_EXTEND_S)"
            raise ApiError(
                400,
                "invalid_body",
                f"invalid body: seconds: {problem} (got {body.seconds:g})",
                details=[{"field": "seconds", "problem": problem, "got": f"{body.seconds:g}"}],
            )
        agent = await self._agent(request)
        outcome = await self.ctx.admin.extend_wrapup(agent.agent_id, body.seconds, self.ctx.clock.now())
        self._wrapup_outcome(agent, outcome.status, outcome.state)
        logger.info(
            "agent %s: wrap-up extended by %gs",
            agent.agent_id,
            body.seconds,
            extra={"agent_id": agent.agent_id},
        )
        return web.json_response(
            {"agent_id": agent.agent_id, "state": "wrap_up", "wrapup_until": outcome.until}
        )

    async def finish_wrapup(self, request: web.Request) -> web.Response:
        await read_body(request, Body)
        agent = await self._agent(request)
        outcome = await self.ctx.admin.finish_wrapup(agent.agent_id, self.ctx.clock.now())
        self._wrapup_outcome(agent, outcome.status, outcome.state)
        logger.info(
            "agent %s: wrap-up finished by an operator", agent.agent_id, extra={"agent_id": agent.agent_id}
        )
        return web.json_response(
            {"agent_id": agent.agent_id, "state": "available", "wrapup_s": round(outcome.seconds, 3)}
        )

    @staticmethod
    def _wrapup_outcome(agent: AgentView, status: str, detail: str) -> None:
        if status == "unknown_agent":
            raise unknown_agent(agent.agent_id)
        if status == "not_in_wrap_up":
            raise ApiError(
                409,
                "not_in_wrap_up",
                f"agent {agent.agent_id!r} is not in after-call work (state {detail!r})",
            )

    async def put_skills(self, request: web.Request) -> web.Response:
        body = await read_body(request, SkillsBody)
        return await self._set_skills(request, body.skills, "replace")

    async def patch_skills(self, request: web.Request) -> web.Response:
        body = await read_body(request, SkillsPatchBody)
        return await self._set_skills(request, body.skills, "merge")

    async def _set_skills(self, request: web.Request, skills: dict[str, int], mode: str) -> web.Response:
        agent = await self._agent(request)
        outcome = await self.ctx.admin.set_skills(
            agent.agent_id, skills, self.ctx.clock.now(), mode="merge" if mode == "merge" else "replace"
        )
        if outcome.status != "ok":
            raise unknown_agent(agent.agent_id)
        logger.info(
            "agent %s: skills set through the API: %s",
            agent.agent_id,
            outcome.skills,
            extra={"agent_id": agent.agent_id},
        )
        updated = await self.ctx.admin.agent(agent.agent_id)
        return web.json_response(updated.as_json() if updated else {})

    # -- views ----------------------------------------------------------------------------

    async def list_agents(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state is not None and state not in AGENT_ACTIVITIES:
            expected = list(AGENT_ACTIVITIES)
            raise ApiError(
                400, "invalid_query", f"state = {state!r} is not an agent state; expected one of {expected}"
            )
        agents = await self.ctx.views.agents(state)
        return web.json_response(
            {
                "agents": [agent.as_json() for agent in agents],
                "by_state": await self.ctx.views.agents_by_activity(),
            }
        )

    async def get_agent(self, request: web.Request) -> web.Response:
        return web.json_response((await self._agent(request)).as_json())

    async def list_queues(self, request: web.Request) -> web.Response:
        today = self.ctx.views.today()
        return web.json_response({**today, "queues": await self.ctx.views.queue_summaries(today["day"])})

    def _queue_name(self, name: str) -> str:
        if name not in self.ctx.views.queues:
            raise ApiError(
                404,
                "unknown_queue",
                f"no queue {name!r} is configured; configured: {sorted(self.ctx.views.queues)}",
            )
        return name

    async def get_queue(self, request: web.Request) -> web.Response:
        name = self._queue_name(request.match_info["queue"])
        today = self.ctx.views.today()
        summaries = await self.ctx.views.queue_summaries(today["day"])
        summary = next(q for q in summaries if q["name"] == name)
        calls = self.ctx.views.calls_json(await self.ctx.views.calls(name))
        return web.json_response({**today, "queue": summary, "calls": calls})

    async def list_calls(self, request: web.Request) -> web.Response:
        # An empty filter is no filter, as for ?topics=; an unknown queue is the same 404
        # as /queues/{queue}, so a typo never reads as "nobody waits".
        queue = self._queue_name(request.query["queue"]) if request.query.get("queue") else None
        calls = self.ctx.views.calls_json(await self.ctx.views.calls(queue))
        return web.json_response({"at": round(self.ctx.clock.now(), 3), "calls": calls})

    async def list_callbacks(self, request: web.Request) -> web.Response:
        """Callers waiting to be called back (router/callback.py), with the same queue filter."""
        queue = self._queue_name(request.query["queue"]) if request.query.get("queue") else None
        callbacks = await self.ctx.views.callbacks_json(queue)
        return web.json_response({"at": round(self.ctx.clock.now(), 3), "callbacks": callbacks})

    async def _call(self, request: web.Request) -> dict[str, Any]:
        call_id = request.match_info["call_id"]
        call = await self.ctx.admin.call(call_id)
        if call is None:
            raise ApiError(
                404, "unknown_call", f"no call {call_id!r} (calls are kept for 24 h after they end)"
            )
        return call.as_json(self.ctx.clock.now())

    async def get_call(self, request: web.Request) -> web.Response:
        return web.json_response(await self._call(request))

    async def get_decision(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        decision = call["decision"]
        if decision is None:
            raise ApiError(
                404,
                "no_decision",
                f"call {call['call_id']!r} has not been offered to an agent yet (state {call['state']!r})",
            )
        return web.json_response(
            {
                "call_id": call["call_id"],
                "state": call["state"],
                "agent_id": decision.get("agent_id"),
                "reason": decision.get("reason"),
                "decision": decision,
            }
        )

    async def wallboard(self, request: web.Request) -> web.Response:
        return web.json_response(await self.ctx.views.wallboard())

    # -- live updates ---------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        topics, agent_id = await self._event_filter(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        await response.prepare(request)
        subscription = self.ctx.feed.subscribe(topics, agent_id)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    async with asyncio.timeout(self.ctx.settings.heartbeat_s):
                        event = await subscription.next()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                subscription.sent += 1
                await response.write(event.frame(subscription.sent))
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        finally:
            self.ctx.feed.unsubscribe(subscription)
        return response

    async def _event_filter(self, request: web.Request) -> tuple[frozenset[str], str | None]:
        agent_id = request.query.get("agent") or None
        raw = request.query.get("topics")
        topics = frozenset(t.strip(" ") for t in (raw or "").split(",") if t.strip(" "))
        unknown = sorted(topics - TOPICS)
        if unknown:
            raise ApiError(
                400,
                "invalid_query",
                f"topics = {raw!r}: unknown {unknown}; expected a comma-separated subset of {sorted(TOPICS)}",
            )
        if not topics:  # absent or empty: every kind (an agent desktop: its agent's events)
            topics = frozenset({"agent"}) if agent_id else TOPICS
        if agent_id is not None and await self.ctx.admin.agent(agent_id) is None:
            raise unknown_agent(agent_id)
        return topics, agent_id
