"""Profile the routing engine in-process: real Redis, no Kafka, commands kept in memory.

    python -m load_tests.profile_engine --agents 1000 --calls 2000 [--cprofile] [--lua-profile]

Each call is three events (queued, answered, hung up), as in the benchmark; prints calls per
second and, with --cprofile, where the worker's time went; with --lua-profile, where
redis-server's went inside the scripts (load_tests/lua_profile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from load_tests import lua_profile
from load_tests.benchmark import site
from load_tests.embedded import EmbeddedRedis
from router.clock import ScaledClock
from router.commands import CallbackCommand, OfferCommand, OverflowCommand, PauseCommand, RecordCommand
from router.context import RoutingContext
from router.engine import RoutingEngine
from router.events import AgentAnswered, AgentPresenceChanged, CallerHungUp, CallQueued
from router.live_config import LiveConfig
from router.metrics import RoutingMetrics
from router.settings import RoutingSettings
from router.store import NO_POSITION, RedisStateStore


class _Sink:
    def __init__(self) -> None:
        self.offers: list[OfferCommand] = []

    async def offer(self, command: OfferCommand, started: float) -> None:
        self.offers.append(command)

    async def pause(self, command: PauseCommand) -> None:
        return None

    async def overflow(self, command: OverflowCommand) -> None:
        return None

    async def record(self, command: RecordCommand) -> None:
        return None

    async def callback(self, command: CallbackCommand, started: float) -> None:
        return None


async def run(agents: int, calls: int, profile: cProfile.Profile | None, *, lua: bool = False) -> float:
    """Calls per second through RoutingEngine.handle; ``lua``: print where Redis' time went."""
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedRedis(Path(tmp), unix_socket_only=True) as server:
            redis = Redis.from_url(server.url, decode_responses=True)
            queues, roster = site(agents, 1)
            sink = _Sink()
            settings = RoutingSettings(candidate_limit=16)
            config = LiveConfig({q.name: q for q in queues}, {a.id: a for a in roster}, settings.unknown_queue)
            metrics = RoutingMetrics(CollectorRegistry())
            context = RoutingContext(config, settings, ScaledClock(), sink, metrics)
            store = RedisStateStore(redis, "profile")
            if lua:
                lua_profile.time_scripts(store.scripts)
            engine = RoutingEngine(context, store=store, timers=store)
            await engine.seed_agents()
            for agent in roster:
                await engine.handle(
                    AgentPresenceChanged(agent.device, agent.id, "available", "", time.time()), NO_POSITION, 0
                )
            if lua:  # the agents' logins are not part of the profile
                await redis.delete(store.keys.prefix + "lua_profile:us", store.keys.prefix + "lua_profile:n")
            await redis.config_resetstat()
            rate = await _calls(engine, sink, [q.name for q in queues], calls, profile)
            print(_script_time(await redis.info("commandstats"), calls))
            if lua:
                print(await lua_profile.report(redis, store.keys.prefix, calls))
            await redis.aclose()
            return rate


def _script_time(stats: dict[str, Any], calls: int) -> str:
    """redis-server's time in scripts per call, from INFO commandstats (FCALL; EVALSHA too,
    for a run of code from before the function library)."""
    scripts = [stats[name] for name in ("cmdstat_fcall", "cmdstat_evalsha") if name in stats]
    round_trips = sum(int(entry["calls"]) for entry in scripts)
    usec = sum(int(entry["usec"]) for entry in scripts)
    commands = sum(int(e["calls"]) for name, e in stats.items() if name.startswith("cmdstat_")) - round_trips
    return (
        f"redis-server per call: {round_trips / calls:.2f} script calls, {usec / calls:.0f} µs in scripts, "
        f"{commands / calls:.1f} commands run by them"
    )


async def _calls(
    engine: RoutingEngine, sink: _Sink, queues: list[str], calls: int, profile: cProfile.Profile | None
) -> float:
    rng = random.Random(1)
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    for n in range(calls):
        await engine.handle(
            CallQueued(f"c{n}", f"PJSIP/t-{n}", rng.choice(queues), time.time()), NO_POSITION, 0
        )
        while sink.offers:
            offer = sink.offers.pop()
            await engine.handle(AgentAnswered(offer.call_id, offer.device, time.time()), NO_POSITION, 0)
            await engine.handle(CallerHungUp(offer.call_id, "16", time.time()), NO_POSITION, 0)
    if profile is not None:
        profile.disable()
    return calls / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--cprofile", action="store_true", help="print the 30 costliest functions")
    parser.add_argument(
        "--lua-profile", action="store_true", help="print where redis-server's time went inside the scripts"
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.cprofile else None
    rate = asyncio.run(run(args.agents, args.calls, profile, lua=args.lua_profile))
    print(f"{args.calls} calls, {args.agents} agents: {rate:.0f} calls/s (3 events each)")
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
