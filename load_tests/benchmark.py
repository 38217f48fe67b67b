"""Routing-loop benchmark: decisions per second and decision latency, against the floor.

Drives real routing worker processes (`acd route`) through a real broker and Redis with
synthetic AMI envelopes, bypassing the simulator and ingest so that only the routing loop
is measured:

- agents log in (QueueMemberAdded) with random skills out of 50;
- calls arrive (UserEvent AcdCallQueued) at a fixed rate, or all at once for saturation;
- a fake PBX answers every offer at once (DialEnd ANSWER) and hangs up after ``talk_s``,
  so agents come back and the loop keeps deciding in both directions.

It reports, per configuration (agents x worker processes): decisions per second per
worker under saturation, p50/p99 decision latency at fixed offered loads, the CPU each
process kind spent per decision and the Redis commands per decision during saturation,
and the floor measured in the same run: one reservation script call to Redis, and one
Kafka produce->consume round trip.

Latencies come from the offers themselves (each carries the worker's ``decision_ms``, from
reading the event to handing the command to Kafka) and, for the end-to-end figure, from
the worker's ``acd_routing_command_acked_seconds`` histogram (interpolated within its
buckets): measuring adds nothing to the routing loop. CPU is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from load_tests.children import ChildProcesses, ChildSpec
from load_tests.decision_tap import ACKED_HISTOGRAM, bucket_delta, histogram_buckets, histogram_quantile
from load_tests.embedded import EmbeddedKafka, EmbeddedRedis
from load_tests.summary import percentile
from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.domain import AgentConfig, QueueConfig, SkillRequirement
from router.envelope import AMI_EVENT, Envelope, KeyChain, decode
from router.settings import KafkaSettings
from router.store import RedisStateStore

logger = logging.getLogger(__name__)

SKILLS = [f"skill{n:02d}" for n in range(1, 51)]
SITE = "bench"


@dataclass(frozen=True)
class BenchConfig:
    agents: int
    workers: int
    loads: tuple[int, ...] = (100, 500)  # offered calls per second for the latency runs
    load_s: float = 8.0
    saturation_calls: int = 6000
    talk_s: float = 0.02  # real seconds an answered call lasts in the fake PBX
    seed: int = 1
    idle_s: float = 10.0  # seconds of no calls, after the agents' logins, for the idle CPU
    fetch_max_wait_ms: int | None = None  # kafka.fetch_max_wait_ms of every consumer; None: its default
    fetch_idle_wait_ms: int | None = None  # kafka.fetch_idle_wait_ms likewise


@dataclass
class LoadResult:
    offered_per_s: int
    decisions: int
    decisions_per_s: float
    p50_ms: float | None  # event consumed -> command handed to the Kafka producer
    p99_ms: float | None
    acked_p50_ms: float | None  # event consumed -> command acknowledged by the broker
    acked_p99_ms: float | None


@dataclass
class ConfigResult:
    agents: int
    workers: int
    saturation_decisions_per_s: float = 0.0
    saturation_per_worker: float = 0.0
    saturation_p50_ms: float | None = None
    saturation_p99_ms: float | None = None
    saturation_acked_p99_ms: float | None = None
    loads: list[LoadResult] = field(default_factory=list)
    # Saturation run: CPU seconds of each process kind (route, redis, broker, driver) per
    # decision, in microseconds; Redis commands (INFO commandstats) per decision.
    cpu_us_per_decision: dict[str, float] = field(default_factory=dict)
    redis_commands_per_decision: float | None = None
    # Idle run (processes up, agents logged in, no calls): per cent of one core that each
    # process kind used (route: per routing worker process); empty with --idle-s 0.
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)


def site(agents: int, seed: int) -> tuple[list[QueueConfig], list[AgentConfig]]:
    """50 queues (one per skill, level 1-3) and agents with 2-5 random skills each."""
    rng = random.Random(seed)
    queues = [
        QueueConfig(
            name=f"q{n:02d}", requirements=(SkillRequirement(skill=skill, min_level=rng.randint(1, 3)),)
        )
        for n, skill in enumerate(SKILLS, start=1)
    ]
    width = len(str(agents))
    roster = [
        AgentConfig(
            id=f"a{n:0{width}d}",
            skills={skill: rng.randint(1, 5) for skill in rng.sample(SKILLS, rng.randint(2, 5))},
        )
        for n in range(1, agents + 1)
    ]
    return queues, roster


SESSION = int(time.time() * 1000)


def _envelope(fields: dict[str, Any], key: str, seq: int, prev: int | None) -> Envelope:
    """As ingest sends them: sequenced and chained per key, so the routers' ordering and
    deduplication work is part of what is measured."""
    return Envelope(
        type=AMI_EVENT,
        id=f"bench-{seq}",
        source="bench",
        ts=time.time(),
        key=key,
        data=fields,
        session=SESSION,
        seq=seq,
        prev=prev,
    )


class SyntheticPbx:
    """Produces the AMI envelopes of logins and calls, and answers offers at once."""

    def __init__(self, producer: KafkaEnvelopeProducer, topics: Topics, talk_s: float) -> None:
        self.producer = producer
        self.topics = topics
        self.talk_s = talk_s
        self.seq = 0
        self._chain = KeyChain()
        self.answered = 0
        self.decision_ms: list[float] = []  # from each offer, in arrival order
        self._hangups: list[asyncio.Task[None]] = []

    async def send(self, fields: dict[str, Any], key: str) -> None:
        self.seq += 1
        prev = self._chain.link(key, self.seq)
        await self.producer.send(self.topics.ami_events, _envelope(fields, key, self.seq, prev))

    async def login(self, agent: AgentConfig) -> None:
        member = {"Event": "QueueMemberAdded", "Queue": "acd-agents", "MemberName": agent.id}
        member |= {"Interface": agent.device, "StateInterface": agent.device, "Paused": "0"}
        await self.send(member, f"agent:{agent.device}")

    async def call(self, call_id: str, queue: str) -> None:
        caller = {"Channel": f"PJSIP/trunk-{call_id}", "Uniqueid": call_id, "Linkedid": call_id}
        fields = caller | {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Queue": queue}
        await self.send(fields, f"call:{call_id}")

    async def answer(self, offer: dict[str, Any]) -> None:
        call_id, device = offer["call_id"], offer["device"]
        dial = {"Uniqueid": call_id, "Linkedid": call_id, "DestChannel": f"{device}-00000001"}
        await self.send(dial | {"Event": "DialEnd", "DialStatus": "ANSWER"}, f"call:{call_id}")
        self.answered += 1
        self._hangups.append(asyncio.create_task(self._hang_up_later(call_id)))

    async def _hang_up_later(self, call_id: str) -> None:
        await asyncio.sleep(self.talk_s)
        fields = {"Event": "Hangup", "Uniqueid": call_id, "Linkedid": call_id, "Cause": "16"}
        await self.send(fields, f"call:{call_id}")

    async def close(self) -> None:
        for task in self._hangups:
            task.cancel()
        await asyncio.gather(*self._hangups, return_exceptions=True)


async def answer_offers(pbx: SyntheticPbx, reader: KafkaGroupReader, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for message in await reader.read(timeout_ms=50):
            envelope = decode(message.value)
            if envelope.type == "routing.offer":
                pbx.decision_ms.append(float(envelope.data.get("decision_ms", 0.0)))
                await pbx.answer(envelope.data)
        pbx._hangups = [t for t in pbx._hangups if not t.done()]


class Bench:
    """Runs the benchmark configurations on one redis-server and one broker."""

    def __init__(self, workdir: Path, kafka: EmbeddedKafka, redis_server: EmbeddedRedis) -> None:
        self.workdir = workdir
        self.kafka = kafka
        self.redis_server = redis_server
        self.children: ChildProcesses | None = None  # the configuration being measured

    async def run_config(self, config: BenchConfig, index: int) -> ConfigResult:
        prefix = f"bench{index}"
        settings = KafkaSettings(
            bootstrap_servers=self.kafka.bootstrap_servers,
            topic_prefix=prefix,
            partitions=12,
            **_kafka_overrides(config),
        )
        topics = Topics(prefix)
        await ensure_topics(settings, topics.all())
        redis = Redis.from_url(self.redis_server.url, decode_responses=True)
        await redis.flushdb()
        store = RedisStateStore(redis, SITE)
        queues, agents = site(config.agents, config.seed)
        children = self.children = ChildProcesses(self.workdir / prefix, log_level="WARNING")
        children.run_dir.mkdir(parents=True, exist_ok=True)
        path = self._write_config(children.run_dir, prefix, queues, agents, config)
        producer = KafkaEnvelopeProducer(settings, linger_ms=2)
        await producer.start()
        reader = KafkaGroupReader(settings, [topics.routing_commands], f"{prefix}-pbx")
        await reader.start()
        pbx = SyntheticPbx(producer, topics, config.talk_s)
        stop = asyncio.Event()
        answering = asyncio.create_task(answer_offers(pbx, reader, stop))
        try:
            specs = [
                ChildSpec(f"route-{i + 1}", ["--config", str(path)], "route") for i in range(config.workers)
            ]
            await children.start(specs)
            await children.wait_ready(60)
            return await self._measure(config, pbx, store, agents, queues)
        finally:
            stop.set()
            await answering
            await pbx.close()
            await children.stop()
            await reader.stop()
            await producer.stop()
            await redis.aclose()

    def _write_config(
        self, run_dir: Path, prefix: str, queues: list[QueueConfig], agents: list[AgentConfig], bench: BenchConfig
    ) -> Path:
        config = {
            "site": SITE,
            "queues": [q.model_dump(mode="json", exclude_none=True) for q in queues],
            "agents": [a.model_dump(mode="json", exclude_none=True) for a in agents],
            "kafka": {
                "bootstrap_servers": self.kafka.bootstrap_servers,
                "topic_prefix": prefix,
                "partitions": 12,
                **_kafka_overrides(bench),
            },
            "redis": {"url": self.redis_server.url},
            "routing": {"candidate_limit": 16},
        }
        path = run_dir / "acd.yaml"
        path.write_text(json.dumps(config))
        return path

    async def _measure(
        self,
        config: BenchConfig,
        pbx: SyntheticPbx,
        store: RedisStateStore,
        agents: list[AgentConfig],
        queues: list[QueueConfig],
    ) -> ConfigResult:
        result = ConfigResult(agents=config.agents, workers=config.workers)
        for agent in agents:
            await pbx.login(agent)
        await pbx.producer.flush()
        await _wait_agents_in(store, len(agents))
        await _wait_consumers_settled(store)
        if config.idle_s > 0:
            result.idle_cpu_percent = await self._idle(config)
        rng = random.Random(config.seed)
        names = [q.name for q in queues]
        for rate in config.loads:
            result.loads.append(await self._fixed_load(config, pbx, store, rate, names, rng))
        await self._saturate(config, pbx, store, names, rng, result)
        return result

    async def _fixed_load(
        self,
        config: BenchConfig,
        pbx: SyntheticPbx,
        store: RedisStateStore,
        rate: int,
        queues: list[str],
        rng: random.Random,
    ) -> LoadResult:
        await _drain(store, pbx)
        before, acked_before = len(pbx.decision_ms), await self._acked_buckets()
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < config.load_s:
            due = int(elapsed * rate)
            while sent < due:
                sent += 1
                await pbx.call(f"L{rate}-{sent}", rng.choice(queues))
            await asyncio.sleep(0.002)
        await pbx.producer.flush()
        await _drain(store, pbx)
        latencies = pbx.decision_ms[before:]
        acked = bucket_delta(acked_before, await self._acked_buckets())
        return LoadResult(
            offered_per_s=rate,
            decisions=len(latencies),
            decisions_per_s=round(len(latencies) / config.load_s, 1),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            acked_p50_ms=histogram_quantile(acked, 0.50),
            acked_p99_ms=histogram_quantile(acked, 0.99),
        )

    async def _saturate(
        self,
        config: BenchConfig,
        pbx: SyntheticPbx,
        store: RedisStateStore,
        queues: list[str],
        rng: random.Random,
        result: ConfigResult,
    ) -> None:
        """A backlog far beyond what the workers can do at once: decisions per second, and
        what each process spent per decision."""
        await _drain(store, pbx)
        before, acked_before = len(pbx.decision_ms), await self._acked_buckets()
        for n in range(config.saturation_calls):
            await pbx.call(f"S-{n}", rng.choice(queues))
        await pbx.producer.flush()
        cpu_before, commands_before = self._cpu(), await _redis_commands(store)
        started = time.monotonic()
        logger.warning("saturation: %d calls queued, measuring", config.saturation_calls)
        finished = await _drain(store, pbx, want=before + config.saturation_calls, idle_s=3.0)
        cpu_after, commands_after = self._cpu(), await _redis_commands(store)
        if os.environ.get("ACD_BENCH_COMMANDSTATS"):
            await _log_commandstats(store)
        elapsed = max(finished - started, 1e-3)
        latencies = pbx.decision_ms[before:]
        acked = bucket_delta(acked_before, await self._acked_buckets())
        decisions = max(len(latencies), 1)
        result.saturation_decisions_per_s = round(len(latencies) / elapsed, 1)
        result.saturation_per_worker = round(result.saturation_decisions_per_s / config.workers, 1)
        result.saturation_p50_ms = percentile(latencies, 50)
        result.saturation_p99_ms = percentile(latencies, 99)
        result.saturation_acked_p99_ms = histogram_quantile(acked, 0.99)
        result.cpu_us_per_decision = {
            kind: round((cpu_after[kind] - cpu_before[kind]) * 1e6 / decisions, 1) for kind in cpu_before
        }
        result.redis_commands_per_decision = round((commands_after - commands_before) / decisions, 2)

    async def _idle(self, config: BenchConfig) -> dict[str, float]:
        """What the pipeline costs with nothing to do: its timers, probes and empty fetches."""
        before, started = self._cpu(), time.monotonic()
        await asyncio.sleep(config.idle_s)
        return idle_percent(before, self._cpu(), time.monotonic() - started, config.workers)

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process kind (all routing workers together)."""
        assert self.children is not None and self.redis_server.proc and self.kafka.proc
        routes = [child.process.pid for child in self.children.children.values()]
        return {
            "route": sum(cpu_seconds(pid) for pid in routes),
            "redis": cpu_seconds(self.redis_server.proc.pid),
            "broker": cpu_seconds(self.kafka.proc.pid),
            "driver": cpu_seconds(os.getpid()),
        }

    async def _acked_buckets(self) -> dict[float, float]:
        """The workers' command-acknowledged latency histogram (cumulative buckets, summed)."""
        assert self.children is not None
        return await histogram_buckets(self.children.http_ports(), ACKED_HISTOGRAM)


