"""What every long-running process shares: logging, signals, waiting on ``stop``.

The lifecycle itself (start order, endpoints, readiness, reload, drain) is
workers/lifecycle.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Literal

logger = logging.getLogger(__name__)


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers.

    Fields passed with ``extra=`` (``call_id``, ``agent_id``, ...) become top-level keys,
    so a shipper can index and search by call or agent.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# Collect young objects after this many more allocations than deallocations (CPython's
# default is 2,000), and the older generations ten times less often than by default.
GC_THRESHOLDS = (20_000, 50, 100)


def settle_garbage_collector() -> None:
    """Exempt what start-up built (modules, classes, settings) from the collector, and
    collect less often.

    Almost nothing a worker allocates afterwards forms reference cycles, so the cyclic
    collector mostly re-walks long-lived objects: at saturation it took about 15 % of a
    routing worker's CPU with CPython's defaults (docs/performance.md, "The garbage
    collector")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def configure_logging(level: str = "INFO", *, json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("aiokafka", "panoramisk", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def loop_factory(kind: Literal["uvloop", "asyncio"]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a process runs on (setting ``event_loop``); None: asyncio's own."""
    if kind == "asyncio":
        return None
    import uvloop  # only when chosen: the package depends on it on every platform but Windows

    return uvloop.new_event_loop


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT only set ``stop``; the process then drains and exits 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def install_reload_signal(reload: asyncio.Event) -> None:
    """SIGHUP only sets ``reload``; the lifecycle re-reads and validates the file itself."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload.set)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
