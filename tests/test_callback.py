"""Callbacks that keep the caller's place (router/callback.py): the pure parts, and the
engine over a real redis-server with commands captured in memory."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from router.ami.translate import translate
from router.callback import clean_number, leg_id, originate_action, parse_leg_id
from router.commands import CallbackCommand, callback_envelope, parse_callback
from router.domain import AgentConfig, CallbackPolicy, QueueConfig
from router.envelope import AMI_EVENT, Envelope
from router.events import (
    CallbackEnded,
    CallbackLegAnswered,
    CallbackLegFailed,
    CallbackRequested,
    CallerHungUp,
    OfferFailed,
)
from router.metrics import StateGauges
from router.settings import CallbackDialSettings
from router.store import NO_POSITION
from router.store.admin import AdminStore
from tests.support import EngineHarness
from workers.api.views import Views
from workers.collector import StateCollector

POLICY = CallbackPolicy(offer_after_s=60, attempts=2, retry_after_s=120)
QUEUES = [
    QueueConfig(name="billing", callback=POLICY),
    QueueConfig(name="late", callback=POLICY.model_copy(update={"sl_from_entry": False, "agent_first": False})),
    QueueConfig(name="plain"),
]
AGENTS = [AgentConfig(id="a1"), AgentConfig(id="a2")]


def command(agent_first: bool = True) -> CallbackCommand:
    return CallbackCommand("0f0f", "1700.5", "a1", "PJSIP/a1", "a1", "+15550001", "Ann", "billing", agent_first, 1.0)


# -- pure -------------------------------------------------------------------------------------


def test_leg_ids_name_the_offer_and_the_call() -> None:
    assert parse_leg_id(leg_id("ab12", "1700.5-x")) == ("ab12", "1700.5-x")
    assert parse_leg_id("1700.5") is None and parse_leg_id("acdcb-ab12") is None


def test_numbers_are_cleaned_or_refused() -> None:
    assert clean_number(" +1 (555) 000-1 ") == "+15550001"
    assert clean_number("555;Dial(x)") is None and clean_number("") is None


def test_agent_first_originate_rings_the_agent_into_the_callback_context() -> None:
    action = originate_action(command(), CallbackDialSettings())
    assert action["Channel"] == "PJSIP/a1" and action["Context"] == "acd-callback"
    assert action["Exten"] == "+15550001" and action["CallerID"] == '"Ann" <+15550001>'
    assert action["ChannelId"] == leg_id("0f0f", "1700.5") and action["Async"] == "true"


def test_caller_first_originate_rings_the_caller_into_the_connect_context() -> None:
    action = originate_action(command(agent_first=False), CallbackDialSettings(caller_id='"Acme" <5551000>'))
    assert action["Channel"] == "PJSIP/+15550001@trunk" and action["Context"] == "acd-callback-connect"
    assert action["Exten"] == "a1" and action["CallerID"] == '"Acme" <5551000>'


def test_callback_commands_survive_their_envelope() -> None:
    assert parse_callback(callback_envelope(command(agent_first=False), "test")) == command(agent_first=False)


def ami(**headers: str) -> Envelope:
    return Envelope(type=AMI_EVENT, id="e", source="t", ts=5.0, key="k", data=headers)


def test_the_translator_knows_callback_events() -> None:
    leg = leg_id("0f0f", "1700.5")
    requested = ami(Event="UserEvent", UserEvent="AcdCallbackRequested", Linkedid="1700.5", Number="555 0001")
    assert translate(requested) == CallbackRequested("1700.5", "5550001", 5.0)
    by_caller_id = ami(Event="UserEvent", UserEvent="AcdCallbackRequested", Linkedid="1700.5", CallerIDNum="5550002")
    assert translate(by_caller_id) == CallbackRequested("1700.5", "5550002", 5.0)
    answered = ami(Event="OriginateResponse", Response="Success", Uniqueid=leg, Reason="4")
    assert translate(answered) == CallbackLegAnswered("1700.5", "0f0f", 1, 5.0)
    refused = ami(Event="OriginateResponse", Response="Failure", Uniqueid=leg, Reason="3")
    assert translate(refused) == CallbackLegFailed("1700.5", "0f0f", 1, "reason 3", 5.0)
    dial_end = ami(Event="DialEnd", Linkedid=leg, DestChannel="PJSIP/trunk-01", DialStatus="NOANSWER")
    assert translate(dial_end) == CallbackLegFailed("1700.5", "0f0f", 2, "NOANSWER", 5.0)
    assert translate(ami(Event="DialEnd", Linkedid=leg, DialStatus="ANSWER", DestChannel="x")) == (
        CallbackLegAnswered("1700.5", "0f0f", 2, 5.0)
    )
    assert translate(ami(Event="Hangup", Uniqueid=leg, Linkedid=leg)) == CallbackEnded("1700.5", "0f0f", 5.0)
    # The second leg's hangup and every other event of the attempt change nothing.
    assert translate(ami(Event="Hangup", Uniqueid="1700.9", Linkedid=leg)) is None
    assert translate(ami(Event="DialBegin", Linkedid=leg, DestChannel="PJSIP/a1-01")) is None


def test_an_originates_own_dial_events_are_not_the_second_leg() -> None:
    """Asterisk 22 reports the Originate's ringing of the first leg as Dial events with only
    the Dest side (no Channel, Uniqueid or Linkedid); its ANSWER is not the second leg's."""
    leg = leg_id("0f0f", "1700.5")
    dest = {"DestChannel": "Local/1002@agent-phones-0000001f;1", "DestUniqueid": leg, "DestLinkedid": leg}
    assert translate(ami(Event="DialBegin", **dest)) is None
    assert translate(ami(Event="DialState", DialStatus="RINGING", **dest)) is None
    assert translate(ami(Event="DialEnd", DialStatus="ANSWER", **dest)) is None


