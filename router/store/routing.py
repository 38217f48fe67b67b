"""Routing writes: call and agent transitions, candidates, the line and the reservation.

Every state change is one atomic Lua script (router/store/lua/). Each takes the Kafka
position of the event it applies, so a redelivered event changes nothing twice, and each
checks the state it transitions from, so workers racing on the same call or agent cannot
both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, cast

import orjson

from router import affinity
from router.domain import AgentCandidate, AgentConfig, Requirements, WaitingCall
from router.qa import recording_stem
from router.store.base import RedisSiteStore
from router.store.codec import (
    candidate,
    candidates_in,
    flag_arg,
    optional_arg,
    pairs,
    profile_args,
    record_requirements_arg,
    requirements_arg,
    skills_in,
    terms_arg,
    texts,
    waiting_calls_in,
)
from router.store.errors import translates_redis_errors
from router.store.params import NewCall, OverflowMove, Position, qa_arg
from router.store.replies import (
    Answered,
    Declined,
    DeviceChanged,
    Enqueued,
    FailedOffer,
    HungUp,
    Overflowed,
    PresenceChanged,
    Reserved,
    StateChange,
    TransferStep,
)

CANDIDATE_FIELDS = ("state", "idle_since", "skills", "capacity", "reserved", "connected", "handled_s", "avail_s")
MAX_SCAN = 5000  # agents a candidate search reads at most before giving up on a term


@translates_redis_errors
class RedisRoutingStore(RedisSiteStore):
    """Call and agent state of one site as routing changes it; the engine's store."""

    SCRIPTS: ClassVar[tuple[str, ...]] = (
        "agent_profile",
        "agent_presence",
        "agent_device",
        "call_enqueue",
        "candidates",
        "any_logged_in",
        "waiting_view",
        "line_for_agent",
        "reserve",
        "offer_claim",
        "record_claim",
        "agent_rang",
        "agent_answered",
        "agent_declined",
        "caller_held",
        "caller_left_hold",
        "call_hangup",
        "call_transfer",
        "agent_leg_ended",
        "offer_failed",
        "call_overflow",
        "affinity_release",
        "read",
    )

    # -- agents ---------------------------------------------------------------------------

    async def upsert_agent(self, agent: AgentConfig, now: float, *, force: bool = False) -> None:
        """Write an agent's configured profile. Skills edited through the API are kept unless
        ``force`` (an explicit configuration reload puts the file's back)."""
        await self._run("agent_profile", *profile_args(agent, now, force))

    async def agent_presence(
        self,
        agent_id: str,
        state: str,
        reason: str,
        at: float,
        pos: Position,
        device_state: str = "",
        *,
        pause_known: bool = True,
    ) -> PresenceChanged:
        """Roster change; ``device_state`` is the member's phone as app_queue lists it ('' if
        not); without ``pause_known`` (QueueMemberStatus) a logged-in agent's pause stays."""
        known = flag_arg(pause_known)
        raw = await self._run("agent_presence", agent_id, state, reason, at, *pos.args(), device_state, known)
        return PresenceChanged.parse(raw)

    async def agent_device(self, agent_id: str, device_state: str, at: float, pos: Position) -> DeviceChanged:
        return DeviceChanged.parse(await self._run("agent_device", agent_id, device_state, at, *pos.args()))

    async def agent_for_device(self, device: str) -> str | None:
        found = await self._run("read", "HGET", "devices", device)
        return str(found) if found else None

    async def agent(self, agent_id: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.agent(agent_id)))

    async def agent_candidate(self, agent_id: str) -> AgentCandidate | None:
        """The agent as the policy sees it, or None unless it may take a call now."""
        fields = await self._run("read", "HMGET", f"agent:{agent_id}", *CANDIDATE_FIELDS, "dev_busy")
        if fields[0] != "available" or fields[8] == "1":  # dev_busy: its phone cannot take a call
            return None
        found = candidate([agent_id, *fields[1:8]])
        return found if found.active < found.capacity else None

    async def any_agent_available(self) -> bool:
        return bool(await self._run("read", "ZCARD", "available"))

    async def any_logged_in(self, requirements: Requirements) -> bool:
        """Whether any logged-in agent (whatever it is doing) meets ``requirements``."""
        return bool(await self._run("any_logged_in", terms_arg(requirements)))

    async def candidates(
        self,
        requirements: Requirements,
        *,
        exclude: Iterable[str] = (),
        limit: int = 64,
        max_scan: int = MAX_SCAN,
    ) -> list[AgentCandidate]:
        """Available agents meeting ``requirements``, longest idle first (at most ``limit``)."""
        excluded = orjson.dumps(sorted(exclude)).decode()
        return candidates_in(await self._run("candidates", terms_arg(requirements), limit, excluded, max_scan))

    # -- affinity (router/affinity.py) -----------------------------------------------------

    async def last_agent(self, caller_number: str) -> str:
        """Who last answered this caller, as remembered ('agent answered_at', '' none)."""
        return str(await self.redis.get(self.keys.last_agent(caller_number)) or "")

    async def agent_standing(self, agent_id: str) -> tuple[str, dict[str, int]]:
        """An agent's state ('' unknown) and skills, to judge whether a call should wait for it."""
        state, skills = await self._run("read", "HMGET", f"agent:{agent_id}", "state", "skills")
        return str(state), skills_in(str(skills))

    async def held_for(self, agent_id: str, now: float) -> list[str]:
        """Calls still waiting for this agent first."""
        found = await self.redis.zrangebyscore(self.keys.held(agent_id), now, "+inf")
        return [str(call_id) for call_id in found]

    async def release_affinity(self, call_id: str, agent_id: str) -> bool:
        """The call stops waiting for ``agent_id`` (logged out, not qualified); False if it was not."""
        return texts(await self._run("affinity_release", call_id, agent_id))[0] == "released"

    async def round_robin_last(self, queue: str) -> str:
        return str(await self._run("read", "HGET", "rr", queue) or "")

    # -- calls ----------------------------------------------------------------------------

    async def enqueue(
        self,
        call: NewCall,
        pos: Position,
        *,
        candidates_for: Requirements | None = None,
        limit: int = 1,
        requeue_transferred: bool = True,
    ) -> Enqueued:
        """Put a new call in line; with ``candidates_for``, also find agents for it (one round trip).

        A call its agent transferred back into the ACD waits again (``requeued``) unless
        ``requeue_transferred`` is False (a resync listing cannot tell a caller transferred
        out from one sent back).
        """
        reqs = "" if call.requirements is None else requirements_arg(call.requirements)
        args = (
            call.call_id,
            call.queue,
            call.priority,
            reqs,
            call.channel,
            call.entered_at,
            optional_arg(call.relax_due),
            optional_arg(call.overflow_due),
            call.sl_threshold,
            call.wrapup_s,
            flag_arg(call.priority_explicit),
        )
        search = ("", 0, 0) if candidates_for is None else (terms_arg(candidates_for), limit, MAX_SCAN)
        requeue = flag_arg(requeue_transferred)
        in_force = call.requirements if call.requirements_in_force is None else call.requirements_in_force
        record = (call.caller_number, call.caller_name, record_requirements_arg(in_force))
        days = self.days.window(call.entered_at)
        aff = (affinity.encode(call.affinity), optional_arg(call.last_agent_window_s))
        raw = await self._run(
            "call_enqueue", *args, *pos.args(), *search, requeue, *record, days, qa_arg(call.qa), *aff
        )
        return Enqueued.parse(raw)

    async def call(self, call_id: str) -> dict[str, str]:
        return pairs(await self._run("read", "HGETALL", f"call:{call_id}"))

    async def waiting_calls(self, start: int = 0, count: int = 100) -> list[WaitingCall]:
        """Waiting calls in line order (priority, then longest wait, across queues)."""
        return waiting_calls_in(await self._run("waiting_view", "range", start, count))

    async def line_for_agent(self, queues: Sequence[str], per_queue: int, count: int) -> list[WaitingCall]:
        """The first calls in line among ``queues`` and calls with their own requirements."""
        listed = orjson.dumps(list(queues)).decode()
        return waiting_calls_in(await self._run("line_for_agent", listed, per_queue, count))

    async def waiting_call(self, call_id: str) -> WaitingCall | None:
        found = waiting_calls_in(await self._run("waiting_view", "ids", call_id))
        return found[0] if found else None

    async def reserve(
        self, call_id: str, agent_id: str, offer_id: str, now: float, deadline: float, record: str
    ) -> Reserved:
        return Reserved.parse(await self._run("reserve", call_id, agent_id, offer_id, now, deadline, record))

    async def claim_offer(
        self, call_id: str, offer_id: str, deadline: float, claimant: str = ""
    ) -> StateChange:
        """The dispatcher takes the offer to execute it: ``ok``, or ``stale`` (withdrawn, or
        taken by another ``claimant``; the same non-empty claimant asking again, after the
        answer to its claim was lost, gets ``ok`` again)."""
        return StateChange.parse(await self._run("offer_claim", call_id, offer_id, deadline, claimant))

    async def claim_recording(self, call_id: str, file: str) -> StateChange:
        """The dispatcher takes a recording command: ``ok`` once per call and file; ``stale``
        (with why) for a redelivery, or a call no longer connected."""
        return StateChange.parse(await self._run("record_claim", call_id, file))

    async def agent_rang(self, call_id: str, agent_id: str, at: float, pos: Position) -> StateChange:
        return StateChange.parse(await self._run("agent_rang", call_id, agent_id, at, *pos.args()))

    async def agent_answered(
        self, call_id: str, agent_id: str, at: float, pos: Position, *, qa_seed: str = ""
    ) -> Answered:
        """The call is connected; quality sampling decides (with ``qa_seed``) in the same step."""
        days, stem = self.days.window(at), recording_stem(call_id)
        raw = await self._run("agent_answered", call_id, agent_id, at, *pos.args(), days, qa_seed, stem)
        return Answered.parse(raw)

    async def agent_declined(
        self, call_id: str, agent_id: str, at: float, auto_pause: bool, reason: str, pos: Position
    ) -> Declined:
        flag = flag_arg(auto_pause)
        raw = await self._run("agent_declined", call_id, agent_id, at, flag, reason, *pos.args(), self.days.window(at))
        return Declined.parse(raw, agent_id)

    async def caller_held(
        self, call_id: str, at: float, auto_pause: bool, reason: str, pos: Position
    ) -> Declined:
        """Music on hold started during an offer: the offered phone could not take the call."""
        flag = flag_arg(auto_pause)
        days = self.days.window(at)
        return Declined.parse(await self._run("caller_held", call_id, at, flag, reason, *pos.args(), days))

    async def caller_left_hold(self, call_id: str, at: float, pos: Position) -> StateChange:
        """Music on hold stopped on the caller's channel: during an offer, its Redirect took effect."""
        return StateChange.parse(await self._run("caller_left_hold", call_id, at, *pos.args()))

    async def caller_hung_up(
        self, call_id: str, at: float, pos: Position, *, by_pbx_shutdown: bool = False
    ) -> HungUp:
        cut = flag_arg(by_pbx_shutdown)
        return HungUp.parse(await self._run("call_hangup", call_id, at, *pos.args(), cut, self.days.window(at)))

    async def call_transferred(
        self, call_id: str, agent_id: str, kind: str, target: str, at: float, pos: Position
    ) -> TransferStep:
        """The agent transferred the call; ``transferred`` when its leg had already ended."""
        days = self.days.window(at)
        raw = await self._run("call_transfer", call_id, agent_id, kind, target, at, *pos.args(), days)
        return TransferStep.parse(raw)

    async def agent_leg_ended(self, call_id: str, agent_id: str, at: float, pos: Position) -> TransferStep:
        """The agent's leg ended; ``transferred`` when that ends its part in a transferred call."""
        days = self.days.window(at)
        return TransferStep.parse(await self._run("agent_leg_ended", call_id, agent_id, at, *pos.args(), days))

    async def offer_failed(
        self, call_id: str, offer_id: str, at: float, *, channel_gone: bool, pos: Position
    ) -> FailedOffer:
        gone = flag_arg(channel_gone)
        days = self.days.window(at)
        return FailedOffer.parse(await self._run("offer_failed", call_id, offer_id, at, gone, *pos.args(), days))

    async def overflow(self, call_id: str, at: float, from_queue: str, move: OverflowMove | None) -> Overflowed:
        """Overflow a waiting call to another queue (``move``) or, with None, out to a target."""
        if move is None:
            args: tuple[str | float | int, ...] = (call_id, at, from_queue, "", "", 0, 0, "", "", 0, "")
        else:
            args = (
                call_id,
                at,
                from_queue,
                move.queue,
                optional_arg(move.priority),
                move.sl_threshold,
                move.wrapup_s,
                optional_arg(move.relax_due),
                optional_arg(move.overflow_due),
                move.max_hops,
                record_requirements_arg(move.requirements_in_force),
            )
        policy = qa_arg(move.qa if move is not None else None)
        return Overflowed.parse(await self._run("call_overflow", *args, self.days.window(at), policy))
