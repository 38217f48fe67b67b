"""The routing loop's value types (router.immutable): equal and hashed by value like frozen
dataclasses, and read-only for the type checker, which is what guards them."""

from __future__ import annotations

from dataclasses import replace

from router.events import CallQueued
from router.immutable import immutable


def test_values_are_equal_and_hashed_by_value_and_changed_by_replace() -> None:
    one = CallQueued("c1", "PJSIP/t-1", "sales", 10.0)
    same = CallQueued("c1", "PJSIP/t-1", "sales", 10.0)
    assert one == same and hash(one) == hash(same) and len({one, same}) == 1
    moved = replace(one, queue="support")
    assert moved.queue == "support" and one.queue == "sales" and moved != one
    assert not hasattr(one, "__dict__")  # slotted: no per-instance dictionary


def test_the_type_checker_is_told_they_are_frozen() -> None:
    # mypy reads this (PEP 681) and refuses assignments to a field: the guard that
    # dataclass(frozen=True) kept at run time, at a cost per field of every instance.
    assert immutable.__dataclass_transform__["frozen_default"] is True  # type: ignore[attr-defined]

