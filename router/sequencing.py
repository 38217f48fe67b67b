"""Each key's AMI events applied in the order ingest sent them, even after a broker lost some.

Ingest chains the envelopes of one key (a call, an agent's device): ``Envelope.prev`` is the
seq of the key's previous envelope. Kafka keeps one key's envelopes in order on one
partition, except when a broker restarts empty: envelopes it had acknowledged are gone;
ingest sends them again once it notices, but envelopes sent in between arrive first.
Applying those first is wrong (a hangup applied before the answer makes an answered call
look abandoned).

The sequencer holds such an envelope back (parks it) until its predecessor has been applied,
then hands it out. If the predecessor never comes (ingest had to drop it), the parked
envelopes are applied anyway after ``wait_s``, in order. A parked envelope is not handled
yet: its offset is not committed, so after a rebalance its partition's new owner reads it
again.

Where each key's chain stands is kept in memory for the partitions this worker owns, and in
Redis (``ChainStore``) for whoever owns them after a rebalance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from router.envelope import Envelope

logger = logging.getLogger(__name__)

PARK_WAIT_S = 15.0  # real seconds: ingest resends within a few seconds of noticing a loss
MAX_PARKED = 100_000

type Link = tuple[int, int]  # (session, seq) of the last envelope applied for a key


class ChainStore(Protocol):
    async def positions(self, keys: Iterable[str]) -> dict[str, Link]: ...

    async def advance(self, links: dict[str, Link]) -> None: ...


@dataclass
class _Parked[Item]:
    since: float
    by_prev: dict[int, tuple[Envelope, Item]] = field(default_factory=dict)


class KeySequencer[Item]:
    """``admit`` before applying an envelope, ``applied`` after; ``save`` before committing."""

    def __init__(
        self, store: ChainStore, *, wait_s: float = PARK_WAIT_S, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.wait_s = wait_s
        self.now = now
        self._known: dict[str, Link] = {}
        self._unsaved: dict[str, Link] = {}
        self._parked: dict[str, _Parked[Item]] = {}

    @property
    def parked(self) -> int:
        return sum(len(p.by_prev) for p in self._parked.values())

    async def admit(self, envelope: Envelope, item: Item) -> bool:
        """True: apply it now. False: an earlier envelope of its key is missing; it is parked
        and comes back from ``applied`` (or ``overdue``)."""
        if envelope.prev is None or envelope.session is None or envelope.seq is None:
            return True
        if _in_line(envelope, self._known.get(envelope.key)):
            return True
        # Not cached, or the cache is behind: after a rebalance it starts from whatever this
        # worker applied first (a resent envelope, say), while another worker got further.
        if _in_line(envelope, await self._refresh(envelope.key)):
            return True
        if self.parked >= MAX_PARKED:
            logger.error("%d envelopes parked: applying %s out of order", MAX_PARKED, envelope.id)
            return True
        parked = self._parked.setdefault(envelope.key, _Parked(self.now()))
        parked.by_prev[envelope.prev] = (envelope, item)
        logger.warning(
            "envelope %s of %s arrived before its predecessor %d-%d; held back",
            envelope.id,
            envelope.key,
            envelope.session,
            envelope.prev,
        )
        return False

    def applied(self, envelope: Envelope) -> tuple[Envelope, Item] | None:
        """Record ``envelope`` as applied; the parked envelope next in its key's line, if any."""
        if envelope.session is None or envelope.seq is None:
            return None
        link = (envelope.session, envelope.seq)
        known = self._known.get(envelope.key)
        if known is None or known < link:
            self._known[envelope.key] = self._unsaved[envelope.key] = link
        return self._next_parked(envelope.key)

    def _next_parked(self, key: str) -> tuple[Envelope, Item] | None:
        parked = self._parked.get(key)
        if parked is None:
            return None
        session, seq = self._known[key]
        for prev in [p for p in parked.by_prev if p < seq]:
            del parked.by_prev[prev]  # came again (ingest resends) and was applied meanwhile
        found = parked.by_prev.pop(seq, None)
        if not parked.by_prev:
            del self._parked[key]
        if found is not None and found[0].session != session:
            return None
        return found

    def overdue(self) -> list[tuple[Envelope, Item]]:
        """Per key parked longer than ``wait_s``: its earliest envelope, to apply although
        the one before it never came (``applied`` then hands out the rest of the line)."""
        due = []
        cutoff = self.now() - self.wait_s
        for key, parked in list(self._parked.items()):
            if parked.since > cutoff:
                continue
            prev = min(parked.by_prev)
            envelope, item = parked.by_prev.pop(prev)
            if not parked.by_prev:
                del self._parked[key]
            logger.error(
                "envelope %d-%d of %s never came; applying %s without it",
                envelope.session,
                prev,
                key,
                envelope.id,
            )
            due.append((envelope, item))
        return due

    async def save(self) -> None:
        """Write where the chains stand (before offsets are committed)."""
        if self._unsaved:
            links, self._unsaved = self._unsaved, {}
            try:
                await self.store.advance(links)
            except BaseException:
                for key, link in links.items():
                    self._unsaved[key] = max(link, self._unsaved.get(key, link))
                raise

    def held(self) -> list[Item]:
        """The items of every parked envelope (their offsets must not be committed yet)."""
        return [item for parked in self._parked.values() for _, item in parked.by_prev.values()]

    def forget(self) -> int:
        """Partitions moved (a rebalance): drop what is cached and parked (Kafka delivers the
        parked envelopes again: their offsets were not committed); returns how many."""
        dropped = self.parked
        self._known.clear()
        self._parked.clear()
        return dropped

    async def _refresh(self, key: str) -> Link | None:
        stored = (await self.store.positions([key])).get(key)
        cached = self._known.get(key)
        if stored is not None and (cached is None or cached < stored):
            self._known[key] = stored
        return self._known.get(key)


def _in_line(envelope: Envelope, known: Link | None) -> bool:
    """Nothing to wait for: the first of its key, another ingest session, next in line or a
    redelivery. A key never seen with a predecessor named: that one is still missing."""
    if known is None:
        return envelope.prev is None
    return known[0] != envelope.session or (envelope.prev or 0) <= known[1]
