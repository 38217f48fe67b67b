"""The dispatcher sends each offer's Redirect once: when the answer to its claim is lost (a
Redis link that hung after the script ran), it asks again and gets its own claim back; a
restarted dispatcher reading the same command finds the offer taken."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from router.bus import Consumed
from router.clock import ScaledClock
from router.commands import OfferCommand, offer_envelope
from router.errors import RedisUnavailableError
from router.metrics import DispatchMetrics
from router.settings import AcdSettings
from router.store import RedisRoutingStore, RedisStateStore
from tests.test_store import T0, enqueue, login, offer
from workers.dispatcher import Dispatcher


class RecordingGateway:
    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    async def send_action(self, action: dict[str, str], **_: Any) -> dict[str, str]:
        self.actions.append(action)
        return {"Response": "Success"}


class AnswerLostOnce(RedisRoutingStore):
    """The first claim runs in Redis, and then its answer is lost."""

    lost = False

    async def claim_offer(self, *args: Any) -> Any:
        reply = await super().claim_offer(*args)
        if not self.lost:
            self.lost = True
            raise RedisUnavailableError("test: the answer to the claim was lost")
        return reply


def dispatcher(redis: Redis, gateway: RecordingGateway, store: RedisRoutingStore) -> Dispatcher:
    return Dispatcher(
        AcdSettings(site="t1"),
        gateway=gateway,  # type: ignore[arg-type]
        store=store,
        reader=None,  # type: ignore[arg-type]
        producer=None,  # type: ignore[arg-type]
        clock=ScaledClock(1.0),
        metrics=DispatchMetrics(CollectorRegistry()),
    )


def command_message(offset: int = 7) -> Consumed:
    command = OfferCommand("o1", "c1", "PJSIP/trunk-c1", "a1", "PJSIP/a1", "acd-connect", "a1", "q", T0)
    value = offer_envelope(command, "router:t1").encode()
    return Consumed("acd.routing.commands.v1", 0, offset, b"call:c1", value, 0.0, generation=1)


async def test_a_lost_claim_answer_does_not_strand_the_caller_and_the_redirect_goes_once(
    redis: Redis,
) -> None:
    state = RedisStateStore(redis, "t1")
    await login(state, "a1", {}, T0)
    await enqueue(state, "c1", T0)
    await offer(state, "c1", "a1", T0 + 1, offer_id="o1")
    gateway = RecordingGateway()
    first = dispatcher(redis, gateway, AnswerLostOnce(redis, "t1"))
    message = command_message()
    await asyncio.wait_for(first._execute_until_done(message, asyncio.Event()), 10)
    assert [a["Action"] for a in gateway.actions] == ["Redirect"]  # after one retry of the claim

    restarted = dispatcher(redis, gateway, RedisRoutingStore(redis, "t1"))
    await restarted._execute_until_done(message, asyncio.Event())  # read again after a restart
    assert len(gateway.actions) == 1
    assert restarted.metrics.stale._value.get() == 1