# -- the engine over Redis ----------------------------------------------------------------------


@pytest.fixture
async def harness(redis: Redis) -> EngineHarness:
    return await EngineHarness(redis, QUEUES, AGENTS).start()


async def login(h: EngineHarness, agent_id: str) -> None:
    await h.presence(agent_id)


async def request(h: EngineHarness, call_id: str, number: str = "+15550001") -> None:
    await h.engine.handle(CallbackRequested(call_id, number, h.clock.now()), NO_POSITION, 0)
    await h.engine.handle(CallerHungUp(call_id, "16", h.clock.now()), NO_POSITION, 0)


async def step(h: EngineHarness, event: object) -> None:
    await h.engine.handle(event, NO_POSITION, 0)  # type: ignore[arg-type]


async def test_a_callback_keeps_its_place_and_is_made_when_its_turn_comes(harness: EngineHarness) -> None:
    h = harness
    for call_id in ("c1", "c2", "c3"):
        await h.arrive(call_id, "billing")
        await h.advance(10)
    await request(h, "c2")
    assert await h.state("c2") == "waiting"  # not abandoned: still in line
    assert h.metrics.abandoned.labels("billing")._value.get() == 0
    await login(h, "a1")
    assert h.sink.offers[-1].call_id == "c1" and not h.sink.callbacks  # the caller ahead goes first
    await login(h, "a2")
    assert [c.call_id for c in h.sink.callbacks] == ["c2"]  # then its place comes up
    callback = h.sink.callbacks[0]
    assert (callback.agent_id, callback.number, callback.agent_first) == ("a2", "+15550001", True)
    await h.advance(5)
    await step(h, CallbackLegAnswered("c2", callback.offer_id, 1, h.clock.now()))
    await step(h, CallbackLegAnswered("c2", callback.offer_id, 2, h.clock.now()))
    call = await h.store.call("c2")
    assert call["state"] == "connected" and float(call["answered_at"]) - float(call["entered_at"]) == 25
    assert h.metrics.callback_attempts.labels("billing", "answered")._value.get() == 1
    await h.advance(60)
    await step(h, CallbackEnded("c2", callback.offer_id, h.clock.now()))
    assert await h.state("c2") == "completed"
    stats = await h.store.queue_stats("billing")
    assert (stats["cb_requested"], stats["cb_answered"], stats["answered"]) == (1, 1, 1)


