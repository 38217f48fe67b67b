"""AMI simulator lifecycle: prompt shutdown with timers in flight, fan-out under load."""

from __future__ import annotations

import asyncio
import time

import pytest

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.testing import ADMIN, ROUTER, RawClient, open_manager, simulator
from load_tests.amisim.wire import Event
from router.clock import ScaledClock

# Every timer busy_pbx sets is at least this far off in real time (time scale 1). A close
# that waited for one would take that long; one that does not is done in well under it, even
# on a starved machine (a close took 1.1 s in CI beside other tests).
FIRST_TIMER_S = 60.0
PROMPT_S = FIRST_TIMER_S / 4


def busy_pbx(pbx: Pbx, calls: int) -> None:
    """Agents ringing, talking and callers holding, all with timers pending."""
    for n in range(50):
        pbx.add_agent(f"2{n:03d}", answer_delay_s=FIRST_TIMER_S if n % 2 else 5 * FIRST_TIMER_S)
        pbx.login(f"2{n:03d}")
    placed = [
        pbx.place_call("support", handle_time_s=10 * FIRST_TIMER_S, patience_s=20 * FIRST_TIMER_S)
        for _ in range(calls)
    ]
    for n, call in enumerate(placed[:50]):
        assert pbx.redirect(call.channel.name, "acd-connect", f"2{n:03d}", 1) is None


async def test_aclose_is_prompt_with_many_timers_in_flight() -> None:
    pbx = Pbx(ScaledClock(time_scale=1.0), seed=3)
    busy_pbx(pbx, 500)
    await asyncio.sleep(0.05)  # redirects applied: phones ringing, answers scheduled
    assert pbx.pending_timers > 500
    seen: list[Event] = []
    pbx.subscribe(seen.append)
    started = time.perf_counter()
    await pbx.aclose()
    assert time.perf_counter() - started < PROMPT_S
    assert pbx.pending_timers == 0
    await asyncio.sleep(0.2)
    assert seen == []  # nothing moves once closed
    with pytest.raises(RuntimeError):
        pbx.place_call("support", handle_time_s=1)
    assert pbx.errors == []


async def test_stop_is_prompt_with_traffic_and_many_sessions() -> None:
    async with simulator(time_scale=1.0) as (pbx, sim):
        managers = [(await open_manager(sim, "acd-router", ROUTER.secret))[0] for _ in range(5)]
        busy_pbx(pbx, 300)
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await sim.stop()
        await pbx.aclose()
        assert time.perf_counter() - started < PROMPT_S
        assert sim.sessions == ()
        shutdowns = [await m.wait_event("Shutdown") for m in managers]
        assert {s.shutdown for s in shutdowns} == {"Uncleanly"}  # channels were up
        for manager in managers:
            manager.close()
        assert pbx.errors == []


async def test_every_session_gets_the_same_event_stream() -> None:
    async with simulator(time_scale=20.0) as (pbx, sim):
        clients = [await RawClient.connect(sim) for _ in range(3)]
        for client in clients:
            await client.login("admin", ADMIN.secret)
        seen: list[Event] = []
        pbx.subscribe(seen.append)
        for _ in range(1000):
            pbx.place_call("support", handle_time_s=60)
        streams = []
        for client in clients:
            await client.read_message()  # FullyBooted
            streams.append([await client.read_raw() for _ in range(len(seen))])
        assert len(seen) == 5000  # Newchannel Newstate VarSet(ACD_QUEUE) UserEvent MOH
        assert streams[0] == streams[1] == streams[2]
        assert sum(1 for raw in streams[0] if raw.startswith(b"Event: UserEvent\r\n")) == 1000
        for client in clients:
            await client.close()
        assert pbx.errors == []
