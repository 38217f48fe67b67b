"""The AMI side of ingest (panoramisk under AmiGateway) against a peer that sends garbage:
arbitrary bytes, truncated frames, huge headers, duplicate keys, \\n-only line ends. The
gateway must keep its session, and still deliver the valid events that follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from panoramisk.message import Message
from pydantic import SecretStr

from router.ami.gateway import AmiGateway
from router.settings import AmiSettings
from tests.polling import eventually

VALID = b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: AcdCallQueued\r\nUniqueid: u1\r\nLinkedid: u1\r\n\r\n"


class GarbageServer:
    """A fake Asterisk: accepts the login, then sends what the test gives it."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        request = await reader.readuntil(b"\r\n\r\n")
        action_id = next(
            (
                line.split(b": ", 1)[1]
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"actionid")
            ),
            b"",
        )
        writer.write(
            b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication accepted\r\n\r\n"
        )
        await writer.drain()
        self.writers.append(writer)

    async def send(self, data: bytes) -> None:
        for writer in self.writers:
            writer.write(data)
            await writer.drain()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture(scope="module")
async def peer() -> AsyncIterator[tuple[GarbageServer, AmiGateway, list[Message]]]:
    server = GarbageServer()
    port = await server.start()
    received: list[Message] = []
    gateway = AmiGateway(
        AmiSettings(port=port, username="u", secret=SecretStr("s"), ping_interval_s=3600),
        on_message=received.append,
    )
    await gateway.connect()
    yield server, gateway, received
    await gateway.close()
    await server.close()


garbage = st.one_of(
    st.binary(max_size=3000),
    st.just(b"Event: Hangup\r\nUniqueid: " + b"x" * 100_000 + b"\r\n\r\n"),  # a huge header
    st.just(b"Event: DialEnd\r\nDialStatus: ANSWER\r\nDialStatus: BUSY\r\n\r\n"),  # a duplicate key
    st.just(b"Event: Newchannel\nChannel: PJSIP/x\n\n"),  # \n-only line ends
    st.just(b"Event: Truncat"),  # a frame cut in the middle
    st.just(b"\xff\xfe\x00\r\n\r\n"),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(garbage, min_size=1, max_size=4))
async def test_garbage_from_asterisk_never_breaks_the_session(
    peer: tuple[GarbageServer, AmiGateway, list[Message]], chunks: list[bytes]
) -> None:
    server, gateway, received = peer
    for chunk in chunks:
        await server.send(chunk)
    # Whatever came before, a frame boundary and then a valid event get through.
    await server.send(b"\r\n\r\n" + VALID)
    await eventually(
        lambda: any(m.get("UserEvent") == "AcdCallQueued" for m in received), within=5, every=0.01
    )
    received.clear()
    assert gateway.connected


@pytest.mark.parametrize("header", ["Event", "ActionID", "CommandID"])
async def test_a_frame_that_repeats_a_header_panoramisk_reads_as_text_is_dropped_and_the_session_lives(
    peer: tuple[GarbageServer, AmiGateway, list[Message]], header: str
) -> None:
    """Found by the test above (CI, 2026-12-01): a repeated Event header closed the session."""
    server, gateway, received = peer
    await server.send(f"Event: Hangup\r\n{header}: a\r\n{header}: b\r\n\r\n".encode() + VALID)
    await eventually(
        lambda: any(m.get("UserEvent") == "AcdCallQueued" for m in received), within=5, every=0.01
    )
    received.clear()
    assert gateway.connected