def _kafka_overrides(config: BenchConfig) -> dict[str, Any]:
    waits = {"fetch_max_wait_ms": config.fetch_max_wait_ms, "fetch_idle_wait_ms": config.fetch_idle_wait_ms}
    return {name: ms for name, ms in waits.items() if ms is not None}


def idle_percent(before: dict[str, float], after: dict[str, float], seconds: float, workers: int) -> dict[str, float]:
    """Per cent of one core per process kind over ``seconds``; the routing workers' share is
    per process (the target is per process, docs/performance.md)."""
    per_process = {kind: (after[kind] - before[kind]) / max(seconds, 1e-9) * 100 for kind in before}
    per_process["route"] /= max(workers, 1)
    return {kind: round(share, 2) for kind, share in per_process.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _log_commandstats(store: RedisStateStore) -> None:
    """Where redis-server's time went (INFO commandstats; commands inside scripts included)."""
    stats = await store.redis.info("commandstats")
    for name, entry in sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"]))[:15]:
        logger.warning("%s calls=%s usec=%s per call=%s", name, entry["calls"], entry["usec"], entry["usec_per_call"])


async def _redis_commands(store: RedisStateStore) -> int:
    stats = await store.redis.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values() if isinstance(entry, dict))


async def _wait_agents_in(store: RedisStateStore, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await store.redis.zcard(store.keys.available) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"agents did not log in within {timeout_s}s")
        await asyncio.sleep(0.2)


