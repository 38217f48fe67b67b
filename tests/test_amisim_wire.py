"""AMI simulator: framing, parser limits and privilege strings (no network)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from load_tests.amisim import perms
from load_tests.amisim.snapshot import duration
from load_tests.amisim.wire import (
    LINE_TOO_LONG,
    MAX_HEADERS,
    MAX_LINE,
    TOO_MANY_LINES,
    ActionMessage,
    ActionParser,
    Event,
    list_complete,
    list_event,
    render_event,
    response,
    timestamp,
)


def parse(data: bytes) -> list[ActionMessage]:
    return ActionParser().feed(data)


def test_crlf_and_bare_lf_line_endings_both_end_lines() -> None:
    [crlf] = parse(b"Action: Ping\r\nActionID: 1\r\n\r\n")
    [lf] = parse(b"Action: Ping\nActionID: 1\n\n")
    assert crlf.lines == lf.lines == ["Action: Ping", "ActionID: 1"]


def test_keys_are_case_insensitive_values_lose_leading_blanks_only() -> None:
    [msg] = parse(b"aCTION:   Redirect \r\nCHANNEL:\tPJSIP/trunk-00000001\r\n\r\n")
    assert msg.action == "Redirect "
    assert msg.get("Channel") == "PJSIP/trunk-00000001"
    assert msg.get("Chan") == ""  # the key must be followed by ':' at once


def test_repeated_keys_are_kept_in_order() -> None:
    [msg] = parse(b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n")
    assert msg.get_all("variable") == ["A=1", "B=2"]
    assert msg.get("Variable") == "A=1"


def test_a_message_split_at_every_byte_parses_the_same() -> None:
    data = b"Action: Login\r\nUsername: u\r\nSecret: s\r\n\r\nAction: Ping\n\n"
    parser = ActionParser()
    messages = [m for byte in data for m in parser.feed(bytes([byte]))]
    assert [m.lines for m in messages] == [m.lines for m in parse(data)]
    assert [m.action for m in messages] == ["Login", "Ping"]


def test_blank_line_alone_is_an_empty_message() -> None:
    [msg] = parse(b"\r\n")
    assert msg.lines == [] and msg.action == "" and msg.error is None


def test_overlong_line_is_dropped_and_the_message_flagged() -> None:
    data = b"Action: Ping\r\nActionID: 7\r\nX: " + b"y" * (MAX_LINE * 3) + b"\r\n\r\n"
    parser = ActionParser()
    [msg] = parser.feed(data)
    assert msg.error == LINE_TOO_LONG
    assert msg.action_id == "7"
    assert parser.buffered == 0


def test_overlong_line_without_newline_keeps_memory_bounded() -> None:
    parser = ActionParser()
    for _ in range(50):
        assert parser.feed(b"z" * 10_000) == []
        assert parser.buffered < MAX_LINE
    [msg] = parser.feed(b"\r\nAction: Ping\r\n\r\n")
    assert msg.error == LINE_TOO_LONG
    [after] = parser.feed(b"Action: Ping\r\n\r\n")
    assert after.error is None and after.action == "Ping"


def test_too_many_lines_is_an_error_like_asterisk() -> None:
    data = b"Action: Ping\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 5) + b"\r\n"
    [msg] = parse(data)
    assert msg.error == TOO_MANY_LINES
    assert len(msg.lines) == MAX_HEADERS


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=20))
def test_parser_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = ActionParser()
    for chunk in chunks:
        for msg in parser.feed(chunk):
            assert len(msg.lines) <= MAX_HEADERS
            assert all(len(line.encode("utf-8", "surrogateescape")) < MAX_LINE for line in msg.lines)
        assert parser.buffered < MAX_LINE


LINE_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(LINE_BYTES, max_size=10), cut=st.integers(min_value=0, max_value=500))
def test_chunking_does_not_change_the_result(lines: list[bytes], cut: int) -> None:
    data = b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    cut = min(cut, len(data))
    parser = ActionParser()
    split = parser.feed(data[:cut]) + parser.feed(data[cut:])
    assert [m.lines for m in split] == [m.lines for m in parse(data)]


def test_response_layout_follows_astman_send_response_full() -> None:
    [msg] = parse(b"Action: CoreShowChannels\r\nActionID: abc\r\n\r\n")
    assert response(msg, "Success", "Channels will follow", list_flag="start") == (
        b"Response: Success\r\nActionID: abc\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
    )
    assert list_complete("CoreShowChannelsComplete", "abc", 2) == (
        b"Event: CoreShowChannelsComplete\r\nActionID: abc\r\nEventList: Complete\r\nListItems: 2\r\n\r\n"
    )
    assert list_event("QueueMember", "abc", "Queue: q\r\n", id_first=False) == (
        b"Event: QueueMember\r\nQueue: q\r\nActionID: abc\r\n\r\n"
    )


def test_response_without_action_id_has_no_action_id_line() -> None:
    [msg] = parse(b"Action: Ping\r\n\r\n")
    assert response(msg, "Error", "Permission denied") == (
        b"Response: Error\r\nMessage: Permission denied\r\n\r\n"
    )


def test_event_framing_puts_privilege_then_timestamp_first() -> None:
    event = Event("Hangup", perms.CALL, "Channel: X\r\nCause: 16\r\n")
    assert render_event(event, perms.authority_to_str(perms.CALL), "1700000000.000001") == (
        b"Event: Hangup\r\nPrivilege: call,all\r\nTimestamp: 1700000000.000001\r\n"
        b"Channel: X\r\nCause: 16\r\n\r\n"
    )
    assert event.get("Cause") == "16"


def test_privilege_strings_and_event_masks() -> None:
    assert perms.authority_to_str(perms.SYSTEM) == "system,all"
    assert perms.authority_to_str(perms.AGENT) == "agent,all"
    assert perms.authority_to_str(perms.DIALPLAN) == "dialplan,all"
    assert perms.strings_to_mask("") == -1
    assert perms.strings_to_mask("off") == 0
    assert perms.strings_to_mask("on") == perms.ALL
    assert perms.strings_to_mask("call,agent") == perms.CALL | perms.AGENT
    assert perms.strings_to_mask("34") == 34
    assert perms.mask_of({"all"}) == perms.ALL


def test_timestamp_and_duration_formats() -> None:
    assert timestamp(1700000000.25) == "1700000000.250000"
    assert timestamp(12.0) == "12.000000"
    assert duration(0) == "00:00:00"
    assert duration(3725.9) == "01:02:05"
    assert duration(400_000) == "111:06:40"
