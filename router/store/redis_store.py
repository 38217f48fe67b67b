"""Call and agent state in Redis; every state change is one atomic Lua script.

The scripts (router/store/lua/) are the only writers of routing state. Each takes the
Kafka position of the event it applies, so a redelivered event changes nothing twice,
and each checks the state it transitions from, so workers racing on the same call or
agent cannot both win.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from router.domain import (
    AgentCandidate,
    AgentConfig,
    AnyOf,
    Requirements,
    WaitingCall,
    format_requirements,
    parse_requirements,
)
from router.store.errors import translates_redis_errors
from router.store.keys import Keys
from router.store.scripts import LuaScripts

logger = logging.getLogger(__name__)

_SCRIPTS = (
    "agent_profile",
    "agent_presence",
    "call_enqueue",
    "candidates",
    "reserve",
    "offer_claim",
    "agent_rang",
    "agent_answered",
    "agent_declined",
    "caller_held",
    "caller_left_hold",
    "call_hangup",
    "offer_failed",
    "timers",
    "resync_close",
    "waiting_view",
    "line_for_agent",
    "lease",
    "state_summary",
    "collector_summary",
    "call_overflow",
    "any_logged_in",
    "agent_device",
    "call_transfer",
    "agent_leg_ended",
    "read",
)


CANDIDATE_FIELDS = ("state", "idle_since", "skills", "capacity", "reserved", "connected", "handled_s", "avail_s")
MAX_SCAN = 5000  # agents a candidate search reads at most before giving up on a term


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event stands in its stream, for deduplication. Empty for timer work.

    ``part`` names the stream: the producer (envelope source) when the envelope carries a
    producer sequence, else the Kafka ``topic:partition``; ``offset`` is the sequence number
    or Kafka offset, ``session`` the producer session (0 for Kafka offsets).
    """

    part: str = ""
    offset: int = -1
    session: int = 0

    def args(self) -> list[str]:
        return [self.part, f"{self.session}:{self.offset}"]


NO_POSITION = Position()


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call entering its first queue, with the queue's settings resolved."""

    call_id: str
    queue: str
    priority: int
    priority_explicit: bool
    requirements: Requirements | None
    channel: str
    entered_at: float
    relax_due: float | None
    overflow_due: float | None
    sl_threshold: float
    wrapup_s: float


@dataclass(frozen=True, slots=True)
class OverflowMove:
    """Where an overflowing call goes when its destination is another queue."""

    queue: str
    priority: int | None  # None: the call keeps the priority it set itself
    sl_threshold: float
    wrapup_s: float
    relax_due: float | None
    overflow_due: float | None
    max_hops: int = 5


@dataclass(frozen=True, slots=True)
class ClosedCall:
    """A call closed by a resync: ``outcome`` completed (talk ``seconds``), abandoned or
    pbx_restart (waited ``seconds``; cut off by an Asterisk restart, not an abandon)."""

    call_id: str
    queue: str
    outcome: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ResyncGap:
    """What ingest knows of an AMI gap: when it last saw Asterisk, and whether it restarted."""

    link_lost_at: float | None = None
    pbx_restart: bool = False


@dataclass(frozen=True, slots=True)
class ResyncListing:
    """A resync listing due for closing what it misses."""

    snapshot_at: float
    live_call_ids: list[str]
    gap: ResyncGap


def _resync_listing(body: dict[str, Any]) -> ResyncListing:
    lost_at = body.get("lost_at")
    gap = ResyncGap(None if lost_at is None else float(lost_at), bool(body.get("pbx_restart")))
    return ResyncListing(float(body["at"]), [str(c) for c in body["live"]], gap)


@dataclass(frozen=True, slots=True)
class WrapUpEnded:
    """An agent whose after-call work ended (and is available again)."""

    agent_id: str
    seconds: float
    queue: str


@dataclass(frozen=True, slots=True)
class StateSummary:
    waiting: dict[str, int]
    oldest_entered_at: dict[str, float]
    agents: dict[str, int]


@dataclass(frozen=True, slots=True)
class AgentProfileCount:
    """How many agents with these skills are in this state."""

    state: str
    skills: dict[str, int]
    count: int


@dataclass(frozen=True, slots=True)
class CollectorSummary:
    """Calls waiting and oldest entry time per queue; agents grouped by state and skills."""

    waiting: dict[str, int]
    oldest_entered_at: dict[str, float]
    profiles: tuple[AgentProfileCount, ...]

    @property
    def agents(self) -> dict[str, int]:
        by_state: dict[str, int] = {}
        for profile in self.profiles:
            by_state[profile.state] = by_state.get(profile.state, 0) + profile.count
        return by_state


