"""Envelopes of a deposed active ingest are recognised and dropped.

The active ingest of a pair stamps each envelope with the fencing token of its lease
(router/lease.py, ``Envelope.fence``); a successor's token is higher. A deposed ingest that
has not noticed yet (paused, or cut off from Redis) may still write: its envelopes reach a
partition *after* its successor's. Per partition of AMI events the routing workers keep a
mark: the highest token seen and the first offset that carried it. An envelope with a lower
token at a later offset was written after the successor took over: it is dropped.

The mark is per partition, not per site: a worker behind on one partition still reads the
old active's envelopes written *before* the take-over (lower offsets), and must apply them.
It lives in Redis (``FenceStore``), so that whoever owns a partition after a rebalance goes
on from it; a broker that restarts empty numbers its offsets from 0 again, and then a late
envelope below the mark's offset is let through (fencing fails open: nothing is lost).
"""

from __future__ import annotations

from typing import Protocol

type Mark = tuple[int, int]  # (token, the first offset of the partition that carried it)

NO_MARK: Mark = (0, -1)


class FenceStore(Protocol):
    async def mark(self, part: str) -> Mark | None: ...

    async def raise_mark(self, part: str, token: int, offset: int) -> Mark: ...


class FenceGate:
    """``admit`` each envelope of a partition before applying it; ``forget`` after a rebalance."""

    def __init__(self, store: FenceStore) -> None:
        self.store = store
        self._marks: dict[str, Mark] = {}

    async def admit(self, part: str, offset: int, fence: int | None) -> bool:
        """False: written by a deposed ingest after its successor took over (drop it)."""
        if fence is None:
            return True
        mark = self._marks.get(part)
        if mark is None:
            mark = self._marks[part] = await self.store.mark(part) or NO_MARK
        token, since = mark
        if fence < token and offset > since:
            return False
        if fence > token or (fence == token and offset < since):
            self._marks[part] = await self.store.raise_mark(part, fence, offset)
        return True

    def forget(self) -> None:
        """Partitions moved: another worker may have raised their marks meanwhile."""
        self._marks.clear()
