"""Recording sampled calls: the AMI simulator answers MixMonitor as Asterisk 22.10.1 does
(checked against a real one, docs/asterisk.md), and the dispatcher turns a RecordCommand into
MixMonitor on the caller's channel, logging and counting every failure without retrying it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.amisim.testing import DEFAULT_USERS, RawClient, simulator
from router.ami.gateway import AmiGateway
from router.clock import ScaledClock
from router.commands import RecordCommand, parse_record, record_envelope
from router.domain import AgentConfig, QaPolicy
from router.metrics import DispatchMetrics
from router.settings import AcdSettings, AmiSettings
from router.store import NO_POSITION, NewCall, RedisRoutingStore, RedisStateStore
from workers.dispatcher import Dispatcher, recording_failure

NO_SYSTEM = AmiUser(
    "no-system-secret",
    read=frozenset({"system", "call", "agent", "user"}),
    write=frozenset({"call", "reporting", "agent"}),  # the recipe before recordings
)
USERS = {**DEFAULT_USERS, "old-recipe": NO_SYSTEM}


@pytest.fixture
async def env() -> AsyncIterator[tuple[Pbx, AmiSimulator]]:
    async with simulator(users=USERS) as (pbx, sim):
        pbx.add_agent("1001", answer_delay_s=1.0)
        yield pbx, sim
        assert pbx.errors == []


async def router_client(sim: AmiSimulator, user: str = "acd-router") -> RawClient:
    client = await RawClient.connect(sim)
    reply = await client.login(user, USERS[user].secret, events="off")
    assert reply["Response"] == "Success"
    return client


# -- the simulator -----------------------------------------------------------------------------


async def test_mixmonitor_succeeds_without_a_message_and_mixmonitorstart_follows(
    env: tuple[Pbx, AmiSimulator],
) -> None:
    pbx, sim = env
    call = pbx.place_call("support", handle_time_s=30)
    admin = await RawClient.connect(sim)
    await admin.login("admin", USERS["admin"].secret)
    client = await router_client(sim)
    await client.send(
        f"Action: MixMonitor\r\nActionID: M1\r\nChannel: {call.channel.name}\r\n"
        "File: acd-1.wav\r\nOptions: b\r\n\r\n"
    )
    # Asterisk 22's manager_mixmonitor: Response and ActionID, no Message.
    assert await client.read_raw() == b"Response: Success\r\nActionID: M1\r\n\r\n"
    while (event := await admin.read_message())["Event"] != "MixMonitorStart":
        pass
    assert (event["Privilege"], event["Channel"], event["Linkedid"]) == (
        "call,all",
        call.channel.name,
        call.call_id,
    )
    [started] = pbx.ledger.recordings
    assert (started.channel, started.call_id, started.path, started.options) == (
        call.channel.name,
        call.call_id,
        "/var/spool/asterisk/monitor/acd-1.wav",
        "b",
    )
    await client.close()
    await admin.close()


async def test_mixmonitor_errors_are_asterisks(env: tuple[Pbx, AmiSimulator]) -> None:
    pbx, sim = env
    call = pbx.place_call("support", handle_time_s=30)
    client = await router_client(sim)
    reply = await client.action("MixMonitor", File="x.wav")
    assert reply["Message"] == "No channel specified"
    reply = await client.action("MixMonitor", Channel="PJSIP/trunk-gone", File="x.wav")
    assert (reply["Response"], reply["Message"]) == ("Error", "No such channel")
    reply = await client.action("MixMonitor", Channel=call.channel.name)  # nothing to write to
    assert reply["Message"] == "Could not start monitoring channel"
    reply = await client.action("MixMonitor", Channel=call.channel.name, File="y.wav", Options="bi(MIXID)")
    assert reply["Response"] == "Success" and reply["MixMonitorID"]
    assert call.channel.variables["MIXID"] == reply["MixMonitorID"]
    await client.close()
    # MixMonitor is write class system (its Command option runs a shell command).
    old = await router_client(sim, "old-recipe")
    reply = await old.action("MixMonitor", Channel=call.channel.name, File="z.wav")
    assert (reply["Response"], reply["Message"]) == ("Error", "Permission denied")
    await old.close()
    assert [r.path.rsplit("/", 1)[1] for r in pbx.ledger.recordings] == ["y.wav"]


def test_asterisks_refusals_are_named_for_the_metric() -> None:
    assert recording_failure("No such channel") == "channel_gone"
    assert recording_failure("Permission denied") == "permission_denied"
    assert (
        recording_failure(
            "Invalid/unknown command: MixMonitor. Use Action: ListCommands to show available commands."
        )
        == "not_available"
    )
    assert recording_failure("Could not start monitoring channel") == "refused"


def test_the_record_command_travels_as_routing_record() -> None:
    command = RecordCommand("1767225600.17", "PJSIP/trunk-0001", "acd-1767225600.17.wav", "a1", "q", 5.0)
    envelope = record_envelope(command, "router:main")
    assert (envelope.type, envelope.key) == ("routing.record", "call:1767225600.17")
    assert parse_record(envelope) == command


# -- the dispatcher ----------------------------------------------------------------------------


class DispatcherHarness:
    """The dispatcher's record path in-process: its AMI gateway to the simulator, a real Redis."""

    def __init__(self, redis: Redis, sim: AmiSimulator, user: str) -> None:
        self.settings = AcdSettings(site="rec", queues=())
        ami = AmiSettings(
            port=sim.port, username=user, secret=SecretStr(USERS[user].secret), reconnect_min_s=0.05
        )
        self.gateway = AmiGateway(ami, events=False)
        self.metrics = DispatchMetrics(CollectorRegistry())
        self.state = RedisStateStore(redis, "rec")
        self.dispatcher = Dispatcher(
            self.settings,
            gateway=self.gateway,
            store=RedisRoutingStore(redis, "rec"),
            reader=cast(Any, None),  # commands are handed over directly
            producer=cast(Any, None),
            clock=ScaledClock(),
            metrics=self.metrics,
        )

    def count(self, result: str) -> float:
        return self.metrics.recordings.labels(result)._value.get()

    async def answered_call(self, call_id: str, channel: str) -> RecordCommand:
        """A call answered by a1 and sampled for recording, as the routing worker leaves it."""
        store, now = self.state, 1_800_000_000.0
        await store.upsert_agent(AgentConfig(id="a1"), now)
        await store.agent_presence("a1", "available", "", now, NO_POSITION)
        policy = QaPolicy(sample_share=1.0, record=True)
        new = NewCall(call_id, "q", 0, False, None, channel, now, None, None, 20.0, 0.0, qa=policy)
        await store.enqueue(new, NO_POSITION)
        await store.reserve(call_id, "a1", f"o-{call_id}", now, now + 10, "{}")
        answered = await store.agent_answered(call_id, "a1", now + 1, NO_POSITION, qa_seed="s")
        assert answered.record_now
        return RecordCommand(call_id, answered.channel, answered.recording, "a1", "q", now + 1)


