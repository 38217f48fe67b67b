"""Transfers: the agent who hands a caller on is freed when its leg ends, the call says it
was transferred, and a caller sent back into a queue waits again (issue 11, defect 3)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from router.ami.translate import partition_key, translate
from router.domain import AgentConfig, QueueConfig
from router.envelope import AMI_EVENT, Envelope
from router.events import AgentAnswered, AgentLegEnded, AgentRang, CallerHungUp, CallQueued, CallTransferred
from router.store import Position
from tests.support import EngineHarness

CALL = "1700000000.1"
AGENT_LEG = {"Channel": "PJSIP/a1-00000002", "Uniqueid": "1700000000.2", "Linkedid": CALL}


def ami(fields: dict[str, Any], ts: float = 100.0) -> Envelope:
    return Envelope(type=AMI_EVENT, id="e1", source="test", ts=ts, key=partition_key(fields), data=fields)


def snapshot(prefix: str, channel: str, uniqueid: str, linkedid: str = CALL) -> dict[str, str]:
    return {f"{prefix}Channel": channel, f"{prefix}Uniqueid": uniqueid, f"{prefix}Linkedid": linkedid}


BLIND = (
    {"Event": "BlindTransfer", "Result": "Success"}
    | snapshot("Transferer", "PJSIP/a1-00000002", "1700000000.2")
    | snapshot("Transferee", "PJSIP/trunk-00000001", CALL)
    | {"BridgeUniqueid": "b1", "IsExternal": "No", "Context": "acd-inbound", "Extension": "5000"}
)
ATTENDED = (
    {"Event": "AttendedTransfer", "Result": "Success"}
    | snapshot("OrigTransferer", "PJSIP/a1-00000002", "1700000000.2")
    | {"OrigBridgeUniqueid": "b1"}
    | snapshot("SecondTransferer", "PJSIP/a1-00000003", "1700000000.3")
    | snapshot("Transferee", "PJSIP/trunk-00000001", CALL)
    | snapshot("TransferTarget", "PJSIP/outside-00000004", "1700000000.4")
    | {"IsExternal": "No", "DestType": "Bridge", "DestBridgeUniqueid": "b1"}
)


# -- translation ----------------------------------------------------------------------------


def test_transfer_events_are_keyed_to_the_call_they_belong_to() -> None:
    # No bare Linkedid in a transfer event: only the legs' prefixed snapshots.
    assert partition_key(BLIND) == f"call:{CALL}"
    assert partition_key(ATTENDED) == f"call:{CALL}"


def test_blind_and_attended_transfers_become_call_transferred() -> None:
    assert translate(ami(BLIND)) == CallTransferred(CALL, "PJSIP/a1", "blind", "acd-inbound,5000", 100.0)
    assert translate(ami(ATTENDED)) == CallTransferred(
        CALL, "PJSIP/a1", "attended", "PJSIP/outside-00000004", 100.0
    )


def test_failed_transfers_change_nothing() -> None:
    assert translate(ami(BLIND | {"Result": "Invalid"})) is None
    assert translate(ami(ATTENDED | {"Result": "Fail", "DestType": "Fail"})) is None


def test_agent_leg_leaving_the_bridge_or_hanging_up_ends_its_part() -> None:
    leave = {"Event": "BridgeLeave", "BridgeUniqueid": "b1"} | AGENT_LEG
    hangup = {"Event": "Hangup", "Cause": "16"} | AGENT_LEG
    assert translate(ami(leave)) == AgentLegEnded(CALL, "PJSIP/a1", 100.0)
    assert translate(ami(hangup)) == AgentLegEnded(CALL, "PJSIP/a1", 100.0)
    caller = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": CALL, "Linkedid": CALL}
    assert translate(ami({"Event": "BridgeLeave", "BridgeUniqueid": "b1"} | caller)) is None
    assert translate(ami({"Event": "Hangup", "Cause": "16"} | caller)) == CallerHungUp(CALL, "16", 100.0)


# -- the engine over a real Redis -----------------------------------------------------------

QUEUES = [QueueConfig(name="support", wrapup_s=10)]
AGENTS = [AgentConfig(id="a1"), AgentConfig(id="a2")]


class Kafka:
    """Positions of one partition, in order, as the routing worker passes them."""

    def __init__(self) -> None:
        self.offset = 0

    def next(self) -> Position:
        self.offset += 1
        return Position("acd.ami.events.v1:0", self.offset)


@pytest.fixture
async def h(redis: Redis) -> EngineHarness:
    harness = await EngineHarness(redis, QUEUES, AGENTS).start()
    await harness.presence("a1")
    return harness


async def connect(h: EngineHarness, kafka: Kafka, agent: str = "a1") -> None:
    """A caller waits, the only free agent answers after 3 s."""
    if await h.state(CALL) == "":
        await h.arrive(CALL, "support", kafka.next())
    assert h.sink.last() == (CALL, agent)
    device = f"PJSIP/{agent}"
    await h.engine.handle(AgentRang(CALL, device, h.clock.now()), kafka.next(), 0)
    h.clock.t += 3
    await h.engine.handle(AgentAnswered(CALL, device, h.clock.now()), kafka.next(), 0)
    assert await h.state(CALL) == "connected"


async def transfer(
    h: EngineHarness, kafka: Kafka, kind: str = "blind", target: str = "outside,900"
) -> Position:
    pos = kafka.next()
    await h.engine.handle(CallTransferred(CALL, "PJSIP/a1", kind, target, h.clock.now()), pos, 0)
    return pos


async def leg_ends(h: EngineHarness, kafka: Kafka, agent: str = "a1") -> None:
    await h.engine.handle(AgentLegEnded(CALL, f"PJSIP/{agent}", h.clock.now()), kafka.next(), 0)


@pytest.mark.parametrize("kind", ["blind", "attended"])
async def test_transfer_out_frees_the_agent_into_wrap_up_when_its_leg_ends(
    h: EngineHarness, kind: str
) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 40
    await transfer(h, kafka, kind)
    await leg_ends(h, kafka)  # BridgeLeave of the agent's leg
    await leg_ends(h, kafka)  # its Hangup: nothing more
    agent = await h.store.agent("a1")
    assert agent["state"] == "wrap_up" and agent["connected"] == "0"
    assert float(agent["handled_s"]) == 40
    call = await h.store.call(CALL)
    assert (call["state"], call["outcome"], call["xfer_kind"], call["transfers"]) == (
        "transferred",
        "transferred",
        kind,
        "1",
    )
    assert float(call["talk_s"]) == 40
    # The caller talks on with whoever it was transferred to, then hangs up: the ACD's
    # part is over, so this is neither more talk time nor an abandoned call.
    h.clock.t += 300
    await h.engine.handle(CallerHungUp(CALL, "16", h.clock.now()), kafka.next(), 0)
    stats = await h.store.queue_stats("support")
    assert (stats["answered"], stats["completed"], stats["transferred"], stats["talk_sum"]) == (1, 1, 1, 40)
    assert stats.get("abandoned", 0) == 0
    assert float((await h.store.agent("a1"))["handled_s"]) == 40
    assert await h.state(CALL) == "transferred"
    assert h.metrics.transferred.labels("support")._value.get() == 1
    await h.advance(10)
    assert (await h.store.agent("a1"))["state"] == "available"


async def test_leg_ending_before_the_transfer_event_still_frees_the_agent(h: EngineHarness) -> None:
    # Asterisk publishes BridgeLeave and AttendedTransfer from different threads.
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 20
    await leg_ends(h, kafka)
    assert await h.state(CALL) == "connected"  # not yet known to be a transfer
    h.clock.t += 1
    await transfer(h, kafka, "attended")
    assert (await h.store.agent("a1"))["state"] == "wrap_up"
    assert float((await h.store.call(CALL))["talk_s"]) == 20


async def test_an_ordinary_call_still_ends_with_the_callers_hangup(h: EngineHarness) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 30
    await leg_ends(h, kafka)
    h.clock.t += 1
    await h.engine.handle(CallerHungUp(CALL, "16", h.clock.now()), kafka.next(), 0)
    assert await h.state(CALL) == "completed"
    assert (await h.store.queue_stats("support")).get("transferred", 0) == 0


async def test_transfer_back_into_the_queue_waits_again_and_goes_to_another_agent(h: EngineHarness) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 40
    await transfer(h, kafka, target="acd-inbound,5000")
    await leg_ends(h, kafka)
    await h.presence("a2")
    h.clock.t += 1
    requeued_at = h.clock.now()
    await h.arrive(CALL, "support", kafka.next())  # [acd-inbound] announces the caller again
    # a1 is in wrap-up: the call goes to a2, as a new wait in the queue.
    assert h.sink.last() == (CALL, "a2")
    call = await h.store.call(CALL)
    assert float(call["entered_at"]) == requeued_at and call["agent"] == "a2"
    assert float(call["first_entered_at"]) < requeued_at
    await connect(h, kafka, "a2")
    h.clock.t += 30
    await h.engine.handle(CallerHungUp(CALL, "16", h.clock.now()), kafka.next(), 0)
    assert await h.state(CALL) == "completed"
    stats = await h.store.queue_stats("support")
    assert (stats["offered"], stats["transfer_in"], stats["answered"], stats["completed"]) == (2, 1, 2, 2)
    assert stats["talk_sum"] == 70


async def test_caller_back_in_queue_before_the_agent_leg_ended_releases_the_agent(h: EngineHarness) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 40
    await transfer(h, kafka, target="acd-inbound,5000")
    await h.arrive(CALL, "support", kafka.next())
    assert await h.state(CALL) == "waiting"
    assert (await h.store.agent("a1"))["state"] == "wrap_up"
    await leg_ends(h, kafka)  # late: changes nothing
    assert await h.state(CALL) == "waiting"


async def test_redelivered_transfer_and_announcement_change_nothing(h: EngineHarness) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 40
    pos = await transfer(h, kafka, target="acd-inbound,5000")
    await leg_ends(h, kafka)
    announce = kafka.next()
    await h.arrive(CALL, "support", announce)
    before = (await h.store.call(CALL), await h.store.queue_stats("support"), await h.store.agent("a1"))
    h.clock.t += 5
    await h.engine.handle(
        CallTransferred(CALL, "PJSIP/a1", "blind", "acd-inbound,5000", h.clock.now()), pos, 0
    )
    await h.arrive(CALL, "support", announce)
    after = (await h.store.call(CALL), await h.store.queue_stats("support"), await h.store.agent("a1"))
    assert after == before
    assert h.metrics.transferred.labels("support")._value.get() == 1


async def test_a_resync_listing_does_not_bring_a_transferred_caller_back(h: EngineHarness) -> None:
    kafka = Kafka()
    await connect(h, kafka)
    await transfer(h, kafka)
    await leg_ends(h, kafka)
    event = CallQueued(CALL, "PJSIP/trunk-1", "support", h.clock.now(), resynced=True)
    await h.engine.handle(event, kafka.next(), 0)
    assert await h.state(CALL) == "transferred"


async def test_the_reported_blind_transfer_frees_the_agent_from_the_ami_events(h: EngineHarness) -> None:
    """Issue 11: after BlindTransfer, BridgeLeave and Hangup of its leg the agent stayed on
    the call until the caller hung up elsewhere, and that talk counted."""
    kafka = Kafka()
    await connect(h, kafka)
    h.clock.t += 40
    leg = {"Channel": "PJSIP/a1-00000002", "Uniqueid": "1700000000.2", "Linkedid": CALL}
    for fields in (
        BLIND | {"Context": "outside", "Extension": "900"},
        {"Event": "BridgeLeave", "BridgeUniqueid": "b1"} | leg,
        {"Event": "Hangup", "Cause": "16", "Cause-txt": "Normal Clearing"} | leg,
    ):
        event = translate(ami(fields, ts=h.clock.now()))
        if event is not None:
            await h.engine.handle(event, kafka.next(), 0)
    assert (await h.store.agent("a1"))["state"] == "wrap_up"
    h.clock.t += 600
    hangup = {
        "Event": "Hangup",
        "Cause": "16",
        "Channel": "PJSIP/trunk-00000001",
        "Uniqueid": CALL,
        "Linkedid": CALL,
    }
    event = translate(ami(hangup, ts=h.clock.now()))
    assert event is not None
    await h.engine.handle(event, kafka.next(), 0)
    assert (await h.store.queue_stats("support"))["talk_sum"] == 40
