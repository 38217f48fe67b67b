"""A lease in Redis with a fencing token: one holder at a time among processes that could
do the same job.

The lease is a key set with a TTL by one Lua script (router/store/lua/lease.lua): its
holder renews it; when the holder stops renewing, the key expires and the next process
that asks takes it. Each change of hands raises a counter, the fencing token, which the
new holder stamps on what it produces: whatever a deposed holder sends late carries a lower
token than its successor's, and readers drop it (router/fencing.py).

A holder counts itself deposed as soon as the TTL has run out since its last successful
renewal *began* (measured before the request left), so it steps down before Redis lets
anyone else in, even when Redis stops answering it.

The pair of `acd ingest` processes holds ``INGEST_LEASE`` through ``Lease.run``; the timer
runner and the state collector hold their leases with ``RedisLeaseStore.hold_lease`` (the
same script) once per tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from router.errors import AcdError
from router.store.replies import LeaseGrant

logger = logging.getLogger(__name__)

INGEST_LEASE = "ingest_lease"
# The standby takes over within TTL + RENEW of the active's death (2 s): the active renews
# every RENEW, so one or two renewals may fail (a slow Redis) before it steps down.
INGEST_LEASE_TTL_S = 1.5
INGEST_LEASE_RENEW_S = 0.5


class LeaseStore(Protocol):
    async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant: ...

    async def release_lease(self, name: str, owner: str) -> bool: ...


class Lease:
    """``hold`` takes or keeps the lease; ``token`` is the fencing token while ``held``."""

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        owner: str,
        *,
        ttl_s: float = INGEST_LEASE_TTL_S,
        renew_s: float = INGEST_LEASE_RENEW_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_s < ttl_s:
            raise ValueError(f"lease {name}: renew every {renew_s}s must be shorter than its TTL {ttl_s}s")
        self.store = store
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.now = now
        self._token = 0
        self._valid_until = 0.0
        # Until when a holder is known to have held the lease (monotonic): this one's term,
        # or another's (Redis said it held the lease, so it renewed at most a TTL before).
        self._own_until = -math.inf
        self._others_until = -math.inf
        # For the current term: until when a holder was known to hold the lease before it
        # (monotonic; -inf: none known). What nobody published (the gap) starts there.
        self.held_before_until = -math.inf
        # The current term began where this process's last one ended, with nobody holding
        # the lease between (its key expired on a starved machine and it took it again):
        # nobody else did the lease's work meanwhile. Redis says so (lua/lease.lua); a
        # failover that lost the last take-over can make it wrong, in a rarer case still.
        self.follows_own_term = False
        self.terms = 0  # terms this process began (a lapse and a renewal begin a new one)

    @property
    def held(self) -> bool:
        """True until the TTL has run out since the last successful renewal began."""
        return self._token > 0 and self.now() < self._valid_until

    @property
    def token(self) -> int:
        """The fencing token of this holder's term; 0 while not held."""
        return self._token if self.held else 0

    async def hold(self) -> int:
        """One attempt to take or keep the lease: the token, or 0 (someone else holds it, or
        Redis did not answer and the TTL has run out since the last renewal)."""
        started = self.now()
        try:
            grant = await self.store.fenced_lease(self.name, self.owner, self.ttl_s)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("lease %s not renewed (%s)", self.name, exc)
            return self.token
        token = grant.token
        if token:
            if token != self.token:  # a new term: the lease was held before until ...
                self.held_before_until = max(self._others_until, min(self._own_until, started))
                self.follows_own_term = grant.unbroken and self.terms > 0
                self.terms += 1
            self._token, self._valid_until = token, started + self.ttl_s
            self._own_until = self._valid_until
        else:
            answered = self.now()
            if self._token:
                self._own_until = min(self._valid_until, answered)
            self._others_until = max(self._others_until, answered - self.ttl_s)
            self._token = 0
        return token

    async def release(self) -> None:
        """Give the lease up (a clean stop), so that the standby need not wait for the TTL."""
        if not self.held:
            return
        self._token = 0
        try:
            await self.store.release_lease(self.name, self.owner)
        except AcdError as exc:
            if not exc.retriable:
                raise
            logger.warning("lease %s not released (%s); it expires in %ss", self.name, exc, self.ttl_s)

    async def keep(self, on_change: Callable[[int], None]) -> None:
        """Take or keep the lease every ``renew_s``, for ever (cancel to stop; ``release``
        after): ``on_change(token)`` when this process begins a term, ``on_change(0)`` when
        it stops being the holder (another took it, or the TTL ran out without a renewal)."""
        known = (0, 0)
        while True:
            await self.hold()
            token = self.token
            term = (token, self.terms if token else 0)
            if term != known:
                known = term
                on_change(token)
            # A holder wakes up when its term would run out, too: stepping down must not wait
            # for Redis. A standby asks every ``renew_s``.
            wait = min(self.renew_s, self._valid_until - self.now()) if token else self.renew_s
            await asyncio.sleep(max(0.0, wait))
