"""Whether the routing group has applied everything published before a resync listing.

A resync closes the open calls Asterisk no longer lists (they ended while nobody watched).
A call's own events travel on its partition, the listing on another: when the partition
that holds a call's answer and hang-up lags behind (its worker killed and the group
rebalancing, a broker restarted empty and the group re-forming, a worker busy), closing
after a fixed grace period closes an answered call as abandoned, and its answer, applied
later, is ignored.

So ingest marks the listing with how far its envelopes reached in every partition
(``marks``: one past the offset Kafka acknowledged for the last envelope sent before the
listing; it waits for every acknowledgement first), and calls are closed only once the
group's committed offsets have reached those marks (``GroupProgress.behind``): offsets are
committed only after events are applied, and never past an envelope held back for order
(router.sequencing). Marks are forgotten when the broker may have lost its log (they would
point past a recreated one). A group that does not catch up within
``routing.resync_catchup_max_s`` is not waited for longer: the calls are closed as before,
with a warning naming the partitions.
"""

from __future__ import annotations

from typing import Protocol

type Marks = dict[str, int]  # "topic:partition" -> one past the last envelope acknowledged before a listing


class GroupProgress(Protocol):
    async def behind(self, marks: Marks) -> list[str]:
        """The partitions whose offset committed by the group is short of its mark."""
        ...


class NoGroup:
    """One process applying everything it reads in order (tests, the engine harness): what
    was read before the listing has been applied."""

    async def behind(self, marks: Marks) -> list[str]:
        return []


def lagging(marks: Marks, committed: dict[str, int | None]) -> list[str]:
    """The partitions whose committed offset (None: nothing committed) is short of its mark."""
    return sorted(part for part, mark in marks.items() if (committed.get(part) or 0) < mark)


def mark_of(marks: Marks, topic: str, partition: int, offset: int) -> None:
    """Note an acknowledged envelope at ``offset``: the group is past it at ``offset + 1``."""
    part = f"{topic}:{partition}"
    if offset + 1 > marks.get(part, 0):
        marks[part] = offset + 1
