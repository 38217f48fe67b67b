"""Transfers in the AMI simulator, in the order Asterisk 22.10.1 sends them
(/work/asterisk-lab traces; main/bridge.c, main/stasis_bridges.c), checked against the ledger."""

from __future__ import annotations

from panoramisk import Message

from load_tests.amisim.calls import SimCall, TransferPlan
from tests.test_amisim_calls import Env, after, env, names, related

__all__ = ["env"]


async def answered(env: Env, plan: TransferPlan | None = None, handle_time_s: float = 5) -> SimCall:
    env.pbx.add_agent("1001", answer_delay_s=1.0)
    env.pbx.login("1001")
    call = env.pbx.place_call("support", handle_time_s=handle_time_s, transfer=plan)
    await env.on_hold(call)
    await env.redirect(call, "1001")
    await env.router.wait_event("DialEnd", DialStatus="ANSWER", Linkedid=call.call_id)
    return call


def transfer_part(env: Env, call: SimCall, first: str) -> list[Message]:
    """The call's events from ``first`` on; transfer events carry only prefixed Linkedids."""
    mine = {id(e) for e in related(env.router, call, device="PJSIP/1001")}
    events = [e for e in env.router.events if id(e) in mine or _names_call(e, call.call_id)]
    return after(events, first)


def _names_call(event: Message, call_id: str) -> bool:
    return any(key.lower().endswith("linkedid") and value == call_id for key, value in event.items())


async def test_blind_transfer_out_over_ami(env: Env) -> None:
    call = await answered(env, handle_time_s=600)
    leg = call.dial.leg.name if call.dial else ""
    reply = await env.admin.send_action(
        {"Action": "BlindTransfer", "Channel": leg, "Context": "outside", "Exten": "900"}
    )
    assert (reply.response, reply.message) == ("Success", "Transfer succeeded")
    await env.hung_up(leg)
    events = transfer_part(env, call, "Unhold")
    assert names(events) == [
        "Unhold",
        "BlindTransfer",
        "BridgeLeave",
        "BridgeLeave",
        "Hangup",
        "BridgeDestroy",
        "DeviceStateChange",
    ]
    blind = events[1]
    assert (blind.result, blind.transfererchannel, blind.transfereechannel) == (
        "Success",
        leg,
        call.channel.name,
    )
    assert blind.transfererlinkedid == blind.transfereelinkedid == call.call_id
    assert (blind.context, blind.extension, blind.isexternal) == ("outside", "900", "Yes")
    assert [e.channel for e in events if e.event == "BridgeLeave"] == [leg, call.channel.name]
    assert events[4].cause == "16" and events[-1].state == "NOT_INUSE"
    record = env.pbx.ledger.calls[call.call_id]
    assert record.state == "transferred" and [(t.kind, t.agent_id, t.context) for t in record.transfers] == [
        ("blind", "1001", "outside")
    ]
    # The caller talks on with the target and hangs up later; the ledger keeps the truth.
    await env.hung_up(call.channel.name, within=5)
    assert record.state == "transferred" and record.ended_at is not None


async def test_blind_transfer_back_into_the_queue_announces_the_caller_again(env: Env) -> None:
    call = await answered(env, TransferPlan("blind", ("acd-inbound", "5000")))
    await env.on_hold(call, times=2)
    events = transfer_part(env, call, "BlindTransfer")
    assert names(events)[:5] == ["BlindTransfer", "BridgeLeave", "BridgeLeave", "Hangup", "BridgeDestroy"]
    tail = [e for e in events if e.linkedid == call.call_id and e.uniqueid == call.call_id]
    assert names(tail)[-2:] == ["UserEvent", "MusicOnHoldStart"]
    assert tail[-2].userevent == "AcdCallQueued" and tail[-2].queue == "support"
    record = env.pbx.ledger.calls[call.call_id]
    assert (record.state, record.answered_at, record.transfers[0].requeued) == ("holding", None, True)
    assert env.pbx.ledger.summary()["answered"] == 1


async def test_attended_transfer_out(env: Env) -> None:
    call = await answered(env, TransferPlan("attended", ("outside", "900"), stay_s=600))
    await env.router.wait_event("AttendedTransfer")
    events = transfer_part(env, call, "Hold")
    assert names(events)[names(events).index("AttendedTransfer") :] == [
        "AttendedTransfer",
        "BridgeLeave",
        "BridgeLeave",
        "BridgeLeave",
        "BridgeDestroy",
        "BridgeEnter",
        "MusicOnHoldStop",
        "Hangup",
        "Hangup",
        "DeviceStateChange",
    ]
    xfer = next(e for e in events if e.event == "AttendedTransfer")
    assert (xfer.result, xfer.desttype, xfer.isexternal) == ("Success", "Bridge", "No")
    assert xfer.origtransfererlinkedid == xfer.secondtransfererlinkedid == call.call_id
    assert xfer.transfereechannel == call.channel.name and xfer.transfertargetchannel.startswith(
        "Local/900@outside"
    )
    assert xfer.destbridgeuniqueid == xfer.origbridgeuniqueid and xfer.secondbridgeuniqueid
    hangups = [e.channel for e in events if e.event == "Hangup"]
    assert all(name.startswith("PJSIP/1001-") for name in hangups)
    assert env.pbx.ledger.calls[call.call_id].state == "transferred"


async def test_blind_transfer_of_an_unbridged_channel_is_invalid(env: Env) -> None:
    env.pbx.add_agent("1001")
    call = env.pbx.place_call("support", handle_time_s=5)
    await env.on_hold(call)
    reply = await env.admin.send_action(
        {"Action": "BlindTransfer", "Channel": call.channel.name, "Context": "outside", "Exten": "900"}
    )
    assert (reply.response, reply.message) == ("Error", "Transfer invalid")
