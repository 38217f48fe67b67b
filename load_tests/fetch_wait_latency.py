"""What the consumers' fetch waits cost a sparse stream: one hop, produce to read.

    python -m load_tests.fetch_wait_latency [--fetch-max-wait-ms 10] [--fetch-idle-wait-ms 500]
        [--gaps 0.05:0.3,2:8] [--messages 40] [--json]

On a fresh embedded broker (Tansu, which answers a waiting fetch only when its wait ends),
one producer and one group member of the project's own (router.bus): for each range of
gaps, ``--messages`` messages, each after a gap drawn at random from the range (a fixed gap
would phase-lock with the fetch cycle and hide the wait), and the time from just before its
send to its read. Also the broker's CPU, per cent of a core, over each range. The idle CPU
of a whole pipeline is ``acd benchmark --idle-s``; docs/performance.md has both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass

from load_tests.benchmark import _milliseconds, cpu_seconds
from load_tests.embedded import EmbeddedKafka
from load_tests.summary import percentile
from router.bus import KafkaEnvelopeProducer, KafkaGroupReader, Topics, ensure_topics
from router.envelope import AMI_EVENT, Envelope
from router.settings import KafkaSettings


@dataclass
class GapResult:
    gaps_s: str
    messages: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    broker_cpu_percent: float


async def measure(settings: KafkaSettings, gaps: list[tuple[float, float]], messages: int) -> list[GapResult]:
    async with EmbeddedKafka() as kafka:
        assert kafka.proc is not None
        settings = settings.model_copy(update={"bootstrap_servers": kafka.bootstrap_servers})
        topic = Topics(settings.topic_prefix).ami_events
        await ensure_topics(settings, [topic])
        producer = KafkaEnvelopeProducer(settings)
        reader = KafkaGroupReader(settings, [topic], "fetch-wait-latency")
        await producer.start()
        await reader.start()
        arrived: asyncio.Queue[float] = asyncio.Queue()
        reading = asyncio.create_task(_read_forever(reader, arrived))
        try:
            await _send_and_read(producer, arrived, topic, 0)  # joined, assigned, warm
            rng = random.Random(1)
            results = []
            for low, high in gaps:
                cpu_before, started = cpu_seconds(kafka.proc.pid), time.monotonic()
                latencies = []
                for n in range(messages):
                    await asyncio.sleep(rng.uniform(low, high))
                    latencies.append(await _send_and_read(producer, arrived, topic, n))
                cpu = (cpu_seconds(kafka.proc.pid) - cpu_before) / (time.monotonic() - started) * 100
                results.append(_result(f"{low}:{high}", latencies, cpu))
            return results
        finally:
            reading.cancel()
            await reader.stop()
            await producer.stop()


async def _read_forever(reader: KafkaGroupReader, arrived: asyncio.Queue[float]) -> None:
    """Read as the workers do (a read returns after 100 ms when nothing came)."""
    while True:
        for message in await reader.read(timeout_ms=100):
            arrived.put_nowait(message.received_at)


async def _send_and_read(producer: KafkaEnvelopeProducer, arrived: asyncio.Queue[float], topic: str, n: int) -> float:
    """Milliseconds from just before the send until the reader has the message."""
    sent = time.monotonic()
    await producer.send(topic, Envelope(type=AMI_EVENT, id=f"m{n}", source="lab", ts=time.time(), key="k", data={}))
    return (await arrived.get() - sent) * 1000


def _result(gaps: str, latencies: list[float], cpu_percent: float) -> GapResult:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return GapResult(
        gaps_s=gaps,
        messages=len(latencies),
        p50_ms=rounded(percentile(latencies, 50)),
        p99_ms=rounded(percentile(latencies, 99)),
        max_ms=rounded(max(latencies, default=None)),
        broker_cpu_percent=round(cpu_percent, 2),
    )


def _gap_ranges(text: str) -> list[tuple[float, float]]:
    ranges = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        try:
            pair = (float(low), float(high or low))
        except ValueError:
            pair = (-1.0, -1.0)
        if not 0 <= pair[0] <= pair[1]:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a range of gaps in seconds: write LOW:HIGH, e.g. 0.05:0.3 (several: 0.05:0.3,2:8)"
            )
        ranges.append(pair)
    return ranges


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of messages (1 or more, e.g. 40)")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch-max-wait-ms", type=_milliseconds, default=KafkaSettings().fetch_max_wait_ms)
    parser.add_argument("--fetch-idle-wait-ms", type=_milliseconds, default=KafkaSettings().fetch_idle_wait_ms)
    parser.add_argument("--gaps", type=_gap_ranges, default=_gap_ranges("0.05:0.3,2:8"), help="LOW:HIGH seconds, ...")
    parser.add_argument("--messages", type=_count, default=40, help="messages per range of gaps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = KafkaSettings(
        topic_prefix="fwl", fetch_max_wait_ms=args.fetch_max_wait_ms, fetch_idle_wait_ms=args.fetch_idle_wait_ms
    )
    results = asyncio.run(measure(settings, args.gaps, args.messages))
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
        return
    print(f"fetch_max_wait_ms {args.fetch_max_wait_ms}, fetch_idle_wait_ms {args.fetch_idle_wait_ms}")
    for r in results:
        print(f"gaps {r.gaps_s} s: {r.messages} messages, p50 {r.p50_ms} ms, p99 {r.p99_ms} ms, "
              f"max {r.max_ms} ms; broker {r.broker_cpu_percent} % of a core")


if __name__ == "__main__":
    main()
