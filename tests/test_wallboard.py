"""The built-in wallboard page in a real headless Chromium (Debian's `chromium` package,
installed by scripts/bootstrap.sh), served by the API over real TCP from a real Redis.

Two views of the same page: the rendered DOM (the texts and figures), and a PNG screenshot
decoded here (no imaging library needed) to check that it is not blank and has the expected
layout — a queue meeting its target drawn green left of one missing it drawn red, under the
header band, above the row of agent states. Robust, not pixel-exact.

The browser is driven over the DevTools protocol (a websocket, aiohttp's client), so each
test waits for the page's own signal (the first live update rendered) instead of racing a
fixed budget: under load, --dump-dom with --virtual-time-budget dumped the page before the
live stream's first event had arrived, now and then.

Set ACD_TEST_SKIP_BROWSER=1 to skip on a machine without Chromium (CI must not).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.store import NO_POSITION
from router.store.params import SiteDays
from tests.polling import eventually

from .test_api_support import READ_TOKEN, ApiHarness, enqueue, offer, present, running_api

pytestmark = pytest.mark.redis

BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
LIVE = "document.body && Number(document.body.dataset.liveUpdates || 0) >= 1"
MET, MISSED = (0x16, 0xA3, 0x4A), (0xDC, 0x26, 0x26)  # the page's --met and --missed colours
BACKGROUND, HEADER, ON_CALL = (0x0F, 0x17, 0x2A), (0x02, 0x06, 0x17), (0x38, 0xBD, 0xF8)


def chromium() -> str:
    for name in (os.environ.get("ACD_TEST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    if os.environ.get("ACD_TEST_SKIP_BROWSER") == "1":
        pytest.skip("no Chromium, and ACD_TEST_SKIP_BROWSER=1")
    pytest.fail(
        "Chromium not found: run scripts/bootstrap.sh (installs Debian's chromium) or set ACD_TEST_CHROMIUM"
    )


class Page:
    """One tab of a headless Chromium, over the DevTools protocol."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self.ids)
        await self.socket.send_json({"id": request_id, "method": method, "params": params})
        async for message in self.socket:
            reply = json.loads(message.data)
            if reply.get("id") == request_id:
                assert "error" not in reply, reply
                return dict(reply.get("result", {}))
        raise AssertionError(f"DevTools closed before answering {method}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def until(self, expression: str, within_s: float = 60.0) -> None:
        """Wait until ``expression`` is true in the page (it says when it is ready)."""
        await eventually(lambda: self.evaluate(expression), f"the page: {expression}", within=within_s, every=0.1)

    async def dom(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML"))

    async def screenshot(self) -> bytes:
        return base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])


