"""The polling helper says what it waited for and what it saw last."""

import pytest

from tests.polling import eventually


async def test_ok():
    n = iter(range(10))
    assert await eventually(lambda: next(n) > 3, within=2, every=0) is True


async def test_async_fail():
    async def probe():
        return {}

    with pytest.raises(AssertionError, match=r"not within 0.2 s: the thing; last seen: \{\}"):
        await eventually(probe, "the thing", within=0.2)


async def test_lambda_source():
    with pytest.raises(AssertionError, match=r"lambda: 1 == 2"):
        await eventually(lambda: 1 == 2, within=0.1)


async def test_ignoring():
    def probe():
        raise OSError("refused")

    with pytest.raises(AssertionError, match="refused"):
        await eventually(probe, lambda: "late", within=0.1, ignoring=(OSError,))
