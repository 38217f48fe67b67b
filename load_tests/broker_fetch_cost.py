"""How the lab broker's CPU per fetch grows with its log: the reason a long soak on the
embedded Tansu degrades (docs/operations.md, The 30-minute soak).

    python -m load_tests.broker_fetch_cost [--steps 4] [--step-messages 10000]

On a fresh embedded broker, one partition: after each step of ``--step-messages`` more
messages, the broker's CPU (from /proc) for 300 fetches that each return the last few
messages, for 5 s of fetches at the log's end that return nothing, and for 300 fetches of
the last few messages of a short partition (20 messages) of another topic on the same
broker. A broker whose fetch cost does not depend on the log's length prints flat columns;
one whose cost grows with each partition's own log, a flat last column.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from load_tests.benchmark import cpu_seconds
from load_tests.embedded import EmbeddedKafka

TOPIC = "fetch-cost"
SHORT_TOPIC = "fetch-cost-short"
SHORT_MESSAGES = 20
FETCHES = 300
IDLE_S = 5.0


async def measure(steps: int, step_messages: int, idle_s: float = IDLE_S) -> list[dict[str, float]]:
    rows = []
    async with EmbeddedKafka() as kafka:
        assert kafka.proc is not None
        pid, servers = kafka.proc.pid, kafka.bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, 1, 1), NewTopic(SHORT_TOPIC, 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, fetch_max_wait_ms=10)
        await producer.start()
        await consumer.start()
        partition, short = TopicPartition(TOPIC, 0), TopicPartition(SHORT_TOPIC, 0)
        try:
            for _ in range(SHORT_MESSAGES):
                await producer.send(SHORT_TOPIC, b"y" * 300)
            for _ in range(steps):
                for _ in range(step_messages):
                    await producer.send(TOPIC, b"x" * 300)
                await producer.flush()
                consumer.assign([partition])
                end = (await consumer.end_offsets([partition]))[partition]
                with_data = await _fetches_cpu(consumer, partition, pid)
                await consumer.seek_to_end(partition)
                before, until = cpu_seconds(pid), time.monotonic() + idle_s
                while time.monotonic() < until:
                    await consumer.getmany(timeout_ms=100)
                idle = cpu_seconds(pid) - before
                consumer.assign([short])
                beside = await _fetches_cpu(consumer, short, pid)
                rows.append({"log_messages": end, "cpu_s_300_fetches_with_data": round(with_data, 2),
                             "cpu_s_5s_idle_fetching": round(idle, 2),
                             "cpu_s_300_fetches_short_partition": round(beside, 2)})
        finally:
            await consumer.stop()
            await producer.stop()
    return rows


async def _fetches_cpu(consumer: AIOKafkaConsumer, partition: TopicPartition, pid: int) -> float:
    """The broker's CPU seconds for FETCHES fetches that each return the partition's last messages."""
    end = (await consumer.end_offsets([partition]))[partition]
    before = cpu_seconds(pid)
    for _ in range(FETCHES):
        consumer.seek(partition, max(0, end - 5))
        await consumer.getmany(timeout_ms=100)
    return cpu_seconds(pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--step-messages", type=int, default=10_000)
    args = parser.parse_args()
    print(
        "log messages | broker CPU s, 300 fetches with data | broker CPU s, 5 s of idle fetches"
        f" | broker CPU s, 300 fetches of a {SHORT_MESSAGES}-message partition beside it"
    )
    for row in asyncio.run(measure(args.steps, args.step_messages)):
        print(
            f"{row['log_messages']:>12} | {row['cpu_s_300_fetches_with_data']:>36} | "
            f"{row['cpu_s_5s_idle_fetching']:>33} | {row['cpu_s_300_fetches_short_partition']}"
        )


if __name__ == "__main__":
    main()
