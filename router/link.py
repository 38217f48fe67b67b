"""What the readiness probes of a process's links share: ask every ``every_s``, keep
``ready``, and log an outage once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


class PeriodicProbe:
    """A link asked every ``every_s`` by ``ask`` (raising ``errors`` when it does not answer)."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, name: str, where: str, every_s: float) -> None:
        self.name = name  # "Redis", "PostgreSQL"
        self.where = where
        self.every_s = every_s
        self.ready = True  # the process's first connection was answered

    async def ask(self) -> None:
        raise NotImplementedError

    async def watch(self) -> None:
        """Until cancelled."""
        while True:
            await asyncio.sleep(self.every_s)
            await self.check()

    async def check(self) -> bool:
        try:
            await self.ask()
        except self.errors as exc:
            was_ready = self.ready
            self.failed(exc)
            if was_ready:
                await self.lost()
        else:
            if not self.ready:
                logger.info("%s at %s answers again", self.name, self.where)
                self.ready = True
                await self.recovered()
        return self.ready

    async def lost(self) -> None:
        """The link stopped answering: what a client must drop, it drops here."""

    async def recovered(self) -> None:
        """The link answers again after it did not: what a client must drop, it drops here."""

    def failed(self, exc: BaseException) -> None:
        """The link failed (a probe, or a caller saw it): not ready until the next answer."""
        if self.ready:
            logger.warning("%s at %s stopped answering: %s", self.name, self.where, exc)
        self.ready = False