async def test_unanswered_callbacks_wait_then_retry_then_fail(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    await step(h, CallbackLegAnswered("c1", first.offer_id, 1, h.clock.now()))  # the agent took it
    await step(h, CallbackLegFailed("c1", first.offer_id, 2, "NOANSWER", h.clock.now()))
    assert await h.state("c1") == "callback_wait"
    agent = await h.store.agent("a1")
    assert agent["reserved"] == "0" and len(h.sink.callbacks) == 1  # free, but not for c1 yet
    await h.advance(119)
    assert len(h.sink.callbacks) == 1
    await h.advance(2)
    second = h.sink.callbacks[-1]
    assert len(h.sink.callbacks) == 2 and second.call_id == "c1"
    # The agent took it, then hung up while the caller's leg still rang.
    await step(h, CallbackLegAnswered("c1", second.offer_id, 1, h.clock.now()))
    await step(h, CallbackEnded("c1", second.offer_id, h.clock.now()))
    call = await h.store.call("c1")
    assert call["state"] == "callback_failed" and call["cb_attempts"] == "2"
    assert h.metrics.callbacks_failed.labels("billing")._value.get() == 1
    assert h.metrics.callback_attempts.labels("billing", "unanswered")._value.get() == 2
    assert not await h.store.redis.sismember(h.store.keys.callbacks, "c1")


async def test_an_agent_who_rejects_the_preview_sends_the_call_back_to_its_place(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    await step(h, CallbackLegFailed("c1", first.offer_id, 1, "reason 3", h.clock.now()))
    call = await h.store.call("c1")
    assert call["state"] == "waiting" and call.get("cb_attempts") == "0"  # not the caller's failure
    await login(h, "a2")
    assert h.sink.callbacks[-1].agent_id == "a2"  # never offered to a1 again


def rang_out(offer_id: str, at: float, *, hangup_first: bool) -> list[object]:
    """An Originate's leg that rang out: Asterisk 22 sends its Hangup (through stasis) and
    the failed OriginateResponse (directly) in either order (seen with tests/test_real_asterisk.py)."""
    events: list[object] = [
        CallbackEnded("c1", offer_id, at),
        CallbackLegFailed("c1", offer_id, 1, "reason 3", at),
    ]
    return events if hangup_first else events[::-1]


@pytest.mark.parametrize("hangup_first", [True, False], ids=["hangup-first", "response-first"])
async def test_a_preview_that_rings_out_is_one_rejection_whichever_event_comes_first(
    harness: EngineHarness, hangup_first: bool
) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    for event in rang_out(first.offer_id, h.clock.now(), hangup_first=hangup_first):
        await step(h, event)
    call = await h.store.call("c1")
    assert call["state"] == "waiting" and call.get("cb_attempts") == "0"
    assert h.metrics.callback_attempts.labels("billing", "rejected")._value.get() == 1
    # Paused in Asterisk's roster queue too, as after any ring-no-answer: else the roster's
    # next event for the agent (unpaused there) would make it available again at once.
    assert [(p.agent_id, p.reason) for p in h.sink.pauses] == [("a1", "ring-no-answer")]
    await login(h, "a2")
    assert h.sink.callbacks[-1].agent_id == "a2"


@pytest.mark.parametrize("hangup_first", [True, False], ids=["hangup-first", "response-first"])
async def test_caller_first_a_caller_who_does_not_answer_is_retried(
    harness: EngineHarness, hangup_first: bool
) -> None:
    h = harness
    await h.arrive("c1", "late")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    assert first.agent_first is False
    for event in rang_out(first.offer_id, h.clock.now(), hangup_first=hangup_first):  # the caller's leg
        await step(h, event)
    call = await h.store.call("c1")
    assert call["state"] == "callback_wait" and call["cb_attempts"] == "1"
    assert (await h.store.agent("a1"))["reserved"] == "0"
    assert h.metrics.callback_attempts.labels("late", "unanswered")._value.get() == 1


async def test_caller_first_an_agent_who_lets_it_ring_sends_the_call_back_to_its_place(
    harness: EngineHarness,
) -> None:
    h = harness
    await h.arrive("c1", "late")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    await step(h, CallbackLegAnswered("c1", first.offer_id, 1, h.clock.now()))  # the caller answered
    await step(h, CallbackLegFailed("c1", first.offer_id, 2, "NOANSWER", h.clock.now()))  # a1 did not
    await step(h, CallbackEnded("c1", first.offer_id, h.clock.now()))  # the apology, then Hangup
    call = await h.store.call("c1")
    assert call["state"] == "waiting" and call.get("cb_attempts") == "0" and call.get("cb_first") == ""
    await login(h, "a2")
    second = h.sink.callbacks[-1]
    assert second.agent_id == "a2"
    await step(h, CallbackLegAnswered("c1", second.offer_id, 1, h.clock.now()))
    await step(h, CallbackLegAnswered("c1", second.offer_id, 2, h.clock.now()))
    assert await h.state("c1") == "connected"


async def test_a_refused_originate_is_an_attempt_and_late_events_change_nothing(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await request(h, "c1")
    await login(h, "a1")
    first = h.sink.callbacks[-1]
    await h.store.claim_offer("c1", first.offer_id, h.clock.now() + 60)
    await step(h, OfferFailed("c1", first.offer_id, "a1", "Originate failed", False, h.clock.now()))
    assert await h.state("c1") == "callback_wait"
    await step(h, CallbackLegAnswered("c1", first.offer_id, 2, h.clock.now()))  # a stale offer
    assert await h.state("c1") == "callback_wait"


async def test_service_level_may_count_from_the_request(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "late")
    await h.advance(50)
    await request(h, "c1")
    await h.advance(10)
    await login(h, "a1")
    callback = h.sink.callbacks[-1]
    assert callback.agent_first is False
    await step(h, CallbackLegAnswered("c1", callback.offer_id, 1, h.clock.now()))  # the caller
    await step(h, CallbackLegAnswered("c1", callback.offer_id, 2, h.clock.now()))  # the agent
    stats = await h.store.queue_stats("late")
    assert stats["answer_wait_sum"] == 10 and stats["answered_within"] == 1


async def test_a_queue_without_callbacks_refuses_the_request(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "plain")
    await request(h, "c1")
    assert await h.state("c1") == "abandoned"


async def test_a_live_offer_in_flight_goes_back_in_line_when_the_caller_hangs_up(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await login(h, "a1")  # offered to the live caller (a Redirect)
    assert h.sink.offers[-1].call_id == "c1"
    await request(h, "c1")  # then the caller pressed the key and hung up: the offer is withdrawn
    assert h.metrics.abandoned.labels("billing")._value.get() == 0
    # ... and the agent it freed calls the caller back.
    assert h.sink.callbacks[-1].call_id == "c1" and h.sink.callbacks[-1].agent_id == "a1"
    assert (await h.store.agent("a1"))["reserved"] == "1"


# -- what supervisors see ----------------------------------------------------------------------


async def test_waiting_callbacks_are_listed_counted_and_gauged(harness: EngineHarness) -> None:
    h = harness
    await h.arrive("c1", "billing")
    await h.arrive("c2", "billing")
    await request(h, "c2", "+15550002")
    views = Views(h.store, AdminStore(h.store.redis, "e"), {q.name: q for q in QUEUES}, h.clock)
    listed = await views.callbacks_json()
    assert [(c["call_id"], c["number"], c["state"], c["attempts"]) for c in listed] == [
        ("c2", "+15550002", "waiting", 0)
    ]
    assert await views.callbacks_json("plain") == []
    billing = next(q for q in await views.queue_summaries() if q["name"] == "billing")
    assert (billing["waiting"], billing["callbacks_waiting"], billing["callbacks_requested"]) == (2, 1, 1)
    registry = CollectorRegistry()
    collector = StateCollector(h.store, h.store, StateGauges(registry), QUEUES, h.clock, callbacks=h.store)
    await collector.collect_once(1.0)
    assert registry.get_sample_value("acd_callbacks_waiting", {"queue": "billing"}) == 1
    assert registry.get_sample_value("acd_callbacks_waiting", {"queue": "plain"}) == 0
