"""AMI framing: an incremental action parser and the encoders for responses and events.

The parser follows main/manager.c (``get_input``/``do_message``): a line ends at ``\\r\\n``
or a bare ``\\n``; an empty line ends a message; a line longer than the 1024-byte input
buffer is discarded and the message answered with "Failed to parse message: line too
long"; more than 128 lines make "Too many lines in message or allocation failure".
Memory per connection is therefore bounded whatever a client sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EOL = "\r\n"
MAX_LINE = 1024  # sizeof(mansession_session.inbuf) - 1
MAX_HEADERS = 128  # AST_MAX_MANAGER_HEADERS
LINE_TOO_LONG = "Failed to parse message: line too long"
TOO_MANY_LINES = "Too many lines in message or allocation failure"

Headers = Sequence[tuple[str, str]]


def decode(data: bytes) -> str:
    """Bytes from the wire to text, losslessly: undecodable bytes survive a round trip."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _skip_blanks(text: str) -> str:
    # ast_skip_blanks() skips every character below '!' (spaces, tabs, control bytes).
    index = 0
    while index < len(text) and text[index] <= " ":
        index += 1
    return text[index:]


@dataclass
class ActionMessage:
    """One client message: its raw lines, kept in order with repeats, plus parse errors."""

    lines: list[str] = field(default_factory=list)
    error: str | None = None

    def get(self, key: str, *, skip_empty: bool = False) -> str:
        """First header named ``key`` (case-insensitive), like ``astman_get_header``."""
        size = len(key)
        for line in self.lines:
            if line[size : size + 1] == ":" and line[:size].lower() == key.lower():
                value = _skip_blanks(line[size + 1 :])
                if value or not skip_empty:
                    return value
        return ""

    def get_all(self, key: str) -> list[str]:
        size = len(key)
        return [
            _skip_blanks(line[size + 1 :])
            for line in self.lines
            if line[size : size + 1] == ":" and line[:size].lower() == key.lower()
        ]

    @property
    def action(self) -> str:
        return self.get("Action", skip_empty=True)

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


class ActionParser:
    """Incremental parser for what a client sends; ``feed`` never raises."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._message = ActionMessage()
        self._line_too_long = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[ActionMessage]:
        self._buffer += data
        done: list[ActionMessage] = []
        start = 0
        # A cursor instead of deleting per line keeps a burst of tiny lines linear.
        while (newline := self._buffer.find(b"\n", start)) >= 0:
            message = self._take_line(start, newline)
            if message is not None:
                done.append(message)
            start = newline + 1
        del self._buffer[:start]
        self._trim_overlong()
        return done

    def _trim_overlong(self) -> None:
        if len(self._buffer) >= MAX_LINE:
            # Like get_input(): drop the line, keep the last byte in case it is "\r".
            del self._buffer[:-1]
            self._line_too_long = True

    def _take_line(self, start: int, newline: int) -> ActionMessage | None:
        end = newline
        if end > start and self._buffer[end - 1] == 0x0D:
            end -= 1
        raw = bytes(self._buffer[start:end])
        if len(raw) >= MAX_LINE:
            self._line_too_long = True
            raw = raw[-1:]
        if raw:
            self._add_line(decode(raw))
            return None
        return self._finish()

    def _add_line(self, line: str) -> None:
        if len(self._message.lines) < MAX_HEADERS:
            self._message.lines.append(line)
        else:
            self._message.error = TOO_MANY_LINES

    def _finish(self) -> ActionMessage:
        message, self._message = self._message, ActionMessage()
        if message.error is None and self._line_too_long:
            message.error = LINE_TOO_LONG
        self._line_too_long = False
        return message


def render_lines(pairs: Iterable[tuple[str, object]]) -> str:
    return "".join(f"{key}: {value}{EOL}" for key, value in pairs)


def response(
    message: ActionMessage,
    status: str,
    text: str | None = None,
    *,
    list_flag: str | None = None,
    extra: Headers = (),
) -> bytes:
    """A response as ``astman_send_response_full`` lays it out (ActionID, EventList, Message)."""
    head = f"Response: {status}{EOL}"
    action_id = message.action_id
    if action_id:
        head += f"ActionID: {action_id}{EOL}"
    if list_flag:
        head += f"EventList: {list_flag}{EOL}"
    if text is not None:
        head += f"Message: {text}{EOL}"
    return encode(head + render_lines(extra) + EOL)


def list_event(name: str, action_id: str, body: str, *, id_first: bool = True) -> bytes:
    """One item of a list response; manager.c puts ActionID first, app_queue puts it last."""
    id_line = f"ActionID: {action_id}{EOL}" if action_id else ""
    if id_first:
        return encode(f"Event: {name}{EOL}{id_line}{body}{EOL}")
    return encode(f"Event: {name}{EOL}{body}{id_line}{EOL}")


def list_complete(name: str, action_id: str, count: int) -> bytes:
    """``astman_send_list_complete``: the event panoramisk waits for (name ends "Complete")."""
    id_line = f"ActionID: {action_id}{EOL}" if action_id else ""
    return encode(f"Event: {name}{EOL}{id_line}EventList: Complete{EOL}ListItems: {count}{EOL}{EOL}")


def timestamp(now: float) -> str:
    """``%ld.%06lu`` as manager.c prints ``Timestamp:`` headers."""
    micros = round(now * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


@dataclass(frozen=True, slots=True)
class Event:
    """A manager event before framing: name, privilege class and its header lines."""

    name: str
    category: int
    body: str

    def get(self, key: str) -> str | None:
        """Value of the first ``key`` header (for tests and in-process listeners)."""
        prefix = f"{key}: "
        for line in self.body.split(EOL):
            if line.startswith(prefix):
                return line[len(prefix) :]
        return None


def render_event(event: Event, privilege: str, stamp: str | None) -> bytes:
    """Event framing of ``__manager_event_sessions_va``: Event, Privilege, Timestamp, body."""
    head = f"Event: {event.name}{EOL}Privilege: {privilege}{EOL}"
    if stamp is not None:
        head += f"Timestamp: {stamp}{EOL}"
    return encode(head + event.body + EOL)
