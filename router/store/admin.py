"""Operator actions and supervisor views: the admin side of the routing state in Redis.

Writes are atomic Lua scripts like the routing store's (same ``_lib.lua`` prelude, same
keys), for the state that belongs to the router alone: after-call work (extend, finish)
and skills. Presence (login, pause, logout) is *not* here: its one source of truth is
Asterisk's roster queue, so the API changes it through AMI and the routing workers learn
it from the roster events like any other change.

Reads are plain pipelined reads: a supervisor view may be a few milliseconds stale, it
never decides anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, cast

from router.domain import AgentConfig
from router.store.base import RedisSiteStore
from router.store.codec import profile_args, skills_in
from router.store.errors import translates_redis_errors
from router.store.replies import SkillsSet, WrapUpExtended, WrapUpFinished

# Call states in which the caller still waits (offered and ringing included).
QUEUED_CALL_STATES = frozenset({"waiting", "offered", "dispatching", "ringing"})

SkillsMode = Literal["replace", "merge"]


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as a supervisor sees it."""

    agent_id: str
    state: str  # logged_out, available, paused, wrap_up (presence and after-call work)
    activity: str  # what it does now: on_call or reserved first, else its state
    reason: str
    skills: dict[str, int]
    skills_source: str  # 'config' or 'api'
    capacity: int
    reserved: int
    connected: int
    device: str
    state_since: float | None
    wrapup_until: float | None
    last_call: str

    @classmethod
    def from_hash(cls, agent_id: str, fields: Mapping[str, str]) -> AgentView:
        state = fields.get("state") or "logged_out"
        reserved, connected = _int(fields.get("reserved")), _int(fields.get("connected"))
        activity = "on_call" if connected > 0 else "reserved" if reserved > 0 else state
        return cls(
            agent_id=agent_id,
            state=state,
            activity=activity,
            reason=fields.get("reason", ""),
            skills=skills_in(fields.get("skills")),
            skills_source=fields.get("skills_source") or "config",
            capacity=_int(fields.get("capacity"), 1),
            reserved=reserved,
            connected=connected,
            device=fields.get("device", ""),
            state_since=_float(fields.get("state_since")),
            wrapup_until=_float(fields.get("wrapup_until")) if state == "wrap_up" else None,
            last_call=fields.get("last_call", ""),
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CallView:
    """A call as a supervisor sees it, with the routing decision once there is one."""

    call_id: str
    state: str
    queue: str
    priority: int
    entered_at: float | None
    channel: str
    agent_id: str
    position: int | None  # place in the one line across queues (waiting calls only), 1-based
    answered_at: float | None
    ended_at: float | None
    decision: dict[str, Any] | None

    @classmethod
    def from_hash(cls, call_id: str, fields: Mapping[str, str], position: int | None) -> CallView:
        return cls(
            call_id=call_id,
            state=fields.get("state", ""),
            queue=fields.get("queue", ""),
            priority=_int(fields.get("priority")),
            entered_at=_float(fields.get("entered_at")),
            channel=fields.get("channel", ""),
            agent_id=fields.get("agent", ""),
            position=position,
            answered_at=_float(fields.get("answered_at")),
            ended_at=_float(fields.get("ended_at")),
            decision=_decision(fields.get("decision")),
        )

    def wait_s(self, now: float) -> float | None:
        """Seconds the caller has waited (until answered or ended)."""
        if self.entered_at is None:
            return None
        end = self.answered_at or self.ended_at or now
        return max(0.0, end - self.entered_at)

    def as_json(self, now: float) -> dict[str, Any]:
        return asdict(self) | {"wait_s": _round(self.wait_s(now))}


def _decision(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        decision = json.loads(text)
    except ValueError:
        return {"unparsed": text}
    return cast(dict[str, Any], decision) if isinstance(decision, dict) else {"unparsed": text}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@translates_redis_errors
class AdminStore(RedisSiteStore):
    """Operator actions and supervisor views for one site."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("agent_profile", "agent_skills", "wrapup_extend", "wrapup_finish")

    # -- operator actions -----------------------------------------------------------------

    async def extend_wrapup(self, agent_id: str, seconds: float, now: float) -> WrapUpExtended:
        """Add ``seconds`` of after-call work."""
        return WrapUpExtended.parse(await self._run("wrapup_extend", agent_id, seconds, now))

    async def finish_wrapup(self, agent_id: str, now: float) -> WrapUpFinished:
        """End after-call work now; the agent becomes available."""
        return WrapUpFinished.parse(await self._run("wrapup_finish", agent_id, now, self.days.window(now)))

    async def set_skills(
        self, agent_id: str, skills: Mapping[str, int], now: float, *, mode: SkillsMode = "replace"
    ) -> SkillsSet:
        """Replace (or merge; level 0 removes) the agent's skills."""
        payload = json.dumps(dict(skills), sort_keys=True)
        return SkillsSet.parse(await self._run("agent_skills", agent_id, mode, payload, now))

    async def apply_profile(self, agent: AgentConfig, now: float, *, force: bool) -> bool:
        """Write a configured profile; with ``force`` over skills edited through the API.

        Returns False when the agent's API-edited skills were kept (``force`` off).
        """
        written = await self._run("agent_profile", *profile_args(agent, now, force))
        return int(written) == 1

    async def apply_profiles(self, agents: Iterable[AgentConfig], now: float, *, force: bool) -> None:
        for agent in agents:
            await self.apply_profile(agent, now, force=force)

    # -- supervisor views -----------------------------------------------------------------

    async def agent_ids(self) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(self.keys.agents)))

    async def agents(self, agent_ids: Iterable[str] | None = None) -> list[AgentView]:
        ids = await self.agent_ids() if agent_ids is None else list(agent_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(self.keys.agent(agent_id))
            hashes = cast(list[dict[str, str]], await pipe.execute())
        return [AgentView.from_hash(i, h) for i, h in zip(ids, hashes, strict=True) if h]

    async def agent(self, agent_id: str) -> AgentView | None:
        if not await self.redis.sismember(self.keys.agents, agent_id):
            return None
        found = await self.agents([agent_id])
        return found[0] if found else None

    async def queued_calls(self) -> list[CallView]:
        """Every call whose caller still waits, in line order (waiting first, then offered)."""
        ids = sorted(cast(set[str], await self.redis.smembers(self.keys.open_calls)))
        calls = await self._calls(ids)
        queued = [call for call in calls if call.state in QUEUED_CALL_STATES]
        return sorted(queued, key=_line_order)

    async def call(self, call_id: str) -> CallView | None:
        found = await self._calls([call_id])
        return found[0] if found else None

    async def _calls(self, ids: list[str]) -> list[CallView]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hgetall(self.keys.call(call_id))
                pipe.zrank(self.keys.waiting, call_id)
            raw = await pipe.execute()
        calls = []
        for index, call_id in enumerate(ids):
            fields, rank = cast(dict[str, str], raw[2 * index]), raw[2 * index + 1]
            if fields:
                position = None if rank is None else int(rank) + 1
                calls.append(CallView.from_hash(call_id, fields, position))
        return calls

    async def queue_stats(self, queues: Iterable[str]) -> dict[str, dict[str, float]]:
        names = list(queues)
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in names:
                pipe.hgetall(self.keys.stats(queue))
            raw = cast(list[dict[str, str]], await pipe.execute())
        return {
            queue: {field: float(value) for field, value in stats.items()}
            for queue, stats in zip(names, raw, strict=True)
        }


def _line_order(call: CallView) -> tuple[int, int, int, float, str]:
    # Waiting calls by their place in line; offered or ringing ones after them, by priority
    # then longest wait (the order they were in line).
    if call.position is not None:
        return (0, call.position, 0, 0.0, call.call_id)
    return (1, 0, -call.priority, call.entered_at or 0.0, call.call_id)