async def _wait_consumers_settled(store: RedisStateStore) -> None:
    await asyncio.sleep(1.0)


async def _drain(
    store: RedisStateStore, pbx: SyntheticPbx, *, want: int | None = None, idle_s: float = 1.0
) -> float:
    """Wait until no new offer has arrived for ``idle_s`` (and ``want`` are in, or nothing
    waits); returns when the last one came (monotonic seconds)."""
    last, changed_at = -1, time.monotonic()
    while True:
        count = len(pbx.decision_ms)
        waiting = await store.redis.zcard(store.keys.waiting)
        if count != last:
            last, changed_at = count, time.monotonic()
        done = want is None or count >= want or waiting == 0
        if done and time.monotonic() - changed_at >= idle_s:
            return changed_at
        await asyncio.sleep(0.05)


async def measure_floor(
    kafka: EmbeddedKafka, redis_server: EmbeddedRedis, samples: int = 300
) -> dict[str, float]:
    """The cost no routing decision can avoid: one reservation script, one Kafka round trip."""
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    await redis.flushdb()
    store = RedisStateStore(redis, "floor")
    redis_ms = await _reservation_round_trips(store, samples)
    kafka_ms = await _kafka_round_trips(kafka, samples // 3)
    await redis.aclose()
    return {
        "redis_reserve_p50_ms": percentile(redis_ms, 50) or 0.0,
        "redis_reserve_p99_ms": percentile(redis_ms, 99) or 0.0,
        "kafka_round_trip_p50_ms": percentile(kafka_ms, 50) or 0.0,
        "kafka_round_trip_p99_ms": percentile(kafka_ms, 99) or 0.0,
    }


async def _reservation_round_trips(store: RedisStateStore, samples: int) -> list[float]:
    from router.store import NO_POSITION, NewCall

    now = time.time()
    timings = []
    for n in range(samples):
        agent = AgentConfig(id=f"f{n}", skills={"skill01": 3})
        await store.upsert_agent(agent, now)
        await store.agent_presence(agent.id, "available", "", now, NO_POSITION)
        call = NewCall(f"c{n}", "q", 0, False, None, "PJSIP/x", now, None, None, 20.0, 0.0)
        await store.enqueue(call, NO_POSITION)
        started = time.perf_counter()
        outcome = await store.reserve(f"c{n}", agent.id, f"o{n}", now, now + 10, "{}")
        timings.append((time.perf_counter() - started) * 1000)
        assert outcome.status == "ok", outcome
    return timings


async def _kafka_round_trips(kafka: EmbeddedKafka, samples: int) -> list[float]:
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix="floor", partitions=1)
    topic = Topics("floor").ami_events
    await ensure_topics(settings, [topic])
    producer = KafkaEnvelopeProducer(settings, linger_ms=0)
    await producer.start()
    reader = KafkaGroupReader(settings, [topic], "floor")
    await reader.start()
    await producer.send_and_wait(topic, _envelope({}, "k", 0, None))
    while not await reader.read(timeout_ms=200):
        pass
    timings = []
    for n in range(samples):
        started = time.perf_counter()
        await producer.send_and_wait(topic, _envelope({}, "k", n, None))
        while not await reader.read(timeout_ms=100):
            pass
        timings.append((time.perf_counter() - started) * 1000)
    await reader.stop()
    await producer.stop()
    return timings


