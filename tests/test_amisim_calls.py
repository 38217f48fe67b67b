"""AMI simulator call flows as a panoramisk client sees them, checked against the ledger.

Simulated time runs 50 times faster than real time; ``Timestamp`` headers are simulated
seconds, so durations are asserted on them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from panoramisk import Message

from load_tests.amisim.calls import SimCall
from load_tests.amisim.ledger import DoubleAssignment
from load_tests.amisim.pbx import Pbx
from load_tests.amisim.server import AmiSimulator
from load_tests.amisim.testing import ADMIN, SimManager, open_manager, simulator
from load_tests.scenario import Scenario
from load_tests.traffic import TrafficGenerator

SLACK = 5.0  # simulated seconds of scheduling jitter tolerated (100 ms real)
SNAPSHOT_KEYS = [
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
    "ChanVariable",
]


class Env:
    def __init__(self, pbx: Pbx, sim: AmiSimulator, admin: SimManager, router: SimManager) -> None:
        self.pbx, self.sim, self.admin, self.router = pbx, sim, admin, router

    async def redirect(self, call: SimCall, exten: str, context: str = "acd-connect") -> Message:
        return await self.admin.send_action(
            {
                "Action": "Redirect",
                "Channel": call.channel.name,
                "Context": context,
                "Exten": exten,
                "Priority": "1",
            }
        )

    async def on_hold(self, call: SimCall, times: int = 1) -> None:
        def holding(e: Message) -> bool:
            return e.event == "MusicOnHoldStart" and e.uniqueid == call.call_id

        await self.admin.wait_for(lambda _e: len([x for x in self.admin.events if holding(x)]) >= times)

    async def hung_up(self, channel: str, within: float = 5.0) -> Message:
        return await self.admin.wait_event("Hangup", within, Channel=channel)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with simulator(time_scale=50.0) as (pbx, sim):
        admin, _ = await open_manager(sim, "admin", ADMIN.secret)
        router, _ = await open_manager(sim, "acd-router", "router-secret")
        await admin.wait_event("FullyBooted")
        await router.wait_event("FullyBooted")
        yield Env(pbx, sim, admin, router)
        admin.close()
        router.close()
        assert pbx.errors == []


def related(manager: SimManager, call: SimCall, device: str | None = None) -> list[Message]:
    """Events about one call (both legs and its bridge) and, optionally, one phone."""
    linked = call.channel.linkedid
    bridges = {e.bridgeuniqueid for e in manager.events if e.linkedid == linked and e.bridgeuniqueid}
    return [
        e
        for e in manager.events
        if e.linkedid == linked
        or e.destlinkedid == linked
        or (e.bridgeuniqueid and e.bridgeuniqueid in bridges)
        or (device is not None and e.device == device)
    ]


def after(events: list[Message], name: str) -> list[Message]:
    index = next(i for i, e in enumerate(events) if e.event == name)
    return events[index:]


def names(events: list[Message]) -> list[str]:
    return [e.event for e in events]


def stamp(event: Message) -> float:
    return float(event.timestamp)


def body_keys(event: Message) -> list[str]:
    return [k for k in event if k not in ("Event", "Privilege", "Timestamp", "content")]


# -- arrival ------------------------------------------------------------------------------


async def test_arrival_announces_the_call_with_full_snapshots(env: Env) -> None:
    call = env.pbx.place_call(
        "billing",
        priority=2,
        requirements="billing>=3&spanish>=2",
        handle_time_s=60,
        caller_id="+15551234",
        caller_name="Ann Smith",
        did="5001",
    )
    await env.on_hold(call)
    events = related(env.admin, call)
    assert names(events) == [
        "Newchannel",
        "VarSet",
        "VarSet",
        "Newstate",
        "VarSet",
        "UserEvent",
        "MusicOnHoldStart",
    ]
    new = events[0]
    assert body_keys(new) == SNAPSHOT_KEYS
    assert re.fullmatch(r"PJSIP/trunk-[0-9a-f]{8}", new.channel)
    assert re.fullmatch(r"\d+\.\d+", new.uniqueid) and new.uniqueid == new.linkedid == call.call_id
    assert (new.channelstate, new.channelstatedesc) == ("4", "Ring")
    assert (new.calleridnum, new.calleridname, new.connectedlinenum) == (
        "+15551234",
        "Ann Smith",
        "<unknown>",
    )
    # The announcement carries the caller's snapshot: the router reads who called there.
    announced = next(e for e in events if e.event == "UserEvent")
    assert (announced.calleridnum, announced.calleridname) == ("+15551234", "Ann Smith")
    assert (new.context, new.exten, new.priority, new.language) == ("acd-inbound", "5001", "1", "en")
    assert new.privilege == "call,all" and re.fullmatch(r"\d+\.\d{6}", new.timestamp)
    assert [(e.variable, e.value) for e in events if e.event == "VarSet"] == [
        ("ACD_REQUIREMENTS", "billing>=3&spanish>=2"),
        ("ACD_PRIORITY", "2"),
        ("ACD_QUEUE", "billing"),
    ]
    assert {e.privilege for e in events if e.event == "VarSet"} == {"dialplan,all"}
    assert (events[3].channelstate, events[3].channelstatedesc) == ("6", "Up")
    user = events[5]
    assert user.privilege == "user,all" and user.userevent == "AcdCallQueued"
    # The snapshot's dialplan priority (4) comes first, the UserEvent's own header last.
    assert (user.queue, user.priority, user.requirements) == ("billing", ["4", "2"], "billing>=3&spanish>=2")
    assert user.chanvariable == [
        "ACD_QUEUE=billing",
        "ACD_PRIORITY=2",
        "ACD_REQUIREMENTS=billing>=3&spanish>=2",
        "ACD_PREFERRED_AGENT=",
    ]
    hold = events[6]
    assert (hold.context, hold.exten, hold.get("Class")) == ("acd-hold", "s", "default")
    record = env.pbx.ledger.calls[call.call_id]
    assert (record.state, record.queue, record.priority) == ("holding", "billing", 2)
    assert record.requirements == "billing>=3&spanish>=2"
    # The router's account does not read the dialplan class.
    await env.router.wait_event("MusicOnHoldStart", Uniqueid=call.call_id)
    assert names(related(env.router, call)) == ["Newchannel", "Newstate", "UserEvent", "MusicOnHoldStart"]


async def test_requirements_header_is_empty_when_not_given(env: Env) -> None:
    call = env.pbx.place_call("support", handle_time_s=60)
    user = await env.router.wait_event("UserEvent", Uniqueid=call.call_id)
    # Without overrides ACD_PRIORITY stays empty: the router applies the queue's default.
    assert (user.queue, user.priority, user.requirements) == ("support", ["4", ""], "")
    assert "ACD_REQUIREMENTS=" in user.chanvariable
    assert user.preferredagent == "" and "ACD_PREFERRED_AGENT=" in user.chanvariable


async def test_a_preferred_agent_a_crm_lookup_set_is_announced(env: Env) -> None:
    call = env.pbx.place_call("support", handle_time_s=60, caller_id="+15550000001", preferred_agent="a7")
    user = await env.router.wait_event("UserEvent", Uniqueid=call.call_id)
    assert (user.preferredagent, user.calleridnum) == ("a7", "+15550000001")
    assert "ACD_PREFERRED_AGENT=a7" in user.chanvariable
    assert env.pbx.ledger.calls[call.call_id].preferred_agent == "a7"


# -- answered, unanswered, busy, unavailable ----------------------------------------------------


async def test_answered_call_runs_dial_bridge_and_hangup_in_order(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=2.0)
    pbx.login("1001")
    call = pbx.place_call("support", handle_time_s=10, patience_s=120)
    await env.on_hold(call)
    reply = await env.redirect(call, "1001")
    assert (reply.response, reply.message) == ("Success", "Redirect successful")
    await env.hung_up(call.channel.name)
    events = after(related(env.router, call, device="PJSIP/1001"), "MusicOnHoldStop")
    assert names(events) == [
        "MusicOnHoldStop",
        "Newchannel",
        "DialBegin",
        "Newstate",
        "DeviceStateChange",
        "Newstate",
        "DialEnd",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeEnter",
        "DeviceStateChange",
        "BridgeLeave",
        "BridgeLeave",
        "BridgeDestroy",
        "Hangup",
        "Hangup",
        "DeviceStateChange",
    ]
    leg = events[1].channel
    assert re.fullmatch(r"PJSIP/1001-[0-9a-f]{8}", leg)
    begin = events[2]
    assert begin.channel == call.channel.name and begin.destchannel == leg
    assert (begin.context, begin.exten) == ("acd-connect", "1001")
    assert begin.destlinkedid == call.channel.linkedid and begin.dialstring == "1001"
    assert begin.destchannelstatedesc == "Down"
    assert body_keys(begin)[:15] == SNAPSHOT_KEYS
    assert body_keys(begin)[15:-1] == ["Dest" + k for k in SNAPSHOT_KEYS]
    assert [e.state for e in events if e.event == "DeviceStateChange"] == ["RINGING", "INUSE", "NOT_INUSE"]
    assert (events[3].channel, events[3].channelstatedesc) == (leg, "Ringing")
    assert (events[5].channel, events[5].channelstatedesc) == (leg, "Up")
    assert events[6].dialstatus == "ANSWER"
    assert [e.bridgenumchannels for e in events if e.event.startswith("Bridge")] == [
        "0",
        "1",
        "2",
        "1",
        "0",
        "0",
    ]
    assert [e.channel for e in events if e.event == "BridgeEnter"] == [call.channel.name, leg]
    assert events[8].bridgetype == "basic" and events[8].bridgeuniqueid == events[7].bridgeuniqueid
    assert [(e.channel, e.cause, e.get("Cause-txt")) for e in events if e.event == "Hangup"] == [
        (leg, "16", "Normal Clearing"),
        (call.channel.name, "16", "Normal Clearing"),
    ]
    assert stamp(events[5]) - stamp(events[2]) == pytest.approx(2.0, abs=SLACK)
    assert stamp(events[-2]) - stamp(events[6]) == pytest.approx(10.0, abs=SLACK)
    record = pbx.ledger.calls[call.call_id]
    assert (record.state, record.agent_id, record.hangup_by) == ("completed", "1001", "agent")
    assert [o.outcome for o in record.offers] == ["ANSWER"]
    statuses = [e.status for e in env.router.named("QueueMemberStatus")]
    assert statuses == ["6", "2", "1"]


async def test_no_answer_sends_the_caller_back_on_hold(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_probability=0.0)
    pbx.login("1001")
    call = pbx.place_call("support", handle_time_s=10)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.on_hold(call, times=2)
    events = after(related(env.admin, call, device="PJSIP/1001"), "MusicOnHoldStop")
    assert names(events) == [
        "MusicOnHoldStop",
        "Newchannel",
        "DialBegin",
        "Newstate",
        "DeviceStateChange",
        "DialEnd",
        "Hangup",
        "DeviceStateChange",
        "VarSet",
        "MusicOnHoldStart",
    ]
    end, hangup = events[5], events[6]
    assert end.dialstatus == "NOANSWER"
    assert (hangup.channel, hangup.cause, hangup.get("Cause-txt")) == (end.destchannel, "0", "Unknown")
    assert (events[8].variable, events[8].value) == ("DIALSTATUS", "NOANSWER")
    assert (events[9].context, events[9].exten) == ("acd-hold", "s")
    assert stamp(end) - stamp(events[2]) == pytest.approx(15.0, abs=SLACK)
    record = pbx.ledger.calls[call.call_id]
    assert record.state == "holding" and [o.outcome for o in record.offers] == ["NOANSWER"]
    assert pbx.ledger.waiting_calls() == [record]


async def test_busy_agent_gets_busy_and_the_ledger_records_a_double_assignment(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=0.5)
    pbx.login("1001")
    first = pbx.place_call("support", handle_time_s=600)
    second = pbx.place_call("support", handle_time_s=600)
    await env.on_hold(second)
    await env.redirect(first, "1001")
    await env.admin.wait_event("DialEnd", Channel=first.channel.name, DialStatus="ANSWER")
    await env.redirect(second, "1001")
    await env.on_hold(second, times=2)
    events = after(related(env.admin, second), "MusicOnHoldStop")
    assert names(events) == [
        "MusicOnHoldStop",
        "Newchannel",
        "DialBegin",
        "DialEnd",
        "Hangup",
        "VarSet",
        "MusicOnHoldStart",
    ]
    assert events[3].dialstatus == "BUSY"
    assert (events[4].cause, events[4].get("Cause-txt")) == ("17", "User busy")
    ledger = pbx.ledger
    assert len(ledger.double_assignments) == 1
    double = ledger.double_assignments[0]
    assert double == DoubleAssignment(second.call_id, "1001", double.at, "INUSE")
    assert [o.outcome for o in ledger.calls[second.call_id].offers] == ["BUSY"]
    assert ledger.calls[first.call_id].state == "talking"
    assert pbx.agents["1001"].device_state == "INUSE"


async def test_unknown_or_unregistered_extension_is_chanunavail_without_dial_events(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001")
    pbx.set_registered("1001", False)
    call = pbx.place_call("support", handle_time_s=60)
    await env.on_hold(call)
    await env.redirect(call, "4242")
    await env.on_hold(call, times=2)
    await env.redirect(call, "1001")
    await env.on_hold(call, times=3)
    events = after(related(env.admin, call), "MusicOnHoldStop")
    assert names(events) == [
        "MusicOnHoldStop",
        "VarSet",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "VarSet",
        "MusicOnHoldStart",
    ]
    assert {e.value for e in events if e.event == "VarSet"} == {"CHANUNAVAIL"}
    offers = pbx.ledger.calls[call.call_id].offers
    assert [(o.agent_id, o.extension, o.outcome) for o in offers] == [
        (None, "4242", "CHANUNAVAIL"),
        ("1001", "1001", "CHANUNAVAIL"),
    ]


# -- abandonment and hangups ------------------------------------------------------------------


async def test_patience_abandons_a_holding_caller(env: Env) -> None:
    call = env.pbx.place_call("support", handle_time_s=60, patience_s=20)
    hangup = await env.hung_up(call.channel.name)
    events = related(env.admin, call)
    assert names(events)[-2:] == ["MusicOnHoldStop", "Hangup"]
    assert (hangup.cause, hangup.get("Cause-txt")) == ("16", "Normal Clearing")
    record = env.pbx.ledger.calls[call.call_id]
    assert record.state == "abandoned" and record.hangup_by == "caller"
    assert record.abandoned_at is not None
    assert record.abandoned_at - record.entered_at == pytest.approx(20.0, abs=SLACK)
    summary = env.pbx.ledger.summary()
    assert (summary["abandoned"], summary["still_waiting"], summary["answered"]) == (1, 0, 0)


async def test_patience_runs_out_while_the_agent_phone_rings(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=12.0)
    pbx.login("1001")
    call = pbx.place_call("support", handle_time_s=60, patience_s=6)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.hung_up(call.channel.name)
    events = after(related(env.admin, call, device="PJSIP/1001"), "DialBegin")
    assert names(events) == [
        "DialBegin",
        "Newstate",
        "DeviceStateChange",
        "DialEnd",
        "Hangup",
        "DeviceStateChange",
        "Hangup",
    ]
    assert events[3].dialstatus == "CANCEL"
    assert events[4].channel == events[0].destchannel and events[4].cause == "0"
    assert events[6].channel == call.channel.name and events[6].cause == "16"
    record = pbx.ledger.calls[call.call_id]
    assert record.state == "abandoned" and [o.outcome for o in record.offers] == ["CANCEL"]
    assert record.abandoned_at is not None
    assert record.abandoned_at - record.entered_at == pytest.approx(6.0, abs=SLACK)


async def test_hangup_action_hangs_up_with_the_given_cause(env: Env) -> None:
    first = env.pbx.place_call("support", handle_time_s=60)
    second = env.pbx.place_call("support", handle_time_s=60)
    third = env.pbx.place_call("support", handle_time_s=60)
    reply = await env.admin.send_action({"Action": "Hangup", "Channel": first.channel.name, "Cause": "17"})
    assert reply.message == "Channel Hungup"
    hangup = await env.hung_up(first.channel.name)
    assert (hangup.cause, hangup.get("Cause-txt")) == ("17", "User busy")
    record = env.pbx.ledger.calls[first.call_id]
    assert (record.state, record.hangup_by) == ("abandoned", "ami")
    listing = await env.admin.send_action({"Action": "Hangup", "Channel": r"/^PJSIP/trunk-/"})
    assert listing[0].message == "Channels hung up will follow"
    assert sorted(e.channel for e in listing[1:-1]) == sorted([second.channel.name, third.channel.name])
    assert (listing[-1].event, listing[-1].listitems) == ("ChannelsHungupListComplete", "2")
    await env.hung_up(third.channel.name)
    assert env.pbx.ledger.summary()["still_waiting"] == 0


async def test_action_errors_use_asterisks_texts(env: Env) -> None:
    call = env.pbx.place_call("support", handle_time_s=60)
    name = call.channel.name
    env.pbx.hangup_call(call.call_id)

    async def error(**headers: str) -> str:
        reply = await env.admin.send_action(headers)
        assert reply.response == "Error"
        return str(reply.message)

    redirect = {"Action": "Redirect", "Channel": name, "Context": "acd-connect", "Exten": "1001"}
    assert await error(**redirect, Priority="1") == f"Channel does not exist: {name}"
    assert (
        await error(Action="Redirect", Context="acd-hold", Exten="s", Priority="1") == "Channel not specified"
    )
    assert await error(Action="Redirect", Channel=name, Exten="s", Priority="1") == "Context not specified"
    assert await error(**redirect, Priority="x") == "Priority is invalid"
    assert await error(Action="Hangup") == "No channel specified"
    assert await error(Action="Hangup", Channel=name) == "No such channel"
    assert await error(Action="Setvar", Channel=name, Variable="A", Value="1") == "No such channel"


# -- what the router should not do ----------------------------------------------------------------


async def test_redirecting_a_ringing_caller_cancels_the_dial_and_is_recorded(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=12.0)
    pbx.login("1001")
    call = pbx.place_call("support", handle_time_s=60)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.admin.wait_event("Newstate", ChannelStateDesc="Ringing")
    reply = await env.redirect(call, "s", context="acd-hold")
    assert reply.message == "Redirect successful"
    await env.on_hold(call, times=2)
    events = after(related(env.admin, call), "DialBegin")
    assert names(events) == ["DialBegin", "Newstate", "DialEnd", "Hangup", "MusicOnHoldStart"]
    assert events[2].dialstatus == "CANCEL"
    [unexpected] = pbx.ledger.unexpected_redirects
    assert (unexpected.call_id, unexpected.call_state, unexpected.context) == (
        call.call_id,
        "ringing",
        "acd-hold",
    )
    assert [o.outcome for o in pbx.ledger.calls[call.call_id].offers] == ["CANCEL"]


async def test_paused_or_logged_out_agents_still_ring_and_are_recorded(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=1.0)
    pbx.add_agent("1002", answer_delay_s=1.0)
    pbx.login("1001", paused=True, reason="break")
    first = pbx.place_call("support", handle_time_s=30)
    second = pbx.place_call("support", handle_time_s=30)
    await env.on_hold(second)
    await env.redirect(first, "1001")
    await env.redirect(second, "1002")
    await env.admin.wait_event("DialEnd", Channel=second.channel.name, DialStatus="ANSWER")
    await env.admin.wait_event("DialEnd", Channel=first.channel.name, DialStatus="ANSWER")
    offers = [(o.call_id, o.agent_id, o.reason) for o in pbx.ledger.offers_to_unavailable_agents]
    assert offers == [(first.call_id, "1001", "paused"), (second.call_id, "1002", "logged_out")]


async def test_agent_state_changes_never_interrupt_a_call(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=1.0)
    assert pbx.login("1001") and not pbx.login("1001")
    added = await env.router.wait_event("QueueMemberAdded")
    assert body_keys(added) == [
        "Queue",
        "MemberName",
        "Interface",
        "StateInterface",
        "Membership",
        "Penalty",
        "CallsTaken",
        "LastCall",
        "LastPause",
        "LoginTime",
        "InCall",
        "Status",
        "Paused",
        "PausedReason",
        "Ringinuse",
        "Wrapuptime",
    ]
    assert (added.queue, added.membername, added.interface, added.status) == (
        "acd-agents",
        "1001",
        "PJSIP/1001",
        "1",
    )
    device = await env.router.wait_event("DeviceStateChange", Device="PJSIP/1001")
    assert device.state == "NOT_INUSE" and device.privilege == "call,all"
    call = pbx.place_call("support", handle_time_s=20)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.router.wait_event("DialEnd", DialStatus="ANSWER")
    assert pbx.pause("1001", "break")
    paused = await env.router.wait_event("QueueMemberPause")
    assert (paused.paused, paused.pausedreason, paused.status) == ("1", "break", "2")
    assert pbx.unpause("1001") and pbx.logout("1001") and not pbx.logout("1001")
    await env.router.wait_event("QueueMemberRemoved")
    assert not pbx.pause("1001")
    await env.hung_up(call.channel.name)
    record = pbx.ledger.calls[call.call_id]
    assert (record.state, record.hangup_by) == ("completed", "agent")
    assert record.ended_at is not None and record.answered_at is not None
    assert record.ended_at - record.answered_at == pytest.approx(20.0, abs=SLACK)
    agent = pbx.ledger.agents["1001"]
    assert (agent.logged_in, agent.paused, agent.active_calls) == (False, False, 0)


async def test_ledger_lists_the_calls_still_waiting(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=0.5)
    pbx.add_agent("1002", answer_delay_s=14.0)
    talking = pbx.place_call("support", handle_time_s=600)
    ringing = pbx.place_call("support", handle_time_s=600)
    holding = pbx.place_call("support", handle_time_s=600)
    await env.on_hold(holding)
    await env.redirect(talking, "1001")
    await env.redirect(ringing, "1002")
    await env.admin.wait_event("DialEnd", DialStatus="ANSWER")
    waiting = {record.call_id: record.state for record in pbx.ledger.waiting_calls()}
    assert waiting == {ringing.call_id: "ringing", holding.call_id: "holding"}
    summary = pbx.ledger.summary()
    assert (summary["offered"], summary["talking"], summary["still_waiting"]) == (3, 1, 2)
    assert set(pbx.calls) == {talking.call_id, ringing.call_id, holding.call_id}


async def test_requeue_through_acd_inbound_keeps_updated_variables(env: Env) -> None:
    call = env.pbx.place_call("support", priority=1, handle_time_s=60)
    await env.on_hold(call)
    await env.admin.send_action(
        {"Action": "Setvar", "Channel": call.channel.name, "Variable": "ACD_PRIORITY", "Value": "9"}
    )
    reply = await env.redirect(call, "5000", context="acd-inbound")
    assert reply.message == "Redirect successful"
    await env.on_hold(call, times=2)
    announcements = [e for e in related(env.router, call) if e.event == "UserEvent"]
    assert [e.priority[-1] for e in announcements] == ["1", "9"]
    assert env.pbx.ledger.unexpected_redirects == []


async def test_redirecting_a_talking_caller_drops_the_agent_and_is_recorded(env: Env) -> None:
    pbx = env.pbx
    pbx.add_agent("1001", answer_delay_s=0.5)
    call = pbx.place_call("support", handle_time_s=600)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.admin.wait_event("DialEnd", DialStatus="ANSWER")
    await env.redirect(call, "s", context="acd-hold")
    await env.on_hold(call, times=2)
    events = after(related(env.admin, call, device="PJSIP/1001"), "BridgeEnter")
    assert names(events)[2:] == [
        "DeviceStateChange",
        "BridgeLeave",
        "BridgeLeave",
        "BridgeDestroy",
        "Hangup",
        "DeviceStateChange",
        "MusicOnHoldStart",
    ]
    assert events[3].channel == call.channel.name  # the caller leaves first
    [unexpected] = pbx.ledger.unexpected_redirects
    assert unexpected.call_state == "talking"
    assert pbx.agents["1001"].legs == [] and pbx.ledger.calls[call.call_id].state == "holding"


async def test_traffic_brings_callers_back_and_names_preferred_agents(env: Env) -> None:
    scenario = Scenario.model_validate(
        {
            "queues": [{"name": "support"}],
            "agents": [{"id": "a1"}, {"id": "a2"}],
            "traffic": [
                {"queue": "support", "calls_per_hour": 60, "returning_share": 0.5, "preferred_agent_share": 0.5}
            ],
        }
    )
    traffic = TrafficGenerator(scenario, env.pbx, env.pbx.clock, seed=3)
    for _ in range(40):
        traffic._place(scenario.traffic[0])
    records = list(env.pbx.ledger.calls.values())
    numbers = [r.caller_number for r in records]
    assert 8 < len(numbers) - len(set(numbers)) < 32  # about half came back
    preferred = [r.preferred_agent for r in records]
    assert {p for p in preferred if p is not None} == {"a1", "a2"}
    assert 8 < preferred.count(None) < 32


async def test_redirect_to_the_closed_context_plays_the_announcement_then_hangs_up(env: Env) -> None:
    """Business hours: a caller whose queue is closed goes to [acd-closed] (docs/asterisk.md)
    like an overflowed caller to [acd-overflow]: out of the ACD, never abandoned."""
    call = env.pbx.place_call("billing", handle_time_s=60, patience_s=5)
    await env.on_hold(call)
    reply = await env.redirect(call, "billing", context="acd-closed")
    assert reply.message == "Redirect successful"
    assert (call.channel.context, call.channel.application) == ("acd-closed", "Playback")
    record = env.pbx.ledger.calls[call.call_id]
    assert record.state == "closed" and record.closed_at is not None
    await env.hung_up(call.channel.name, within=15)  # the announcement (10 s), not its patience (5 s)
    assert record.state == "closed" and record.abandoned_at is None
    summary = env.pbx.ledger.summary()
    assert (summary["closed"], summary["offered"], summary["abandoned"]) == (1, 0, 0)
    assert env.pbx.ledger.unexpected_redirects == []