@dataclass(frozen=True, slots=True)
class Outcome:
    """A script's answer: what happened, plus its details."""

    status: str
    details: tuple[str, ...] = ()

    def detail(self, index: int, default: str = "") -> str:
        return self.details[index] if index < len(self.details) else default

    def number(self, index: int) -> float:
        try:
            return float(self.detail(index, "0") or 0)
        except ValueError:
            return 0.0


def _pairs(flat: list[str]) -> dict[str, str]:
    """HGETALL's flat answer as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _outcome(raw: Any) -> Outcome:
    items = [str(item) for item in raw]
    return Outcome(items[0], tuple(items[1:]))


def requirement_terms(requirements: Requirements) -> list[list[list[str | int]]]:
    """Requirements as the candidates script reads them: terms of alternatives."""
    terms: list[list[list[str | int]]] = []
    for term in requirements:
        alternatives = term.any if isinstance(term, AnyOf) else (term,)
        terms.append([[alt.skill, alt.min_level] for alt in alternatives])
    return terms


@translates_redis_errors
class RedisStateStore:
    """All routing state of one site; the only code that talks to Redis for routing."""

    def __init__(self, redis: Redis, site: str) -> None:
        self.redis = redis
        self.keys = Keys(site)
        self.scripts = LuaScripts(redis, self.keys, _SCRIPTS)

    async def _run(self, name: str, *args: str | int | float) -> Any:
        return await self.scripts.run(name, *args)

    # -- agents ---------------------------------------------------------------------------

    async def upsert_agent(self, agent: AgentConfig, now: float, *, force: bool = False) -> None:
        """Write an agent's configured profile. Skills edited through the API are kept unless
        ``force`` (an explicit configuration reload puts the file's back)."""
        skills = json.dumps(agent.skills, sort_keys=True)
        flag = "1" if force else "0"
        await self._run("agent_profile", agent.id, skills, agent.capacity, agent.device, now, flag)

    async def agent_presence(
        self, agent_id: str, state: str, reason: str, at: float, pos: Position, device_state: str = ""
    ) -> Outcome:
        """Roster change; ``device_state`` is the member's phone as app_queue lists it ('' if not)."""
        return _outcome(
            await self._run("agent_presence", agent_id, state, reason, at, *pos.args(), device_state)
        )

    async def agent_device(self, agent_id: str, device_state: str, at: float, pos: Position) -> Outcome:
        return _outcome(await self._run("agent_device", agent_id, device_state, at, *pos.args()))

    async def any_logged_in(self, requirements: Requirements) -> bool:
        """Whether any logged-in agent (whatever it is doing) meets ``requirements``."""
        return bool(await self._run("any_logged_in", json.dumps(requirement_terms(requirements))))

    async def agent_for_device(self, device: str) -> str | None:
        found = await self._run("read", "HGET", "devices", device)
        return str(found) if found else None

    async def candidates(
        self,
        requirements: Requirements,
        *,
        exclude: Iterable[str] = (),
        limit: int = 64,
        max_scan: int = MAX_SCAN,
    ) -> list[AgentCandidate]:
        """Available agents meeting ``requirements``, longest idle first (at most ``limit``)."""
        raw = await self._run(
            "candidates", _terms(requirements), limit, json.dumps(sorted(exclude)), max_scan
        )
        return candidates_in(raw)

    # -- calls ----------------------------------------------------------------------------

    async def enqueue(
        self,
        call: NewCall,
        pos: Position,
        *,
        candidates_for: Requirements | None = None,
        limit: int = 1,
        requeue_transferred: bool = True,
    ) -> tuple[Outcome, list[AgentCandidate]]:
        """Put a new call in line; with ``candidates_for``, also find agents for it (one round trip).

        A call its agent transferred back into the ACD waits again (status ``requeued``,
        detail 0 the agent released by it, if any) unless ``requeue_transferred`` is False
        (a resync listing cannot tell a caller transferred out from one sent back).
        """
        reqs = "" if call.requirements is None else _requirements_text(call.requirements)
        args = (
            call.call_id,
            call.queue,
            call.priority,
            reqs,
            call.channel,
            call.entered_at,
            _optional(call.relax_due),
            _optional(call.overflow_due),
            call.sl_threshold,
            call.wrapup_s,
            "1" if call.priority_explicit else "0",
        )
        search = ("", 0, 0) if candidates_for is None else (_terms(candidates_for), limit, MAX_SCAN)
        requeue = "1" if requeue_transferred else "0"
        raw = await self._run("call_enqueue", *args, *pos.args(), *search, requeue)
        return _outcome(raw[:2]), candidates_in(raw[2:])

    async def waiting_calls(self, start: int = 0, count: int = 100) -> list[WaitingCall]:
        """Waiting calls in line order (priority, then longest wait, across queues)."""
        return _waiting(await self._run("waiting_view", "range", start, count))

    async def line_for_agent(self, queues: Sequence[str], per_queue: int, count: int) -> list[WaitingCall]:
        """The first calls in line among ``queues`` and calls with their own requirements."""
        return _waiting(await self._run("line_for_agent", json.dumps(list(queues)), per_queue, count))

    async def waiting_call(self, call_id: str) -> WaitingCall | None:
        found = _waiting(await self._run("waiting_view", "ids", call_id))
        return found[0] if found else None

    async def reserve(
        self, call_id: str, agent_id: str, offer_id: str, now: float, deadline: float, record: str
    ) -> Outcome:
        return _outcome(await self._run("reserve", call_id, agent_id, offer_id, now, deadline, record))

    async def claim_offer(self, call_id: str, offer_id: str, deadline: float) -> Outcome:
        return _outcome(await self._run("offer_claim", call_id, offer_id, deadline))

    async def agent_rang(self, call_id: str, agent_id: str, at: float, pos: Position) -> Outcome:
        return _outcome(await self._run("agent_rang", call_id, agent_id, at, *pos.args()))

    async def agent_answered(self, call_id: str, agent_id: str, at: float, pos: Position) -> Outcome:
        return _outcome(await self._run("agent_answered", call_id, agent_id, at, *pos.args()))

    async def agent_declined(
        self, call_id: str, agent_id: str, at: float, auto_pause: bool, reason: str, pos: Position
    ) -> Outcome:
        flag = "1" if auto_pause else "0"
        return _outcome(await self._run("agent_declined", call_id, agent_id, at, flag, reason, *pos.args()))

    async def caller_held(
        self, call_id: str, at: float, auto_pause: bool, reason: str, pos: Position
    ) -> Outcome:
        flag = "1" if auto_pause else "0"
        return _outcome(await self._run("caller_held", call_id, at, flag, reason, *pos.args()))

    async def caller_left_hold(self, call_id: str, at: float, pos: Position) -> Outcome:
        """Music on hold stopped on the caller's channel: during an offer, its Redirect took effect."""
        return _outcome(await self._run("caller_left_hold", call_id, at, *pos.args()))

    async def caller_hung_up(
        self, call_id: str, at: float, pos: Position, *, by_pbx_shutdown: bool = False
    ) -> Outcome:
        cut = "1" if by_pbx_shutdown else "0"
        return _outcome(await self._run("call_hangup", call_id, at, *pos.args(), cut))

    async def call_transferred(
        self, call_id: str, agent_id: str, kind: str, target: str, at: float, pos: Position
    ) -> Outcome:
        """The agent transferred the call; ``transferred`` when its leg had already ended."""
        return _outcome(await self._run("call_transfer", call_id, agent_id, kind, target, at, *pos.args()))

    async def agent_leg_ended(self, call_id: str, agent_id: str, at: float, pos: Position) -> Outcome:
        """The agent's leg ended; ``transferred`` when that ends its part in a transferred call."""
        return _outcome(await self._run("agent_leg_ended", call_id, agent_id, at, *pos.args()))

    async def offer_failed(
        self, call_id: str, offer_id: str, at: float, *, channel_gone: bool, pos: Position
    ) -> Outcome:
        gone = "1" if channel_gone else "0"
        return _outcome(await self._run("offer_failed", call_id, offer_id, at, gone, *pos.args()))

    # -- timers and recovery ---------------------------------------------------------------

    async def run_timers(self, now: float, limit: int = 500) -> tuple[list[WrapUpEnded], list[str]]:
        """Finish due wrap-ups and requeue expired offers: (wrap-ups ended, calls requeued)."""
        raw = [str(item) for item in await self._run("timers", now, limit)]
        split = raw.index("|")
        ended = [WrapUpEnded(raw[i], float(raw[i + 1]), raw[i + 2]) for i in range(0, split, 3)]
        return ended, raw[split + 1 :]

    async def take_nudges(self, limit: int = 500) -> list[dict[str, Any]]:
        """Agents changed by the operator API since the last tick (see _lib.lua nudge)."""
        raw = cast(list[str] | None, await self.redis.lpop(self.keys.nudges, limit))
        return [json.loads(item) for item in raw or []]

    async def relax_due(self, now: float, limit: int = 500) -> list[str]:
        found = await self.redis.zrangebyscore(self.keys.relax_due, "-inf", now, start=0, num=limit)
        return [str(call_id) for call_id in found]

    async def set_relax_due(self, call_id: str, due: float | None) -> None:
        if due is None:
            await self.redis.zrem(self.keys.relax_due, call_id)
        else:
            await self.redis.zadd(self.keys.relax_due, {call_id: due})

    async def overflow(self, call_id: str, at: float, from_queue: str, move: OverflowMove | None) -> Outcome:
        """Overflow a waiting call to another queue (``move``) or, with None, out to a target."""
        if move is None:
            args: tuple[str | float | int, ...] = (call_id, at, from_queue, "", "", 0, 0, "", "", 0)
        else:
            args = (
                call_id,
                at,
                from_queue,
                move.queue,
                _optional(move.priority),
                move.sl_threshold,
                move.wrapup_s,
                _optional(move.relax_due),
                _optional(move.overflow_due),
                move.max_hops,
            )
        return _outcome(await self._run("call_overflow", *args))

    async def overflow_due(self, now: float, limit: int = 500) -> list[str]:
        found = await self.redis.zrangebyscore(self.keys.overflow_due, "-inf", now, start=0, num=limit)
        return [str(call_id) for call_id in found]

    async def schedule_resync(
        self, snapshot_at: float, live_call_ids: Iterable[str], due: float, *, gap: ResyncGap | None = None
    ) -> None:
        """Remember a resync listing, to close what it misses once ``due``."""
        body: dict[str, object] = {"at": snapshot_at, "live": sorted(live_call_ids)}
        if gap is not None:
            body["lost_at"], body["pbx_restart"] = gap.link_lost_at, gap.pbx_restart
        await self.redis.zadd(self.keys.resync_due, {json.dumps(body): due})

    async def due_resyncs(self, now: float) -> list[ResyncListing]:
        """Resync listings whose grace period is over (each taken by exactly one caller)."""
        taken = []
        payloads = cast(list[str], await self.redis.zrangebyscore(self.keys.resync_due, "-inf", now))
        for payload in payloads:
            if await self.redis.zrem(self.keys.resync_due, payload):
                taken.append(_resync_listing(json.loads(payload)))
        return taken

    async def resync_close(
        self, snapshot_at: float, live_call_ids: Iterable[str], *, gap: ResyncGap | None = None
    ) -> list[ClosedCall]:
        """Close open calls the snapshot no longer lists (they ended while AMI was down).

        They end at ``gap.link_lost_at`` when known (the last moment they are known to have
        existed; the snapshot time overstated waits by the whole gap), and a waiting call
        ends ``pbx_restart`` rather than abandoned when Asterisk's restart opened the gap.
        """
        ended_at = "" if gap is None or gap.link_lost_at is None else gap.link_lost_at
        cut = "1" if gap is not None and gap.pbx_restart else "0"
        live = json.dumps(sorted(live_call_ids))
        raw = [str(v) for v in await self._run("resync_close", snapshot_at, live, ended_at, cut)]
        return [ClosedCall(raw[i], raw[i + 1], raw[i + 2], float(raw[i + 3])) for i in range(0, len(raw), 4)]

    async def hold_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or keep the lease ``name`` for ``owner``; False while someone else holds it."""
        return bool(await self._run("lease", name, owner, int(ttl_s * 1000)))

    async def agent_candidate(self, agent_id: str) -> AgentCandidate | None:
        """The agent as the policy sees it, or None unless it may take a call now."""
        fields = await self._run("read", "HMGET", f"agent:{agent_id}", *CANDIDATE_FIELDS, "dev_busy")
        if fields[0] != "available" or fields[8] == "1":  # dev_busy: its phone cannot take a call
            return None
        candidate = _candidate([agent_id, *fields[1:8]])
        return candidate if candidate.active < candidate.capacity else None

    async def any_agent_available(self) -> bool:
        return bool(await self._run("read", "ZCARD", "available"))

    async def round_robin_last(self, queue: str) -> str:
        return str(await self._run("read", "HGET", "rr", queue) or "")

    # -- reading ---------------------------------------------------------------------------

    async def call(self, call_id: str) -> dict[str, str]:
        return _pairs(await self._run("read", "HGETALL", f"call:{call_id}"))

    async def call_states(self, call_ids: Sequence[str]) -> dict[str, str]:
        """Each call's state ('' for a call the router never heard of)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hget(self.keys.call(call_id), "state")
            states = await pipe.execute()
        return {call_id: state or "" for call_id, state in zip(call_ids, states, strict=True)}

    async def agent(self, agent_id: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.agent(agent_id)))

    async def queue_stats(self, queue: str) -> dict[str, float]:
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.stats(queue)))
        return {name: float(value) for name, value in raw.items()}

    async def agent_ids(self) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(self.keys.agents)))

    async def open_call_ids(self) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(self.keys.open_calls)))

    async def state_summary(self) -> StateSummary:
        """Calls waiting and oldest entry time per queue, agents per state."""
        raw = [str(item) for item in await self._run("state_summary")]
        split = raw.index("|")
        calls, agents = raw[:split], raw[split + 1 :]
        return StateSummary(
            waiting={calls[i]: int(calls[i + 1]) for i in range(0, len(calls), 3)},
            oldest_entered_at={calls[i]: float(calls[i + 2]) for i in range(0, len(calls), 3)},
            agents={agents[i]: int(agents[i + 1]) for i in range(0, len(agents), 2)},
        )

    async def collector_summary(self) -> CollectorSummary:
        """What the state collector exports, read in one pass (read-only)."""
        raw = [str(item) for item in await self._run("collector_summary")]
        split = raw.index("|")
        calls, agents = raw[:split], raw[split + 1 :]
        return CollectorSummary(
            waiting={calls[i]: int(calls[i + 1]) for i in range(0, len(calls), 3)},
            oldest_entered_at={calls[i]: float(calls[i + 2]) for i in range(0, len(calls), 3)},
            profiles=tuple(
                AgentProfileCount(agents[i], _skills(agents[i + 1]), int(agents[i + 2]))
                for i in range(0, len(agents), 3)
            ),
        )

    async def decisions(self, count: int = 100_000) -> list[dict[str, Any]]:
        entries = cast(
            list[tuple[str, dict[str, str]]], await self.redis.xrange(self.keys.decisions, count=count)
        )
        return [json.loads(fields["d"]) for _, fields in entries]


