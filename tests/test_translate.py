"""AMI events -> domain events."""

from __future__ import annotations

from typing import Any

from router.ami.translate import device_of, parse_duration, partition_key, translate
from router.domain import AnyOf, SkillRequirement
from router.envelope import AMI_EVENT, AMI_RESYNC, Envelope
from router.events import (
    AgentAnswered,
    AgentDeclined,
    AgentLegEnded,
    AgentPresenceChanged,
    AgentRang,
    CallerHeld,
    CallerHungUp,
    CallQueued,
    ResyncFinished,
)

CALLER = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "1700000000.1", "Linkedid": "1700000000.1"}


def ami(fields: dict[str, Any], ts: float = 100.0, kind: str = AMI_EVENT) -> Envelope:
    return Envelope(type=kind, id="e1", source="test", ts=ts, key=partition_key(fields), data=fields)


def test_queued_user_event_becomes_call_queued_with_overrides() -> None:
    event = translate(
        ami(
            CALLER
            | {
                "Event": "UserEvent",
                "UserEvent": "AcdCallQueued",
                "Queue": "billing",
                "Priority": ["4", "3"],
                "Requirements": "billing>=3&spanish>=2|french",
            }
        )
    )
    assert event == CallQueued(
        call_id="1700000000.1",
        channel="PJSIP/trunk-00000001",
        queue="billing",
        at=100.0,
        priority=3,
        requirements=(
            SkillRequirement(skill="billing", min_level=3),
            AnyOf(any=(SkillRequirement(skill="spanish", min_level=2), SkillRequirement(skill="french"))),
        ),
    )