async def run_benchmark(
    workdir: Path, agent_counts: tuple[int, ...], worker_counts: tuple[int, ...], **overrides: Any
) -> dict[str, Any]:
    """Every (agents, workers) configuration plus the floor, as one JSON-able report."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with EmbeddedRedis(workdir / "redis") as redis_server, EmbeddedKafka() as kafka:
        floor = await measure_floor(kafka, redis_server)
        bench = Bench(workdir, kafka, redis_server)
        results = []
        index = 0
        for agents in agent_counts:
            for workers in worker_counts:
                index += 1
                logger.warning("benchmark: %d agents, %d workers", agents, workers)
                config = BenchConfig(agents=agents, workers=workers, **overrides)
                results.append(asdict(await bench.run_config(config, index)))
    return {"floor": floor, "configs": results}


def add_benchmark_arguments(parser: Any) -> None:
    parser.add_argument("--agents", default="100,1000,10000", help="agent counts, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="routing worker process counts, comma-separated")
    parser.add_argument("--loads", default="100,500", help="offered calls per second for the latency runs")
    parser.add_argument("--load-s", type=float, default=8.0, help="seconds per fixed-load run")
    parser.add_argument("--saturation-calls", type=int, default=6000, help="backlog for the throughput run")
    parser.add_argument(
        "--idle-s",
        type=_seconds,
        default=10.0,
        help="seconds with no calls, after the logins, for the idle CPU per process (0: skip)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=_milliseconds,
        default=None,
        help="kafka.fetch_max_wait_ms for the routing workers and the fake PBX (default: the setting's, 10)",
    )
    parser.add_argument(
        "--fetch-idle-wait-ms",
        type=_milliseconds,
        default=None,
        help="kafka.fetch_idle_wait_ms likewise (default: the setting's, 500; 0: off)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/acd-bench"))
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more, e.g. 10)")
    return value


def _milliseconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds (0 or more, e.g. 50)")
    return int(text)


def run_benchmark_command(args: Any) -> int:
    report = asyncio.run(
        run_benchmark(
            args.workdir,
            tuple(int(n) for n in args.agents.split(",")),
            tuple(int(n) for n in args.workers.split(",")),
            loads=tuple(int(n) for n in args.loads.split(",")),
            load_s=args.load_s,
            saturation_calls=args.saturation_calls,
            idle_s=args.idle_s,
            fetch_max_wait_ms=args.fetch_max_wait_ms,
            fetch_idle_wait_ms=args.fetch_idle_wait_ms,
        )
    )
    print(json.dumps(report) if args.json else render(report))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(report: dict[str, Any]) -> str:
    """The report as the table docs/performance.md shows."""
    floor = report["floor"]
    lines = [
        f"floor: Redis reservation script p50 {floor['redis_reserve_p50_ms']:.3f} ms, "
        f"Kafka produce->consume p50 {floor['kafka_round_trip_p50_ms']:.2f} ms",
        "agents workers | saturation dec/s/worker p50 p99 ms | CPU us/decision route redis broker driver, "
        "Redis commands/decision | load dec/s p50 p99 ms (acked p99) | idle % of a core per process "
        "route redis broker driver",
    ]
    for c in report["configs"]:
        loads = "; ".join(
            f"{x['offered_per_s']}/s: {x['decisions_per_s']} {_ms(x['p50_ms'])} {_ms(x['p99_ms'])} "
            f"({_ms(x['acked_p99_ms'])})"
            for x in c["loads"]
        )
        cpu = c.get("cpu_us_per_decision") or {}
        cpu_text = " ".join(f"{cpu.get(k, 0):.0f}" for k in ("route", "redis", "broker", "driver"))
        idle = c.get("idle_cpu_percent") or {}
        idle_text = " ".join(f"{idle[k]:.1f}" for k in ("route", "redis", "broker", "driver") if k in idle) or "-"
        lines.append(
            f"{c['agents']:>6} {c['workers']:>7} | {c['saturation_per_worker']:>8} "
            f"{_ms(c['saturation_p50_ms'])} {_ms(c['saturation_p99_ms'])} | {cpu_text}, "
            f"{c.get('redis_commands_per_decision')} | {loads} | {idle_text}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="routing-loop benchmark")
    add_benchmark_arguments(parser)
    return run_benchmark_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
