"""The fencing marks of the AMI event partitions, in Redis (the ``FenceStore`` of
router.fencing)."""

from __future__ import annotations

from typing import ClassVar

from router.fencing import Mark
from router.store.base import RedisSiteStore
from router.store.errors import translates_redis_errors


@translates_redis_errors
class RedisFenceStore(RedisSiteStore):
    """Per partition ``token:offset`` in one hash, raised by one script."""

    SCRIPTS: ClassVar[tuple[str, ...]] = ("fence_raise",)

    async def mark(self, part: str) -> Mark | None:
        return _parsed(await self.redis.hget(self.keys.fence_marks, part))

    async def raise_mark(self, part: str, token: int, offset: int) -> Mark:
        mark = _parsed(await self._run("fence_raise", part, token, offset))
        assert mark is not None  # the script always answers with the mark in force
        return mark


def _parsed(value: object) -> Mark | None:
    if not value:
        return None
    token, _, offset = str(value.decode() if isinstance(value, bytes) else value).partition(":")
    return int(token), int(offset)
