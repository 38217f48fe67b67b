"""AMI simulator over real TCP: login, permissions, list actions, faults, robustness.

The client is panoramisk 1.4's Manager (what the project uses) unless a check needs the
raw bytes panoramisk would hide.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from panoramisk import Message

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from load_tests.amisim.testing import (
    ADMIN,
    DEFAULT_USERS,
    RawClient,
    SimManager,
    open_manager,
    simulator,
)
from tests.polling import eventually

Env = tuple[Pbx, AmiSimulator]
Connect = Callable[..., Awaitable[tuple[SimManager, Message]]]

USERS = {
    **DEFAULT_USERS,
    "agents-only": AmiUser("a", read=frozenset({"agent"}), write=frozenset()),
    "calls-only": AmiUser("c", read=frozenset({"call"}), write=frozenset()),
    "reporter": AmiUser("r", read=frozenset({"all"}), write=frozenset({"reporting"})),
}
SECRETS = {name: user.secret for name, user in USERS.items()}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with simulator(users=USERS) as (pbx, sim):
        pbx.add_agent("1001", answer_delay_s=1.0)
        pbx.add_agent("1002", answer_delay_s=1.0)
        yield pbx, sim
        assert pbx.errors == []


@pytest.fixture
async def connect(env: Env) -> AsyncIterator[Connect]:
    opened: list[SimManager] = []

    async def _connect(user: str = "admin", secret: str | None = None, **kw: Any) -> Any:
        manager, reply = await open_manager(env[1], user, secret or SECRETS[user], **kw)
        opened.append(manager)
        return manager, reply

    yield _connect
    for manager in opened:
        manager.close()


async def synced(manager: SimManager) -> None:
    """A Ping round trip: every event written before it has now been dispatched."""
    reply = await manager.send_action({"Action": "Ping"})
    assert reply.ping == "Pong"


# -- connection and login -----------------------------------------------------------------


async def test_banner_carries_the_ami_version(env: Env) -> None:
    client = await RawClient.connect(env[1])
    assert client.banner == b"Asterisk Call Manager/9.0.0\r\n"
    await client.close()
    async with simulator(sim_options={"version": "7.0.3"}) as (_, other):
        client = await RawClient.connect(other)
        assert client.banner == b"Asterisk Call Manager/7.0.3\r\n"
        await client.close()


async def test_login_is_accepted_and_fully_booted_follows(env: Env, connect: Connect) -> None:
    manager, reply = await connect("acd-router")
    assert reply.success and reply.message == "Authentication accepted"
    booted = await manager.wait_event("FullyBooted")
    assert booted.privilege == "system,all"
    assert booted.status == "Fully Booted"
    assert re.fullmatch(r"\d+", booted.uptime) and re.fullmatch(r"\d+", booted.lastreload)
    assert env[1].authenticated_sessions == 1
    assert [s.username for s in env[1].sessions] == ["acd-router"]


async def test_wrong_secret_is_refused_then_the_connection_closed(env: Env) -> None:
    client = await RawClient.connect(env[1])
    reply = await client.action("Login", Username="admin", Secret="nope", ActionID="L1")
    assert reply == {"Response": "Error", "ActionID": "L1", "Message": "Authentication failed"}
    assert await client.eof()
    assert env[1].authenticated_sessions == 0
    await client.close()


async def test_panoramisk_sees_the_failed_login(env: Env, connect: Connect) -> None:
    _, reply = await connect("acd-router", "wrong")
    assert not reply.success
    assert reply.message == "Authentication failed"


async def test_actions_before_login_are_denied_and_empty_messages_rejected(env: Env) -> None:
    client = await RawClient.connect(env[1])
    assert await client.action("Ping", ActionID="p") == {
        "Response": "Error",
        "ActionID": "p",
        "Message": "Permission denied",
    }
    assert await client.action("CoreShowChannels") == {
        "Response": "Error",
        "Message": "Permission denied",
    }
    await client.send(b"\r\n")
    assert await client.read_message() == {"Response": "Error", "Message": "Missing action in request"}
    await client.close()


async def test_unknown_action_gets_asterisks_text(env: Env) -> None:
    client = await RawClient.connect(env[1])
    await client.login("admin", ADMIN.secret)
    reply = await client.action("Frobnicate", ActionID="9")
    assert reply["Message"] == (
        "Invalid/unknown command: Frobnicate. Use Action: ListCommands to show available commands."
    )
    await client.close()


async def test_logoff_says_goodbye_and_closes(env: Env) -> None:
    client = await RawClient.connect(env[1])
    await client.login("admin", ADMIN.secret, events="off")
    reply = await client.action("Logoff", ActionID="bye")
    assert reply == {"Response": "Goodbye", "ActionID": "bye", "Message": "Thanks for all the fish."}
    assert await client.eof()
    await client.close()


async def test_ping_answers_pong_with_a_timestamp(env: Env, connect: Connect) -> None:
    manager, _ = await connect()
    reply = await manager.send_action({"Action": "Ping"})
    assert reply.response == "Success" and reply.ping == "Pong"
    assert re.fullmatch(r"\d+\.\d{6}", reply.timestamp)


# -- permissions and event filtering ---------------------------------------------------------


async def test_write_classes_gate_actions(env: Env, connect: Connect) -> None:
    pbx, _ = env
    call = pbx.place_call("support", handle_time_s=60)
    manager, _ = await connect("reporter")
    redirect = await manager.send_action(
        {
            "Action": "Redirect",
            "Channel": call.channel.name,
            "Context": "acd-connect",
            "Exten": "1001",
            "Priority": "1",
        }
    )
    assert redirect.response == "Error" and redirect.message == "Permission denied"
    setvar = await manager.send_action({"Action": "Setvar", "Variable": "X", "Value": "1"})
    assert setvar.message == "Permission denied"
    listed_before = len(pbx.ledger.listings)
    listing = await manager.send_action({"Action": "CoreShowChannels"})
    assert listing[-1].event == "CoreShowChannelsComplete" and listing[-1].listitems == "1"
    assert pbx.ledger.calls[call.call_id].offers == []
    assert len(pbx.ledger.listings) == listed_before + 1  # when it was listed (chaos: blind spells)


async def test_events_are_filtered_by_read_class_and_events_off(env: Env, connect: Connect) -> None:
    pbx, _ = env
    agents, _ = await connect("agents-only")
    calls, _ = await connect("calls-only")
    mute, _ = await connect("admin", events="off")
    pbx.login("1001")
    pbx.place_call("support", handle_time_s=60)
    for manager in (agents, calls, mute):
        await synced(manager)
    assert [e.event for e in agents.events] == ["QueueMemberAdded"]
    seen_by_calls = [e.event for e in calls.events]
    assert "QueueMemberAdded" not in seen_by_calls and "UserEvent" not in seen_by_calls
    assert "VarSet" not in seen_by_calls  # class dialplan
    assert seen_by_calls == [
        "DeviceStateChange",
        "Newchannel",
        "Newstate",
        "MusicOnHoldStart",
    ]
    assert mute.events == []


async def test_events_action_switches_events_off_and_on(env: Env) -> None:
    pbx, sim = env
    client = await RawClient.connect(sim)
    await client.login("admin", ADMIN.secret)
    assert (await client.read_message())["Event"] == "FullyBooted"
    off = await client.action("Events", EventMask="off", ActionID="e1")
    assert off == {"Response": "Success", "ActionID": "e1", "Events": "Off"}
    pbx.place_call("support", handle_time_s=60)
    pong = await client.action("Ping")
    assert pong["Ping"] == "Pong"
    on = await client.action("Events", EventMask="call")
    assert on["Events"] == "On"
    pbx.place_call("support", handle_time_s=60)
    assert (await client.read_message())["Event"] == "Newchannel"
    bad = await client.action("Events")
    assert bad["Message"] == "Invalid event mask"
    await client.close()


# -- list actions -----------------------------------------------------------------------------


async def test_core_show_channels_lists_every_channel(env: Env, connect: Connect) -> None:
    pbx, _ = env
    first = pbx.place_call("support", handle_time_s=60)
    second = pbx.place_call("sales", priority=3, handle_time_s=60)
    manager, _ = await connect()
    reply = await manager.send_action({"Action": "CoreShowChannels", "ActionID": "csc-1"})
    head, *items, tail = reply
    assert (head.response, head.eventlist, head.message) == ("Success", "start", "Channels will follow")
    assert [i.channel for i in items] == [first.channel.name, second.channel.name]
    for item in items:
        assert item.event == "CoreShowChannel" and item.actionid == "csc-1"
        assert (item.application, item.applicationdata, item.bridgeid) == ("MusicOnHold", "default", "")
        assert re.fullmatch(r"\d\d:\d\d:\d\d", item.duration)
        assert item.context == "acd-hold" and item.channelstatedesc == "Up"
    assert items[1].chanvariable == [
            "ACD_QUEUE=sales",
            "ACD_PRIORITY=3",
            "ACD_REQUIREMENTS=",
            "ACD_PREFERRED_AGENT=",
        ]
    assert (tail.event, tail.eventlist, tail.listitems) == ("CoreShowChannelsComplete", "Complete", "2")


async def test_queue_status_and_summary_show_the_roster(env: Env, connect: Connect) -> None:
    pbx, _ = env
    pbx.login("1001")
    pbx.login("1002", paused=True, reason="break")
    manager, _ = await connect("acd-router")
    reply = await manager.send_action({"Action": "QueueStatus", "Queue": "acd-agents"})
    head, params, *members, tail = reply
    assert head.message == "Queue status will follow" and head.eventlist == "start"
    assert params.event == "QueueParams" and params.queue == "acd-agents" and params.calls == "0"
    by_name = {m.name: m for m in members}
    assert by_name["1001"].location == "PJSIP/1001" and by_name["1001"].paused == "0"
    assert by_name["1002"].paused == "1" and by_name["1002"].pausedreason == "break"
    assert by_name["1001"].status == "1" and by_name["1001"].membership == "dynamic"
    assert int(by_name["1002"].lastpause) > 0 and int(by_name["1001"].logintime) > 0
    assert (tail.event, tail.listitems) == ("QueueStatusComplete", "3")
    other = await manager.send_action({"Action": "QueueStatus", "Queue": "no-such"})
    assert [m.event for m in other[1:]] == ["QueueStatusComplete"] and other[-1].listitems == "0"
    summary = await manager.send_action({"Action": "QueueSummary"})
    assert summary[1].event == "QueueSummary"
    assert (summary[1].loggedin, summary[1].available) == ("2", "1")
    assert summary[-1].event == "QueueSummaryComplete"


async def test_queue_pause_add_remove_actions(env: Env, connect: Connect) -> None:
    pbx, _ = env
    pbx.login("1001")
    manager, _ = await connect("acd-router")

    async def act(**headers: str) -> Message:
        # panoramisk treats "Added ... to queue" as the start of a list and would wait for
        # more; as_list=False makes it take the single response, as the router must too.
        return await manager.send_action(headers, as_list=False)

    paused = await act(Action="QueuePause", Interface="PJSIP/1001", Paused="true", Reason="lunch")
    assert paused.message == "Interface paused successfully"
    event = await manager.wait_event("QueueMemberPause", Paused="1")
    assert event.pausedreason == "lunch" and event.membername == "1001"
    assert event.privilege == "agent,all"
    assert pbx.ledger.agents["1001"].paused
    unknown = await act(Action="QueuePause", Interface="PJSIP/7777", Paused="false")
    assert unknown.message == "Interface not found"
    missing = await act(Action="QueuePause", Interface="PJSIP/1001")
    assert missing.message == "Need 'Interface' and 'Paused' parameters."
    again = await act(Action="QueueAdd", Queue="acd-agents", Interface="PJSIP/1001")
    assert again.message == "Unable to add interface: Already there"
    added = await act(Action="QueueAdd", Queue="acd-agents", Interface="PJSIP/1002", MemberName="1002")
    assert added.message == "Added interface to queue"
    assert (await manager.wait_event("QueueMemberAdded", Interface="PJSIP/1002")).membername == "1002"
    removed = await act(Action="QueueRemove", Queue="acd-agents", Interface="PJSIP/1002")
    assert removed.message == "Removed interface from queue"
    await manager.wait_event("QueueMemberRemoved", Interface="PJSIP/1002")
    gone = await act(Action="QueueRemove", Queue="acd-agents", Interface="PJSIP/1002")
    assert gone.message == "Unable to remove interface: Not there"
    wrong = await act(Action="QueueAdd", Queue="sales", Interface="PJSIP/1002")
    assert wrong.message == "Unable to add interface to queue: No such queue"


async def test_setvar_getvar(env: Env, connect: Connect) -> None:
    pbx, _ = env
    call = pbx.place_call("support", handle_time_s=60)
    manager, _ = await connect()
    name = call.channel.name
    done = await manager.send_action(
        {"Action": "Setvar", "Channel": name, "Variable": "ACD_PRIORITY", "Value": "5"}
    )
    assert done.message == "Variable Set"
    varset = await manager.wait_event("VarSet", Variable="ACD_PRIORITY", Value="5")
    assert "ACD_PRIORITY=5" in varset.chanvariable
    got = await manager.send_action({"Action": "Getvar", "Channel": name, "Variable": "ACD_PRIORITY"})
    assert (got.response, got.variable, got.value) == ("Success", "ACD_PRIORITY", "5")
    nochan = await manager.send_action({"Action": "Getvar", "Channel": "PJSIP/x-1", "Variable": "A"})
    assert nochan.message == "No such channel"
    glob = await manager.send_action({"Action": "Getvar", "Variable": "ACD_DEFAULT_QUEUE"})
    assert glob.value == "support"
    novar = await manager.send_action({"Action": "Setvar", "Channel": name})
    assert novar.message == "No variable specified"


# -- Originate --------------------------------------------------------------------------------


async def test_originate_async_completes_through_panoramisk(env: Env, connect: Connect) -> None:
    pbx, _ = env
    manager, _ = await connect("acd-router")
    reply = await manager.send_action(
        {
            "Action": "Originate",
            "Channel": "PJSIP/1001",
            "Context": "acd-hold",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "CallerID": '"Supervisor" <1-800-555>',
        }
    )
    queued, result = reply
    assert queued.message == "Originate successfully queued"
    assert result.event == "OriginateResponse" and result.response == "Success"
    assert result.reason == "4" and result.channel.startswith("PJSIP/1001-")
    assert (result.context, result.exten) == ("acd-hold", "s")
    assert (result.calleridnum, result.calleridname) == ("1800555", "Supervisor")
    assert pbx.find_channel(result.uniqueid) is not None
    assert pbx.agents["1001"].device_state == "INUSE"


async def test_originate_failures(env: Env, connect: Connect) -> None:
    manager, _ = await connect("acd-router")
    reply = await manager.send_action(
        {
            "Action": "Originate",
            "Channel": "PJSIP/9999",
            "Application": "Wait",
            "Data": "1",
            "Async": "true",
        }
    )
    assert reply[1].response == "Failure" and reply[1].reason == "0"
    assert reply[1].uniqueid == "<unknown>" and reply[1].channel == "PJSIP/9999"
    nowhere = await manager.send_action(
        {
            "Action": "Originate",
            "Channel": "PJSIP/1001",
            "Context": "nowhere",
            "Exten": "1",
            "Priority": "1",
            "Async": "true",
        }
    )
    assert nowhere.message == "Extension does not exist."
    nochan = await manager.send_action({"Action": "Originate", "Async": "true"})
    assert nochan.message == "Channel not specified"


# -- faults -------------------------------------------------------------------------------------


async def test_drop_connections_makes_clients_reconnect(env: Env, connect: Connect) -> None:
    _, sim = env
    manager, _ = await connect("acd-router", reconnect_timeout=0)
    await manager.wait_event("FullyBooted")
    await sim.drop_connections()
    await eventually(lambda: manager.disconnects == 1)
    await eventually(lambda: len(manager.named("FullyBooted")) == 2)
    assert sim.authenticated_sessions == 1 and sim.listening


async def test_set_listening_false_refuses_new_connections(env: Env, connect: Connect) -> None:
    _, sim = env
    manager, _ = await connect("acd-router", reconnect_timeout=1)
    await sim.set_listening(False)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(sim.host, sim.port)
    await synced(manager)  # sessions already open keep working
    await sim.drop_connections()
    await asyncio.sleep(1.2)  # panoramisk retried once and was refused
    assert sim.sessions == ()
    await sim.set_listening(True)
    await eventually(lambda: sim.authenticated_sessions == 1, within=3)
    await synced(manager)


async def test_stop_sends_shutdown_and_closes(env: Env, connect: Connect) -> None:
    _, sim = env
    manager, _ = await connect("acd-router")
    await manager.wait_event("FullyBooted")
    await sim.stop()
    shutdown = await manager.wait_event("Shutdown")
    assert (shutdown.shutdown, shutdown.restart, shutdown.privilege) == (
        "Cleanly",
        "False",
        "system,all",
    )
    await eventually(lambda: manager.disconnects >= 1)
    assert sim.sessions == ()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(sim.host, sim.port)


GARBAGE = st.one_of(
    st.binary(max_size=4000),
    st.sampled_from(
        [
            b"\r\n",
            b"\n",
            b"Action: Login\r\n",
            b"Action: Ping\r\n\r\n",
            b"A" * 5000,
            b"Action: Redirect\r\nChannel: x\r\n\r\n",
            b"Action: Hangup\r\nChannel: /(/\r\n\r\n",
            b"\xff\xfe\x00\r\n\r\n",
            b"X: " + b"y" * 2000 + b"\n\n",
            b"Action: Events\r\n\r\n" * 50,
        ]
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(GARBAGE, max_size=6), login_first=st.booleans())
async def test_server_survives_arbitrary_bytes(env: Env, chunks: list[bytes], login_first: bool) -> None:
    pbx, sim = env
    bad = await RawClient.connect(sim)
    if login_first:
        await bad.login("admin", ADMIN.secret, events="off")
    for chunk in chunks:
        await bad.send(chunk)
    good = await RawClient.connect(sim)
    await good.login("admin", ADMIN.secret, events="off")
    assert (await good.action("Ping", ActionID="alive"))["Ping"] == "Pong"
    await bad.close()
    await good.close()
    assert sim.listening and pbx.errors == []


async def test_a_client_that_stops_reading_is_dropped_without_stalling_others() -> None:
    options = {"write_timeout_s": 0.3, "high_water": 16 * 1024}
    async with simulator(sim_options=options) as (pbx, sim):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (sim.host, sim.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"Action: Login\r\nUsername: admin\r\nSecret: admin-secret\r\n\r\n")
        manager, _ = await open_manager(sim, "acd-router", "router-secret")
        await eventually(lambda: sim.authenticated_sessions == 2)
        # Enough output to fill every kernel buffer on the way to the stuck reader.
        for _ in range(1500):
            pbx.place_call("support", handle_time_s=60)
        await eventually(lambda: len(sim.sessions) == 1)
        assert [s.username for s in sim.sessions] == ["acd-router"]
        await eventually(lambda: len(manager.named("UserEvent")) == 1500)
        manager.close()
        writer.close()
        del reader


async def test_responses_precede_the_events_an_action_causes(env: Env) -> None:
    pbx, sim = env
    pbx.login("1001")
    call = pbx.place_call("support", handle_time_s=60)
    client = await RawClient.connect(sim)
    await client.login("admin", ADMIN.secret, events="on")
    assert (await client.read_message())["Event"] == "FullyBooted"
    await client.send("Action: QueuePause\r\nInterface: PJSIP/1001\r\nPaused: 1\r\nActionID: qp\r\n\r\n")
    assert (await client.read_message())["ActionID"] == "qp"
    assert (await client.read_message())["Event"] == "QueueMemberPause"
    await client.send(f"Action: Setvar\r\nChannel: {call.channel.name}\r\nVariable: V\r\nValue: 1\r\n\r\n")
    assert (await client.read_message())["Message"] == "Variable Set"
    assert (await client.read_message())["Event"] == "VarSet"
    await client.close()


async def test_actions_after_the_pbx_closed_do_not_break_the_session(env: Env) -> None:
    pbx, sim = env
    call = pbx.place_call("support", handle_time_s=60)
    await pbx.aclose()
    client = await RawClient.connect(sim)
    await client.login("admin", ADMIN.secret, events="off")
    reply = await client.action("Hangup", Channel=call.channel.name)
    assert reply["Message"] == "Channel Hungup"
    assert (await client.action("Ping"))["Ping"] == "Pong"
    assert pbx.find_channel(call.channel.name) is not None  # nothing moves after aclose
    await client.close()