@contextlib.asynccontextmanager
async def browser(url: str, profile: Path) -> AsyncIterator[Page]:
    process = await asyncio.create_subprocess_exec(
        chromium(),
        *BROWSER_FLAGS,
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        endpoint = await _devtools_endpoint(process)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
            async with session.get(f"http://{endpoint}/json/list") as response:
                target = next(t for t in await response.json() if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                page = Page(socket)
                # The viewport itself (a window of this size has a smaller one).
                await page.send(
                    "Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False
                )
                await page.send("Page.navigate", url=url)
                yield page
    finally:
        process.kill()
        await process.wait()


async def _devtools_endpoint(process: asyncio.subprocess.Process) -> str:
    """host:port from Chromium's "DevTools listening on ws://host:port/..." line."""
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while line := (await process.stderr.readline()).decode(errors="replace"):
            if match := re.search(r"DevTools listening on ws://([^/]+)/", line):
                return match.group(1)
    raise AssertionError("Chromium ended without opening DevTools")


@pytest.fixture
async def board(redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[ApiHarness]:
    """billing meets its 80 % target (answered in 4 s); support misses it (one abandon)."""
    async with running_api(redis_server.url) as api:
        now = api.clock.now()
        await present(api.store, "a1", now - 100)
        await enqueue(api.store, "c1", "billing", now - 90)
        await offer(api.store, "c1", "a1", now - 89)
        await api.store.agent_answered("c1", "a1", now - 86, NO_POSITION)
        await enqueue(api.store, "c2", "support", now - 65)
        await api.store.caller_hung_up("c2", now - 20, NO_POSITION)
        await enqueue(api.store, "c3", "support", now - 42)
        await present(api.store, "a2", now, "paused", "lunch")
        yield api


def tile(dom: str, queue: str) -> str:
    match = re.search(rf'<article class="queue (\w+)" data-queue="{queue}">(.*?)</article>', dom)
    assert match, f"no tile for {queue} in:\n{dom[:3000]}"
    return match.group(1) + " " + match.group(2)


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert match, (name, html)
    return match.group(1)


def agent_count(dom: str, state: str) -> int:
    match = re.search(rf'data-state="{state}"><div class="count">(\d+)</div>', dom)
    assert match, state
    return int(match.group(1))


async def test_wallboard_renders_the_figures_in_chromium(board: ApiHarness, tmp_path: Path) -> None:
    async with browser(f"{board.base}/wallboard#token={READ_TOKEN}", tmp_path / "profile") as page:
        await page.until(LIVE)  # a live update arrived over the stream and was rendered
        dom = await page.dom()
    assert 'data-rendered="yes"' in dom
    assert '<span id="status" class="live">live</span>' in dom
    # The counts are today's, and the board says so (the site's time zone: UTC by default).
    day = SiteDays().day(board.clock.now()).label
    assert f'<span id="today" data-day="{day}">\u2013 today, {day} (UTC)</span>' in dom

    billing, support = tile(dom, "billing"), tile(dom, "support")
    assert billing.startswith("met ") and '<div class="sl-value">100%</div>' in billing
    assert "SL target 80% in 20 s" in billing and figure(billing, "answered") == "1"
    assert support.startswith("missed ") and '<div class="sl-value">0%</div>' in support
    assert "SL target 90% in 30 s" in support
    assert figure(support, "waiting") == "1" and figure(support, "abandoned") == "1"
    minutes, seconds = figure(support, "oldest_wait").split(":")
    assert int(minutes) * 60 + int(seconds) >= 42
    assert (agent_count(dom, "on_call"), agent_count(dom, "paused"), agent_count(dom, "logged_out")) == (
        1,
        1,
        1,
    )
    assert agent_count(dom, "available") == 0


async def test_wallboard_without_a_token_says_how_to_get_in(board: ApiHarness, tmp_path: Path) -> None:
    async with browser(f"{board.base}/wallboard", tmp_path / "profile") as page:
        await page.until("document.body && document.body.innerText.includes('needs a token')")
        dom = await page.dom()
    assert "This wallboard needs a token: open /wallboard#token=&lt;read token&gt;." in dom
    assert 'data-rendered="yes"' not in dom


async def test_wallboard_screenshot_has_the_expected_layout(board: ApiHarness, tmp_path: Path) -> None:
    async with browser(f"{board.base}/wallboard#token={READ_TOKEN}", tmp_path / "profile") as page:
        await page.until(LIVE)
        png = await page.screenshot()
    width, height, pixels = decode_png(png)
    assert (width, height) == (1280, 800)

    sample = [pixels[y][x] for y in range(0, height, 4) for x in range(0, width, 4)]
    assert len(set(sample)) > 20, "the screenshot is (nearly) uniform"
    assert sum(near(p, BACKGROUND, 6) for p in sample) / len(sample) < 0.85, "mostly empty background"
    header_end = next(y for y in range(height) if sum(near(p, HEADER, 6) for p in pixels[y]) < width / 2)
    assert 30 < header_end < 150, f"no header band at the top (dark rows end at y={header_end})"

    upper = pixels[header_end : height // 2]
    green, red = box(upper, MET), box(upper, MISSED)
    assert green and red, "queue tiles not drawn in the met/missed colours"
    assert green[2] - green[0] > 150 and red[2] - red[0] > 150, (green, red)
    assert green[0] < red[0], "billing (meeting its target) should come first, left of support"
    # Under the tiles, one row of agent states: available (green), on call (blue) ... paused (red).
    tiles_end = header_end + max(green[3], red[3])
    row = next((y for y in range(tiles_end, height) if agent_row_colours(pixels[y])), None)
    assert row is not None, "no row of agent states under the queue tiles"
    available, on_call, paused = agent_row_colours(pixels[row]) or (0, 0, 0)
    assert available < on_call < paused, (available, on_call, paused)


def agent_row_colours(line: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """x of the first available (green), on-call (blue) and paused (red) pixels, if all there."""
    found = [
        next((x for x, p in enumerate(line) if near(p, colour, 12)), None)
        for colour in (MET, ON_CALL, MISSED)
    ]
    return None if None in found else (found[0] or 0, found[1] or 0, found[2] or 0)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def box(
    pixels: list[list[tuple[int, int, int]]], colour: tuple[int, int, int]
) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the pixels close to ``colour``, on a 2-px grid."""
    xs, ys = [], []
    for y in range(0, len(pixels), 2):
        for x in range(0, len(pixels[y]), 2):
            if near(pixels[y][x], colour, 12):
                xs.append(x)
                ys.append(y)
    return (min(xs), min(ys), max(xs), max(ys)) if len(xs) > 500 else None


def decode_png(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """An 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) as rows of RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[list[tuple[int, int, int]]] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, bpp)
        rows.append([(line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp)])
        previous = line
    return width, height, rows


def unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    if kind == 1:  # Sub
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
    elif kind == 3:  # Average
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return line