def _skills(text: str) -> dict[str, int]:
    try:
        skills = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(skills, dict):
        return {}
    return {str(k): int(v) for k, v in skills.items() if isinstance(v, int | float)}


def _optional(value: float | int | None) -> str:
    return "" if value is None else str(value)


def _requirements_text(requirements: Requirements) -> str:
    # Stored in the compact channel-variable form; "-" marks an explicit "no requirement".
    return format_requirements(requirements) or "-"


def _parse_stored_requirements(text: str) -> Requirements | None:
    if not text:
        return None
    return () if text == "-" else parse_requirements(text)


def _waiting(raw: Sequence[Any]) -> list[WaitingCall]:
    calls = []
    for i in range(0, len(raw), 7):
        call_id, queue, priority, entered_at, reqs, channel, declined = (str(v) for v in raw[i : i + 7])
        declined_ids = json.loads(declined) if declined != "[]" else ()
        calls.append(
            WaitingCall(
                call_id=call_id,
                queue=queue,
                priority=int(float(priority or 0)),
                entered_at=float(entered_at or 0),
                requirements_override=_parse_stored_requirements(reqs),
                channel=channel,
                declined_by=frozenset(declined_ids) if isinstance(declined_ids, list) else frozenset(),
            )
        )
    return calls


def candidates_in(flat: Sequence[Any]) -> list[AgentCandidate]:
    """Candidates as the scripts return them: 8 fields per agent."""
    return [_candidate(flat[i : i + 8]) for i in range(0, len(flat) - 7, 8)]


def _terms(requirements: Requirements) -> str:
    return json.dumps(requirement_terms(requirements))


def _candidate(fields: Sequence[Any]) -> AgentCandidate:
    agent_id, idle_since, skills, capacity, reserved, connected, handled, avail = (str(v) for v in fields)
    return AgentCandidate(
        agent_id=agent_id,
        idle_since=float(idle_since or 0),
        skills=json.loads(skills or "{}"),
        capacity=int(capacity or 1),
        active=int(reserved or 0) + int(connected or 0),
        handled_s=float(handled or 0),
        available_s=float(avail or 0),
    )