def test_the_caller_is_read_from_the_announcements_channel_snapshot() -> None:
    announced = CALLER | {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Queue": "billing"}
    named = translate(ami(announced | {"CallerIDNum": "+15551234", "CallerIDName": "Ann Smith"}))
    assert isinstance(named, CallQueued)
    assert (named.caller_number, named.caller_name) == ("+15551234", "Ann Smith")
    # Asterisk writes <unknown> where the channel has no caller id.
    anonymous = translate(ami(announced | {"CallerIDNum": "<unknown>", "CallerIDName": "<unknown>"}))
    assert isinstance(anonymous, CallQueued)
    assert (anonymous.caller_number, anonymous.caller_name) == ("", "")
    listed = CALLER | {
        "Event": "CoreShowChannel",
        "Duration": "00:00:05",
        "BridgeId": "",
        "CallerIDNum": "+15559876",
        "CallerIDName": "<unknown>",
        "ChanVariable": ["ACD_QUEUE=billing"],
    }
    resynced = translate(ami(listed))
    assert isinstance(resynced, CallQueued)
    assert (resynced.caller_number, resynced.caller_name) == ("+15559876", "")


def test_user_priority_is_not_confused_with_the_snapshots_dialplan_priority() -> None:
    # Asterisk's UserEvent carries the channel snapshot (Priority: dialplan line) and then
    # the user's own Priority header; panoramisk hands both over as a list.
    fields = CALLER | {
        "Event": "UserEvent",
        "UserEvent": "AcdCallQueued",
        "Queue": "q",
        "Priority": ["5", "2"],
    }
    event = translate(ami(fields))
    assert isinstance(event, CallQueued) and event.priority == 2
    only_snapshot = translate(ami(fields | {"Priority": "5"}))
    assert isinstance(only_snapshot, CallQueued) and only_snapshot.priority is None
    from_variable = translate(ami(fields | {"ChanVariable": ["ACD_QUEUE=q", "ACD_PRIORITY=4"]}))
    assert isinstance(from_variable, CallQueued) and from_variable.priority == 4


def test_bad_overrides_fall_back_to_queue_defaults_instead_of_losing_the_call() -> None:
    event = translate(
        ami(
            CALLER
            | {
                "Event": "UserEvent",
                "UserEvent": "AcdCallQueued",
                "Queue": "q",
                "Priority": "high",
                "Requirements": "billing>=9",
            }
        )
    )
    assert isinstance(event, CallQueued)
    assert (event.priority, event.requirements) == (None, None)


def test_queue_comes_from_chan_variables_when_the_header_is_empty() -> None:
    event = translate(
        ami(
            CALLER
            | {
                "Event": "UserEvent",
                "UserEvent": "AcdCallQueued",
                "Queue": "",
                "ChanVariable": ["ACD_QUEUE=support", "ACD_PRIORITY=2"],
            }
        )
    )
    assert isinstance(event, CallQueued) and (event.queue, event.priority) == ("support", 2)


def test_other_user_events_are_ignored() -> None:
    assert translate(ami(CALLER | {"Event": "UserEvent", "UserEvent": "Something"})) is None


def test_dial_lifecycle() -> None:
    dial = CALLER | {"DestChannel": "PJSIP/a1-00000002", "DestUniqueid": "1700000000.2"}
    assert translate(ami(dial | {"Event": "DialBegin"})) == AgentRang("1700000000.1", "PJSIP/a1", 100.0)
    assert translate(ami(dial | {"Event": "DialEnd", "DialStatus": "ANSWER"})) == AgentAnswered(
        "1700000000.1", "PJSIP/a1", 100.0
    )
    assert translate(ami(dial | {"Event": "DialEnd", "DialStatus": "NOANSWER"})) == AgentDeclined(
        "1700000000.1", "PJSIP/a1", "NOANSWER", 100.0
    )
    assert translate(ami(dial | {"Event": "DialEnd", "DialStatus": "CANCEL"})) is None


def test_music_on_hold_of_the_caller_is_reported() -> None:
    assert translate(ami(CALLER | {"Event": "MusicOnHoldStart", "Class": "default"})) == CallerHeld(
        "1700000000.1", 100.0
    )


def test_only_the_callers_hangup_ends_the_call() -> None:
    assert translate(ami(CALLER | {"Event": "Hangup", "Cause": "16"})) == CallerHungUp(
        "1700000000.1", "16", 100.0
    )
    agent_leg = {
        "Event": "Hangup",
        "Channel": "PJSIP/a1-00000002",
        "Uniqueid": "1700000000.2",
        "Linkedid": "1700000000.1",
    }
    # The agent's leg ending is its own event (it matters after a transfer), never the call's end.
    assert translate(ami(agent_leg)) == AgentLegEnded("1700000000.1", "PJSIP/a1", 100.0)


def test_roster_events_become_presence() -> None:
    member = {
        "Queue": "acd-agents",
        "MemberName": "a1",
        "Interface": "PJSIP/a1",
        "StateInterface": "PJSIP/a1",
    }
    added = translate(ami(member | {"Event": "QueueMemberAdded", "Paused": "0"}))
    assert added == AgentPresenceChanged("PJSIP/a1", "a1", "available", "", 100.0)
    paused = translate(ami(member | {"Event": "QueueMemberPause", "Paused": "1", "PausedReason": "lunch"}))
    assert paused == AgentPresenceChanged("PJSIP/a1", "a1", "paused", "lunch", 100.0)
    removed = translate(ami(member | {"Event": "QueueMemberRemoved"}))
    assert isinstance(removed, AgentPresenceChanged) and removed.state == "logged_out"
    listed = {"Event": "QueueMember", "Queue": "acd-agents", "Name": "a2", "Location": "PJSIP/a2", "Paused": "0"}
    status = translate(ami(listed | {"Status": "5"}))
    assert status == AgentPresenceChanged("PJSIP/a2", "a2", "available", "", 100.0, "UNAVAILABLE")
    # A phone's status report: its Paused may predate the router's own pause (see the event).
    phone = translate(ami(member | {"Event": "QueueMemberStatus", "Paused": "0", "Status": "1"}))
    assert phone == AgentPresenceChanged("PJSIP/a1", "a1", "available", "", 100.0, "NOT_INUSE", pause_known=False)


def test_resync_listing_reannounces_waiting_callers() -> None:
    listed = CALLER | {
        "Event": "CoreShowChannel",
        "Duration": "00:01:05",
        "BridgeId": "",
        "ChanVariable": ["ACD_QUEUE=billing", "ACD_PRIORITY=0", "ACD_REQUIREMENTS="],
    }
    event = translate(ami(listed, ts=1000.0))
    assert isinstance(event, CallQueued)
    assert (event.call_id, event.queue, event.at, event.resynced) == ("1700000000.1", "billing", 935.0, True)
    bridged = listed | {"BridgeId": "b-1"}
    assert translate(ami(bridged)) is None
    not_an_acd_call = listed | {"ChanVariable": ["ACD_QUEUE=", "ACD_PRIORITY=", "ACD_REQUIREMENTS="]}
    assert translate(ami(not_an_acd_call)) is None
    marker = translate(ami({"live_call_ids": ["x", "y"]}, ts=5.0, kind=AMI_RESYNC))
    assert marker == ResyncFinished(frozenset({"x", "y"}), 5.0)
    marked = {"live_call_ids": [], "marks": {"t:0": 12, "t:1": 0, "t:2": -1, "t:3": "7"}}
    listing = translate(ami(marked, ts=5.0, kind=AMI_RESYNC))
    assert isinstance(listing, ResyncFinished) and listing.marks == {"t:0": 12, "t:1": 0}


def test_partition_keys_keep_a_call_and_an_agent_together() -> None:
    assert partition_key({"Event": "Hangup", "Uniqueid": "2", "Linkedid": "1"}) == "call:1"
    assert partition_key({"Event": "QueueMemberPause", "Interface": "PJSIP/a1"}) == "agent:PJSIP/a1"
    assert partition_key({"Event": "FullyBooted"}) == "ami:fullybooted"


def test_helpers() -> None:
    assert device_of("PJSIP/a1-0000000a") == "PJSIP/a1"
    assert device_of("Local/1001@agents-00000001;1") == "Local/1001@agents"
    assert device_of("PJSIP/a1") == "PJSIP/a1"
    assert parse_duration("01:02:03") == 3723
    assert parse_duration("17") == 17
    assert parse_duration("nonsense") == 0


def test_resync_listing_of_a_bridged_agent_leg_means_the_call_was_answered() -> None:
    leg = {
        "Event": "CoreShowChannel",
        "Channel": "PJSIP/a1-00000009",
        "Uniqueid": "1700000000.9",
        "Linkedid": "1700000000.1",
        "BridgeId": "b-7",
        "Duration": "00:00:40",
    }
    assert translate(ami(leg, ts=1000.0)) == AgentAnswered("1700000000.1", "PJSIP/a1", 960.0)
    assert translate(ami(leg | {"BridgeId": ""})) is None
