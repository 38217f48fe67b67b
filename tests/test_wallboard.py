"""The built-in wallboard page in a real headless Chromium (Debian's `chromium` package,
installed by scripts/bootstrap.sh), served by the API over real TCP from a real Redis.

Two views of the same page: the rendered DOM (--dump-dom: the texts and figures), and a
PNG screenshot decoded here (no imaging library needed) to check that it is not blank and
has the expected layout — a queue meeting its target drawn green left of one missing it
drawn red, under the header band, above the row of agent states. Robust, not pixel-exact.

Set ACD_TEST_SKIP_BROWSER=1 to skip on a machine without Chromium (CI must not).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from load_tests.embedded import EmbeddedRedis
from router.store import NO_POSITION

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
    "--virtual-time-budget=5000",
)
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


async def browse(url: str, profile: Path, *extra: str) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium(),
        *BROWSER_FLAGS,
        f"--user-data-dir={profile}",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stdout.decode()


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
    dom = await browse(f"{board.base}/wallboard#token={READ_TOKEN}", tmp_path / "profile", "--dump-dom")
    assert 'data-rendered="yes"' in dom
    assert re.search(r'data-live-updates="[1-9]', dom), "no update arrived over the live stream"
    assert '<span id="status" class="live">live</span>' in dom

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
    dom = await browse(f"{board.base}/wallboard", tmp_path / "profile", "--dump-dom")
    assert "This wallboard needs a token: open /wallboard#token=&lt;read token&gt;." in dom
    assert 'data-rendered="yes"' not in dom


async def test_wallboard_screenshot_has_the_expected_layout(board: ApiHarness, tmp_path: Path) -> None:
    shot = tmp_path / "wallboard.png"
    await browse(
        f"{board.base}/wallboard#token={READ_TOKEN}",
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,800",
    )
    width, height, pixels = decode_png(shot.read_bytes())
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