async def test_the_dispatcher_starts_the_recording_once(
    redis: Redis, env: tuple[Pbx, AmiSimulator], caplog: pytest.LogCaptureFixture
) -> None:
    pbx, sim = env
    caplog.set_level(logging.INFO)
    call = pbx.place_call("support", handle_time_s=30)
    harness = DispatcherHarness(redis, sim, "acd-router")
    await harness.gateway.connect()
    command = await harness.answered_call(call.call_id, call.channel.name)
    await harness.dispatcher.record(command)
    await harness.dispatcher.record(command)  # Kafka redelivers the command
    [started] = pbx.ledger.recordings
    assert (started.channel, started.path, started.options) == (
        call.channel.name,
        f"/var/spool/asterisk/monitor/acd-{call.call_id}.wav",
        "b",
    )
    assert (harness.count("started"), harness.count("skipped")) == (1, 1)
    assert f"recording call {call.call_id} to acd-{call.call_id}.wav" in caplog.text
    await harness.gateway.close()


async def test_a_caller_gone_before_the_recording_is_counted_not_retried(
    redis: Redis, env: tuple[Pbx, AmiSimulator]
) -> None:
    pbx, sim = env
    harness = DispatcherHarness(redis, sim, "acd-router")
    await harness.gateway.connect()
    command = await harness.answered_call("1800000000.5", "PJSIP/trunk-00000099")  # no such channel
    await harness.dispatcher.record(command)
    assert harness.count("channel_gone") == 1 and pbx.ledger.recordings == []
    assert harness.metrics.actions.labels("MixMonitor", "error")._value.get() == 1
    await harness.gateway.close()


async def test_a_user_without_write_system_is_told_what_to_change(
    redis: Redis, env: tuple[Pbx, AmiSimulator], caplog: pytest.LogCaptureFixture
) -> None:
    pbx, sim = env
    call = pbx.place_call("support", handle_time_s=30)
    harness = DispatcherHarness(redis, sim, "old-recipe")
    await harness.gateway.connect()
    command = await harness.answered_call(call.call_id, call.channel.name)
    await harness.dispatcher.record(command)  # no exception: routing goes on
    assert harness.count("permission_denied") == 1 and pbx.ledger.recordings == []
    assert "needs 'write = system' in manager.conf for MixMonitor" in caplog.text
    await harness.gateway.close()


async def test_a_call_over_before_its_command_is_not_recorded(
    redis: Redis, env: tuple[Pbx, AmiSimulator]
) -> None:
    pbx, sim = env
    call = pbx.place_call("support", handle_time_s=30)
    harness = DispatcherHarness(redis, sim, "acd-router")
    await harness.gateway.connect()
    command = await harness.answered_call(call.call_id, call.channel.name)
    await harness.state.caller_hung_up(call.call_id, 1_800_000_060.0, NO_POSITION)
    await harness.dispatcher.record(command)
    assert harness.count("skipped") == 1 and pbx.ledger.recordings == []
    await harness.gateway.close()
