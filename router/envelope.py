"""The versioned JSON envelope every message on every topic travels in.

```json
{"v": 1, "id": "...", "type": "ami.event", "source": "ami://pbx1:5038",
 "ts": 1767225600.125, "key": "call:1767225600.17", "data": {...}}
```

Optional: ``session``, ``seq`` and ``prev`` (the producer's sequence, see ``Envelope``) and
``fence`` (the fencing token of the active ingest of a pair).

``ts`` is the simulated time (see router.clock) at which the producer saw the fact;
``key`` is also the Kafka message key, so every event of one call or one agent lands, in
order, on one partition. Readers accept any ``v`` up to ``ENVELOPE_VERSION`` and reject
newer ones (a newer producer may have changed the meaning of fields).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import field
from typing import Any

import orjson

from router.errors import MalformedEventError
from router.immutable import immutable

ENVELOPE_VERSION = 1

# Envelope types.
AMI_EVENT = "ami.event"
AMI_RESYNC = "ami.resync"
ROUTING_OFFER = "routing.offer"
ROUTING_PAUSE = "routing.pause_agent"
ROUTING_OVERFLOW = "routing.overflow"
ROUTING_RECORD = "routing.record"
ROUTING_CALLBACK = "routing.callback"
DISPATCH_OUTCOME = "dispatch.outcome"
RECORD_CALL = "record.call"
RECORD_AGENT_STATE = "record.agent_state"

MAX_ENVELOPE_BYTES = 1_000_000


@immutable
class Envelope:
    type: str
    id: str
    source: str
    ts: float
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    v: int = ENVELOPE_VERSION
    # Producer sequence: ``session`` (the producer's start, ms since the epoch) and ``seq``
    # (counting from 1 in that session). Consumers deduplicate on them, which survives what
    # Kafka offsets do not: a broker that restarts empty and numbers from 0 again.
    session: int | None = None
    seq: int | None = None
    # ``seq`` of the previous envelope with the same ``key`` in this session (None for the
    # first): a consumer that has not seen that one knows an earlier event is still missing.
    prev: int | None = None
    # The fencing token of the producer's lease (router/lease.py) when it writes as one of a
    # pair (the active ingest): readers drop an envelope whose token is below one already
    # seen on its partition (router/fencing.py). Optional: None for every other producer.
    fence: int | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": self.v,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "ts": self.ts,
            "key": self.key,
            "data": self.data,
        }
        if self.session is not None and self.seq is not None:
            body["session"], body["seq"] = self.session, self.seq
            if self.prev is not None:
                body["prev"] = self.prev
        if self.fence is not None:
            body["fence"] = self.fence
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


class KeyChain:
    """What a producer needs for ``Envelope.prev``: the last seq it sent per key, for the
    ``max_keys`` keys used most recently (a key forgotten starts a new chain: prev None)."""

    def __init__(self, max_keys: int = 500_000) -> None:
        self.max_keys = max_keys
        self._last: OrderedDict[str, int] = OrderedDict()

    def link(self, key: str, seq: int) -> int | None:
        """Record ``seq`` as the key's latest; the seq before it."""
        prev = self._last.pop(key, None)
        self._last[key] = seq
        if len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return prev


def decode(raw: bytes | None) -> Envelope:
    """Parse and validate one envelope; anything else raises MalformedEventError."""
    if raw is None:
        raise MalformedEventError("empty message (no value)")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise MalformedEventError(f"message of {len(raw)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        body = orjson.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # orjson's is a JSONDecodeError
        raise MalformedEventError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedEventError(f"expected a JSON object, got {type(body).__name__}")
    return _validated(body)


def _validated(body: dict[str, Any]) -> Envelope:
    version = body.get("v")
    if not isinstance(version, int) or not 1 <= version <= ENVELOPE_VERSION:
        raise MalformedEventError(f"unsupported envelope version {version!r}")
    for name in ("id", "type", "source", "key"):
        if not isinstance(body.get(name), str):
            raise MalformedEventError(f"field {name!r} missing or not a string")
    ts = body.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise MalformedEventError(f"field 'ts' must be a finite number, got {ts!r}")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEventError("field 'data' must be an object")
    session, seq, prev = _sequence(body)
    return Envelope(
        type=body["type"],
        id=body["id"],
        source=body["source"],
        ts=float(ts),
        key=body["key"],
        data=data,
        v=version,
        session=session,
        seq=seq,
        prev=prev,
        fence=_fence(body),
    )


def _fence(body: dict[str, Any]) -> int | None:
    fence = body.get("fence")
    if fence is not None and not _counter(fence):
        raise MalformedEventError(f"field 'fence' must be a non-negative integer, got {fence!r}")
    return fence


def _sequence(body: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    session, seq, prev = body.get("session"), body.get("seq"), body.get("prev")
    if session is None and seq is None:
        if prev is not None:
            raise MalformedEventError("field 'prev' needs 'session' and 'seq'")
        return None, None, None
    if not all(_counter(v) for v in (session, seq)):
        raise MalformedEventError(
            f"fields 'session' and 'seq' must be non-negative integers, got {session!r}, {seq!r}"
        )
    if prev is not None and not (_counter(prev) and prev < seq):
        raise MalformedEventError(f"field 'prev' must be an integer below 'seq' ({seq}), got {prev!r}")
    return session, seq, prev


def _counter(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
