"""The Lua scripts of router/store/lua/, loaded into Redis once as a function library.

Every script's body becomes a function of one library (Redis Functions, Redis 7): the
shared prelude (``_lib.lua``) and the scripts are compiled once when the library is loaded,
not at every call as an ``EVALSHA`` of the same text would be (that cost 22-47 µs of
redis-server CPU per round trip, more than many a script's own work). Every round trip is
one ``FCALL <library>_batch`` of one operation or many, as one JSON argument (a lone
operation too: its arguments one by one cost the routing worker more in redis-py's packing
than the JSON does): the batch runs its operations in order, each in ``pcall`` so that one
failing operation reports its error without hiding the others' answers. Redis runs a function
atomically, so a batch is exactly the scripts run one after the other, minus the round
trips.

The library's name carries a digest of its text, so processes of two versions (a rolling
upgrade) each use their own. Redis keeps the library in its dataset (AOF, RDB, replicas); a
Redis that lost it (restarted empty) answers "Function not found", and the library is
loaded again and the call made again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from router.store.errors import translates_redis_errors
from router.store.keys import Keys

logger = logging.getLogger(__name__)

Arg = str | int | float


def _lua(name: str) -> str:
    return (resources.files("router.store") / "lua" / f"{name}.lua").read_text()


def library_text(names: Iterable[str]) -> tuple[str, str]:
    """(library name, its code): the prelude, each script as ``OPS[name](ARGV)``, and the
    registered function, ``<name>_batch``."""
    parts = [
        # The prelude reads the key prefix from ARGV[1]; a library has no ARGV when loaded,
        # and each call sets P (the prelude's local) itself.
        "local ARGV = {}",
        _lua("_lib"),
        "local OPS = {}",
    ]
    for name in names:
        # The parameter named ARGV shadows the one above: the body reads its own arguments.
        parts.append(f"OPS[{json.dumps(name)}] = function(ARGV)\n{_lua(name)}\nend")
    parts.append(
        """
-- A replica (a primary demoted by a failover) refuses every write: the whole batch fails
-- with its error, which the client sees as an outage (retriable) and not as the answer of
-- an operation (a bug).
local function cannot_write(message)
  return message:find('^READONLY') ~= nil or message:find('^MASTERDOWN') ~= nil
end

-- args: the key prefix, a JSON list of [script, arg, ...]
local function run_batch(keys, args)
  P = args[1]
  HANDED = {}
  forget_texts()
  local out = {}
  for i, op in ipairs(cjson.decode(args[2])) do
    local op_args = {P, unpack(op, 2)}  -- sized once, not grown one argument at a time
    use_days(nil)  -- an operation that passes no days counts none (not the previous one's)
    local ok, answer = pcall(OPS[op[1]], op_args)
    if ok then
      out[i] = answer or {}
    elseif cannot_write(tostring(answer)) then
      return redis.error_reply(tostring(answer))  -- the server's state, not this operation's fault
    else
      out[i] = {'error', tostring(answer)}
    end
  end
  return out
end
"""
    )
    code = "\n".join(parts)
    library = "acd_" + hashlib.sha1(code.encode()).hexdigest()[:16]
    registration = f"redis.register_function('{library}_batch', run_batch)\n"
    return library, f"#!lua name={library}\n{code}\n{registration}"


def lua_arg(value: Arg) -> str:
    """An argument as redis-py sends one on its own (repr for floats), for the batch's JSON."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class ScriptError:
    """One operation of a batch failed inside Redis (a bug or bad data, not an outage)."""

    script: str
    message: str


class ScriptFailedError(ResponseError):
    """An operation of a batch failed inside Redis (a Lua error): a bug or bad data, not an
    outage. The same error class redis-py raises for a script run on its own."""


@translates_redis_errors
class LuaScripts:
    """Runs a site's scripts by name, from the library of ``library_text`` (loaded on first
    use, and again whenever Redis has lost it).

    ``run`` batches by itself: every script asked for while the event loop is busy with
    other work goes to Redis in one round trip (the batch script), once those callers are
    all waiting. Concurrent handlers (one per call or agent) so pay one round trip per step
    together instead of one each; a lone caller pays one round trip as before.
    """

    def __init__(self, redis: Redis, keys: Keys, names: Iterable[str]) -> None:
        self.keys = keys
        names = tuple(names)
        self.names = frozenset(names)
        self._redis = redis
        self.library, self.code = library_text(names)
        self._pending: list[tuple[str, Sequence[Arg], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self.round_trips = 0

    async def run(self, name: str, *args: Arg) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._pending:
            # Runs after every task that is ready now has had its turn to add its own.
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((name, args, future))
        result = await future
        if isinstance(result, ScriptError):
            raise ScriptFailedError(f"{result.script}: {result.message}")
        if isinstance(result, list) and result and result[0] == "duplicate":
            logger.debug("%s: redelivery ignored %s", name, args)
        return result

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(pending))
        self._flushes.add(task)  # held until done; its outcome goes to the callers' futures
        task.add_done_callback(self._flushes.discard)

    async def _send(self, pending: list[tuple[str, Sequence[Arg], asyncio.Future[Any]]]) -> None:
        live = [item for item in pending if not item[2].done()]  # a caller cancelled meanwhile
        try:
            answers = await self.run_batch([(name, args) for name, args, _ in live])
        except BaseException as exc:  # Redis down, or this task cancelled: every caller hears it
            for _, _, future in live:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), answer in zip(live, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def run_batch(self, ops: Sequence[tuple[str, Sequence[Arg]]]) -> list[Any | ScriptError]:
        """Run ``(script, args)`` operations in order in one round trip; one answer each."""
        if not ops:
            return []
        # Most arguments are text already: only the others pay for a call (a profile's 8 %).
        payload = orjson.dumps(
            [[name, *[a if a.__class__ is str else lua_arg(a) for a in args]] for name, args in ops]
        )
        self.round_trips += 1
        answers = await self._fcall("batch", self.keys.prefix, payload)
        return [_answer(name, answer) for (name, _), answer in zip(ops, answers, strict=True)]

    async def _fcall(self, function: str, *args: Arg | bytes) -> Any:
        """One of the library's functions; the library loaded first if Redis does not have it."""
        # The site's anchor key is declared so that Redis Cluster routes to the site's slot.
        name = f"{self.library}_{function}"
        try:
            return await self._redis.fcall(name, 1, self.keys.anchor, *args)
        except ResponseError as exc:
            if not _function_missing(exc):
                raise
        await self._redis.function_load(self.code, replace=True)
        logger.info("Lua library %s loaded into Redis", self.library)
        return await self._redis.fcall(name, 1, self.keys.anchor, *args)


def _function_missing(exc: ResponseError) -> bool:
    """Redis' answer to a call of a function it does not have (never loaded, or lost)."""
    return "function not found" in str(exc).lower()


def _answer(name: str, answer: Any) -> Any:
    if isinstance(answer, list) and len(answer) == 2 and answer[0] == "error":
        return ScriptError(name, str(answer[1]))
    return answer
