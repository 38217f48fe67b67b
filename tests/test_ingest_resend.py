"""Ingest's resend of what Kafka refused or lost: nothing dropped, nothing out of order,
also when the broker loses more while a resend is in flight."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from router.envelope import Envelope
from router.metrics import IngestMetrics
from router.settings import AcdSettings
from workers.ingest import IngestWorker


class ControlledProducer:
    """Records what is sent; each send's outcome is decided by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[Envelope, asyncio.Future[Any]]] = []

    async def knows_partitions(self, topic: str) -> bool:
        return True

    async def send(self, topic: str, envelope: Envelope) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((envelope, future))
        return future

    def settle(self, *, refuse: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        for envelope, future in self.sent:
            if not future.done():
                if envelope.seq in refuse:
                    future.set_exception(RuntimeError("refused"))
                else:
                    future.set_result(None)


def call_event(n: int) -> dict[str, str]:
    return {"Event": "Newstate", "Uniqueid": f"1.{n}", "Linkedid": f"1.{n}"}


async def test_a_loss_noticed_while_a_resend_is_in_flight_drops_nothing() -> None:
    producer = ControlledProducer()
    worker = IngestWorker(AcdSettings(), producer, None, IngestMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    await worker._publish(call_event(1), 1.0)  # seq 1, call 1: acknowledged
    producer.settle()
    worker._topics_lost(["acd.ami.events.v1"])  # the broker lost it: held again, call 1 blocked
    await worker._publish(call_event(2), 1.0)  # seq 2, call 2: goes straight out, acknowledged
    producer.settle()
    await worker._publish(call_event(1), 1.0)  # seq 3, call 1: held behind seq 1

    resend = asyncio.create_task(worker._resend_held())
    await asyncio.sleep(0)
    assert [e.seq for e, future in producer.sent if not future.done()] == [1, 3]
    # While that resend is in flight, a refusal makes ingest hold everything recent again
    # (seq 2 included: the broker that refused may have lost it).
    await worker._publish(call_event(4), 1.0)  # seq 4, call 4: refused
    producer.settle(refuse={4})
    async with asyncio.timeout(5):
        while not resend.done():  # from now on the broker takes everything
            await asyncio.sleep(0)
            producer.settle()
        while not await worker._resend_held():
            producer.settle()

    delivered = [e.seq for e, future in producer.sent if not future.exception()]
    assert delivered.count(2) == 2, delivered  # sent, then resent after the refusal
    assert set(delivered) == {1, 2, 3, 4}
    assert not worker._held and not worker._blocked_keys
