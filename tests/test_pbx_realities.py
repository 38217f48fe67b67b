"""What a real Asterisk sends that the project's own recipe alone would not: members of
other app_queue queues, a first hold announced after the offer, phones listed unavailable,
a Redirect of a channel already hanging up. AMI fields in, routing state out (real Redis)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from load_tests.amisim.pbx import extension_exists
from router.ami.translate import partition_key
from router.domain import AgentConfig, QueueConfig
from router.envelope import AMI_EVENT, Envelope
from router.inbound import domain_event
from router.settings import AcdSettings
from router.store import Position
from tests.support import EngineHarness
from workers.dispatcher import channel_gone

CALLER = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "1700000000.1", "Linkedid": "1700000000.1"}
AGENT = AgentConfig(id="1001", skills={})


class Pbx:
    """Feeds AMI events, as ingest would envelope them, through translation into the engine."""

    def __init__(self, harness: EngineHarness, roster_queue: str = "acd-agents") -> None:
        self.harness = harness
        self.roster_queue = roster_queue
        self.offset = 0

    async def send(self, fields: dict[str, Any]) -> None:
        self.offset += 1
        at = self.harness.clock.now()
        envelope = Envelope(
            type=AMI_EVENT, id=f"e{self.offset}", source="pbx", ts=at, key=partition_key(fields), data=fields
        )
        event = domain_event(envelope, roster_queue=self.roster_queue)
        if event is not None:
            await self.harness.engine.handle(event, Position("pbx", self.offset), 0)

    async def member(self, event: str, queue: str, *, paused: bool = False, status: int = 1) -> None:
        await self.send(
            {
                "Event": event,
                "Queue": queue,
                "MemberName": "1001",
                "Interface": "PJSIP/1001",
                "StateInterface": "PJSIP/1001",
                "Status": str(status),
                "Paused": "1" if paused else "0",
                "PausedReason": "lunch" if paused else "",
            }
        )

    async def caller(self, event: str, **extra: str) -> None:
        await self.send(CALLER | {"Event": event} | extra)

    async def queued(self) -> None:
        await self.caller("UserEvent", UserEvent="AcdCallQueued", Queue="support")


@pytest.fixture
async def harness(redis: Redis) -> EngineHarness:
    return await EngineHarness(redis, [QueueConfig(name="support")], [AGENT]).start()


async def agent_state(harness: EngineHarness) -> dict[str, str]:
    return await harness.store.agent("1001")


async def test_members_of_other_queues_are_not_the_acd_roster(harness: EngineHarness) -> None:
    pbx = Pbx(harness)
    await pbx.member("QueueMemberAdded", "acd-agents")
    await pbx.member("QueueMemberPause", "sales", paused=True)
    await pbx.member("QueueMemberRemoved", "sales")
    await pbx.member("QueueMember", "Sales", paused=True)
    assert (await agent_state(harness))["state"] == "available"
    await pbx.queued()
    assert harness.sink.last() == (CALLER["Linkedid"], "1001")


async def test_a_renamed_roster_queue_is_the_one_that_counts(harness: EngineHarness) -> None:
    pbx = Pbx(harness, roster_queue="agents-east")
    await pbx.member("QueueMemberAdded", "acd-agents")
    assert (await agent_state(harness))["state"] == "logged_out"
    await pbx.member("QueueMemberAdded", "agents-east")
    assert (await agent_state(harness))["state"] == "available"


def test_the_roster_queue_is_one_setting_for_every_process() -> None:
    assert AcdSettings().ami.roster_queue == "acd-agents"
    older = AcdSettings.model_validate({"api": {"roster_queue": "agents-east"}})
    assert (older.ami.roster_queue, older.api.roster_queue) == ("agents-east", "agents-east")
    newer = AcdSettings.model_validate({"ami": {"roster_queue": "agents-west"}})
    assert (newer.ami.roster_queue, newer.api.roster_queue) == ("agents-west", "agents-west")
    with pytest.raises(ValueError, match=r"ami.roster_queue 'a' and api.roster_queue 'b' differ"):
        AcdSettings.model_validate({"ami": {"roster_queue": "a"}, "api": {"roster_queue": "b"}})


async def test_a_first_hold_announced_after_the_offer_does_not_decline_it(harness: EngineHarness) -> None:
    pbx = Pbx(harness)
    await pbx.member("QueueMemberAdded", "acd-agents")
    await pbx.queued()
    assert harness.sink.last() == (CALLER["Linkedid"], "1001")
    harness.clock.t += 0.01  # MusicOnHoldStart trails the UserEvent on a loaded PBX
    await pbx.caller("MusicOnHoldStart", Class="default")
    agent = await agent_state(harness)
    assert (agent["state"], agent.get("reserved")) == ("available", "1")
    assert await harness.state(CALLER["Linkedid"]) == "offered"
    assert harness.sink.pauses == []


async def test_a_hold_after_the_offers_redirect_is_a_failed_offer(harness: EngineHarness) -> None:
    """Dial of an unreachable phone sends no DialBegin/DialEnd: the caller's return to hold
    after leaving it for the offer is the only sign."""
    pbx = Pbx(harness)
    await pbx.member("QueueMemberAdded", "acd-agents")
    await pbx.caller("MusicOnHoldStart", Class="default")
    await pbx.queued()
    offer = harness.sink.offers[-1]
    await harness.store.claim_offer(offer.call_id, offer.offer_id, harness.clock.now() + 60)
    harness.clock.t += 0.5
    await pbx.caller("MusicOnHoldStop")
    await pbx.caller("MusicOnHoldStart", Class="default")
    assert (await agent_state(harness))["state"] == "paused"
    assert [p.agent_id for p in harness.sink.pauses] == ["1001"]
    assert await harness.state(CALLER["Linkedid"]) == "waiting"


async def test_a_phone_listed_unavailable_is_not_offered_calls(harness: EngineHarness) -> None:
    pbx = Pbx(harness)
    await pbx.member("QueueMember", "acd-agents", status=5)  # the resync's QueueStatus listing
    await pbx.queued()
    assert harness.sink.offers == []
    await pbx.member("QueueMemberStatus", "acd-agents", status=1)  # the phone registered
    assert harness.sink.last() == (CALLER["Linkedid"], "1001")


async def test_a_member_added_with_an_unavailable_phone_waits_for_it(harness: EngineHarness) -> None:
    pbx = Pbx(harness)
    await pbx.queued()
    await pbx.member("QueueMemberAdded", "acd-agents", status=5)
    assert (await agent_state(harness))["state"] == "available"
    assert harness.sink.offers == []
    await pbx.member("QueueMemberStatus", "sales", status=1)  # another queue's view: not ours
    assert harness.sink.offers == []


@pytest.mark.parametrize(
    ("message", "gone"),
    [
        ("Redirect failed, channel not up.", True),  # hanging up: its Hangup follows
        ("Channel does not exist: PJSIP/trunk-00000001", True),
        ("No such channel", True),
        ("Asterisk is shutting down", False),  # the PBX is going away, not the caller
        ("Permission denied", False),
    ],
)
def test_which_redirect_refusals_mean_the_caller_is_gone(message: str, gone: bool) -> None:
    assert channel_gone(message) is gone


# -- the recipe's patterns and the configuration accept the same extensions ------------------


@pytest.mark.parametrize("extension", ["7", "a1", "1001", "agent.b-c_d", "Z"])
def test_any_extension_the_configuration_accepts_is_dialled_by_the_recipe(extension: str) -> None:
    agent = AgentConfig(id="x", extension=extension)
    assert extension_exists("acd-connect", agent.dial_extension, 1)
    assert extension_exists("acd-overflow", agent.dial_extension, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "_hidden"}, r"its id .*'_hidden' cannot be dialled through \[acd-connect\]"),
        ({"id": "a1", "extension": "-5"}, r"its extension '-5' cannot be dialled"),
        ({"id": "a1", "extension": "h"}, r"'h' is one of Asterisk's special extensions"),
        ({"id": "s"}, r"'s' is one of Asterisk's special extensions"),
    ],
)
def test_extensions_the_recipe_cannot_dial_are_refused_at_start_up(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentConfig.model_validate(fields)


@pytest.mark.parametrize("did", ["+15551234567", "5", "5000", "s"])
def test_any_did_enters_the_queue(did: str) -> None:
    assert extension_exists("acd-inbound", did, 1)


def test_a_hangup_in_the_recipes_contexts_runs_only_its_h_line() -> None:
    assert extension_exists("acd-connect", "h", 2) and not extension_exists("acd-connect", "h", 3)
