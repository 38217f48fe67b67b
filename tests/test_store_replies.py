"""Script replies become typed values in one place; every store class translates outages."""

from __future__ import annotations

import inspect

import router.store as store_package
from router.store.admin import AdminStore
from router.store.base import RedisSiteStore
from router.store.redis_store import RedisStateStore
from router.store.replies import Declined, Enqueued, HungUp, Overflowed, Reserved, TransferStep

CANDIDATE = ["a1", "100.5", '{"billing": 3}', "2", "1", "0", "12.5", "30"]


def test_a_hangup_that_frees_its_agent_carries_the_agent_as_a_candidate() -> None:
    hung_up = HungUp.parse(["completed", "95", "billing", "a1", "1", *CANDIDATE])
    assert (hung_up.status, hung_up.seconds, hung_up.queue, hung_up.agent_id) == ("completed", 95.0, "billing", "a1")
    assert hung_up.free_agent is not None
    assert (hung_up.free_agent.agent_id, hung_up.free_agent.active, hung_up.free_agent.skills) == (
        "a1",
        1,
        {"billing": 3},
    )
    assert HungUp.parse(["completed", "95", "billing", "a1", "0"]).free_agent is None
    assert HungUp.parse(["ignored", "0", "billing", "a1"]).free_agent is None
    assert TransferStep.parse(["unknown_call", "0", "", ""]) == TransferStep("unknown_call")


def test_short_replies_read_as_defaults() -> None:
    # Lua's nil ends a list: {'exists', nil} arrives as ['exists'].
    assert Enqueued.parse(["exists"]) == Enqueued("exists")
    assert Enqueued.parse(["requeued", "a7"]).released_agent == "a7"
    assert Enqueued.parse(["queued", "waiting", *CANDIDATE]).candidates[0].agent_id == "a1"
    assert Reserved.parse(["ok", "PJSIP/1001", "12.5"]) == Reserved("ok", "PJSIP/1001", 12.5)
    assert Reserved.parse(["call_taken", "offered"]) == Reserved("call_taken", state="offered")
    assert Overflowed.parse(["target", "PJSIP/trunk-1"]).channel == "PJSIP/trunk-1"


def test_a_decline_names_its_agent_and_whether_it_was_paused() -> None:
    assert Declined.parse(["declined", "1"], "a1") == Declined("declined", True, "a1")
    assert Declined.parse(["declined", "0", "a2"]) == Declined("declined", False, "a2")
    assert Declined.parse(["ignored", "connected"], "a1") == Declined("ignored", False, "a1")


def test_every_store_translates_redis_outages_and_runs_only_its_own_scripts() -> None:
    stores = [cls for cls in vars(store_package).values() if inspect.isclass(cls) and cls.__name__.startswith("Redis")]
    for cls in [*stores, AdminStore]:
        for name, member in vars(cls).items():
            if inspect.iscoroutinefunction(member) and not name.startswith("__"):
                assert hasattr(member, "__wrapped__"), f"{cls.__name__}.{name}"
    jobs = [cls for cls in stores if issubclass(cls, RedisSiteStore) and cls is not RedisStateStore]
    names = [name for cls in jobs for name in vars(cls).get("SCRIPTS", ())]
    assert len(names) == len(set(names))  # each script is run by one store
    assert set(RedisStateStore.script_names()) == set(names)
