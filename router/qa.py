"""Quality sampling's pure parts: the draw that picks calls and the recordings' file names.

The decision itself is made in Redis, atomically with the answer (``qa_sample`` in
router/store/lua/_lib.lua); ``draw`` is the same function in Python, for tests, reports and
anyone who wants to check which calls a seed picks (docs/quality.md).
"""

from __future__ import annotations

import hashlib
import re

DRAW_HEX_DIGITS = 13  # 52 bits: exact in a double, as Lua reads them
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_STEM = 200


def draw(seed: str, call_id: str) -> float:
    """The call's draw in [0, 1): sampled at random when below the queue's share."""
    digest = hashlib.sha1(f"{seed}\n{call_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:DRAW_HEX_DIGITS], 16) / float(1 << (4 * DRAW_HEX_DIGITS))


def recording_stem(call_id: str) -> str:
    """The recording's file name without extension: ``acd-<call id>``, with every character
    but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``.

    MixMonitor takes its file name relative to Asterisk's monitor directory and joins it with
    its options by commas (app_mixmonitor.c): no ``/`` (no other directory), no ``,`` (no
    options smuggled in), nothing outside the portable file-name characters."""
    return "acd-" + UNSAFE.sub("_", call_id)[:MAX_STEM]
