"""Where redis-server's time goes inside the scripts: each operation and each helper of the
prelude (``_lib.lua``) timed with ``TIME`` around it, in the site's hashes
``lua_profile:us`` and ``lua_profile:n``.

    python -m load_tests.profile_engine --agents 10000 --calls 3000 --lua-profile

Times are inclusive (a helper's time holds the helpers it calls) and each timed call adds
about 5-8 µs of its own (two TIME and two HINCRBY): read them against each other, not as
absolute costs. Lab only: the scripts a production process loads are never timed.
"""

from __future__ import annotations

import re

from redis.asyncio import Redis

from router.store.scripts import LuaScripts

UNTIMED = frozenset({"secs", "num", "agent_key", "call_key", "stats_key"})  # too small to time


def _timed(label: str, call: str) -> str:
    """Lua: ``call`` (an expression), its time added to ``label``'s (a Lua expression)."""
    return (
        "local t0 = redis.call('TIME'); local r = {" + call + "}; local t1 = redis.call('TIME'); "
        "redis.call('HINCRBY', P .. 'lua_profile:us', " + label + ", (t1[1] - t0[1]) * 1000000 + (t1[2] - t0[2])); "
        "redis.call('HINCRBY', P .. 'lua_profile:n', " + label + ", 1); return unpack(r)"
    )


def timed_library(library: str, code: str) -> tuple[str, str]:
    """The library's code with every prelude helper and every operation timed, under a name
    of its own (so a production library of the same version is never replaced by it)."""
    prelude, ops = code.split("local OPS = {}", 1)
    helpers = [name for name in re.findall(r"^local function (\w+)\(", prelude, re.M) if name not in UNTIMED]
    wrappers = [
        f"do local raw = {name}; {name} = function(...) {_timed(repr(name), 'raw(...)')} end end" for name in helpers
    ]
    timed_op = "local function TIMED_OP(name, op_args) " + _timed("'op:' .. name", "OPS[name](op_args)") + " end"
    ops = ops.replace("pcall(OPS[op[1]], op_args)", "pcall(TIMED_OP, op[1], op_args)")
    ops = ops.replace("return OPS[args[1]](op_args)", "return TIMED_OP(args[1], op_args)")
    # OPS is filled by the script definitions; TIMED_OP looks it up when called.
    timed = prelude + "\n".join(wrappers) + "\nlocal OPS = {}\n" + timed_op + ops
    name = library.replace("acd_", "acdprof_", 1)
    return name, timed.replace(library, name)


def time_scripts(scripts: LuaScripts) -> None:
    """From now on ``scripts`` runs the timed library."""
    scripts.library, scripts.code = timed_library(scripts.library, scripts.code)


async def report(redis: Redis, prefix: str, calls: int, *, top: int = 30) -> str:
    """The costliest operations and helpers per call, as a table."""
    spent = {str(k): int(v) for k, v in (await redis.hgetall(prefix + "lua_profile:us")).items()}
    counts = {str(k): int(v) for k, v in (await redis.hgetall(prefix + "lua_profile:n")).items()}
    lines = [f"{'operation or helper':32} {'per call':>8} {'µs each':>8} {'µs per call':>11}"]
    for name in sorted(spent, key=lambda n: -spent[n])[:top]:
        us, n = spent[name], counts[name]
        lines.append(f"{name:32} {n / calls:8.2f} {us / n:8.1f} {us / calls:11.1f}")
    return "\n".join(lines)
