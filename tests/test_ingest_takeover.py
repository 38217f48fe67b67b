"""An ingest of a pair, alone with fakes: the standby publishes nothing and keeps what it
receives; on take-over it publishes, stamped with its token in a new session, the events
of the calls that arrived or ended in the gap and every Dial's end, then asks for a resync."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from router.clock import ScaledClock
from router.lease import Lease
from router.metrics import IngestMetrics
from router.settings import AcdSettings
from router.store.replies import LeaseGrant
from workers.ingest import IngestWorker, _Snapshot, _TookOver

from .test_ingest_resend import ControlledProducer


class FakeLeaseStore:
    """lua/lease.lua's answers: ``holder`` empty once its key expired."""

    def __init__(self) -> None:
        self.holder = ""
        self.fence = 0
        self.last_owner = ""

    async def fenced_lease(self, name: str, owner: str, ttl_s: float) -> LeaseGrant:
        if self.holder == owner:
            return LeaseGrant(self.fence, unbroken=True)
        if self.holder:
            return LeaseGrant(0, unbroken=False)
        unbroken = self.last_owner == owner
        self.holder = self.last_owner = owner
        self.fence += 1
        return LeaseGrant(self.fence, unbroken)

    async def release_lease(self, name: str, owner: str) -> bool:
        self.holder = "" if self.holder == owner else self.holder
        return True


def event(name: str, call: str, channel: str = "") -> dict[str, str]:
    return {"Event": name, "Uniqueid": channel or call, "Linkedid": call}


def active_with_clock(now: list[float]) -> tuple[FakeLeaseStore, Lease, ControlledProducer, IngestWorker]:
    """An ingest alone on a fake lease whose clock is ``now[0]`` (it holds the lease once it asks)."""
    store = FakeLeaseStore()
    lease = Lease(store, "ingest_lease", "me", ttl_s=1.5, renew_s=0.5, now=lambda: now[0])
    producer = ControlledProducer()
    worker = IngestWorker(AcdSettings(), producer, ScaledClock(), IngestMetrics(CollectorRegistry()), lease)  # type: ignore[arg-type]
    return store, lease, producer, worker


async def test_the_standby_keeps_events_and_publishes_the_gaps_events_on_take_over() -> None:
    store = FakeLeaseStore()
    store.holder = store.last_owner = "the-other"
    store.fence = 4
    lease = Lease(store, "ingest_lease", "me", ttl_s=30, renew_s=1)
    producer = ControlledProducer()
    worker = IngestWorker(AcdSettings(), producer, ScaledClock(), IngestMetrics(CollectorRegistry()), lease)  # type: ignore[arg-type]
    assert await lease.hold() == 0 and not worker.active
    for fields in (
        event("Newchannel", "c1"),  # came and went in the gap
        event("MusicOnHoldStop", "c2"),  # read against the offer out now: never replayed
        event("DialEnd", "c2") | {"DialStatus": "ANSWER"},  # there before, answered in the gap
        {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Uniqueid": "c3", "Linkedid": "c3"},
        event("AgentConnect", "c1", channel="c1-agent"),
        event("Hangup", "c1", channel="c1-agent"),  # an agent leg: not the caller hanging up
        event("Hangup", "c1"),
    ):
        await worker._handle(fields, 1.0)
    assert producer.sent == []

    store.holder = ""  # the active died, its key expired
    token = await lease.hold()
    assert token == 5 and lease.held_before_until > -math.inf
    old_session = worker._session
    await worker._take_over(_TookOver(token))
    assert worker.active
    sent = [envelope for envelope, _ in producer.sent]
    assert [(e.data["Event"], e.data["Uniqueid"]) for e in sent] == [
        ("Newchannel", "c1"),
        ("DialEnd", "c2"),  # answered in the gap: known before its hang-up comes live
        ("UserEvent", "c3"),  # arrived in the gap: known before its later events come live
        ("AgentConnect", "c1-agent"),
        ("Hangup", "c1-agent"),
        ("Hangup", "c1"),
    ]
    assert {e.fence for e in sent} == {5} and {e.session for e in sent} == {worker._session}
    assert worker._session > old_session
    assert worker._needs_resync.is_set() and worker._link_lost_at is not None

    await worker._handle(event("Hangup", "c2"), 2.0)  # live now
    assert producer.sent[-1][0].data["Uniqueid"] == "c2" and producer.sent[-1][0].fence == 5


async def test_an_active_whose_term_ran_out_stands_by_until_a_new_term() -> None:
    now = [100.0]
    _, lease, producer, worker = active_with_clock(now)
    await worker._take_over(_TookOver(await lease.hold()))
    await worker._handle(event("Newchannel", "c1"), 1.0)
    assert len(producer.sent) == 1
    worker._needs_resync.clear()  # the first term's resync came and went
    now[0] += 2.0  # no renewal came back: deposed on its own clock
    await worker._handle(event("Hangup", "c1"), 2.0)
    assert len(producer.sent) == 1 and not worker.active and worker._term == 0
    # A renewal with the same token (nobody took the lease meanwhile, so nobody published)
    # resumes: what came during the lapse goes out in the same session, chained on.
    token = await lease.hold()
    await worker._take_over(_TookOver(token))
    [(first, _), (hangup, _)] = producer.sent
    assert hangup.data["Event"] == "Hangup" and hangup.session == first.session
    assert hangup.prev == first.seq and not worker._needs_resync.is_set()


async def test_a_lapse_loses_no_event_of_a_call_that_neither_began_nor_ended_in_it() -> None:
    """An answer during the lapse was dropped (only calls that entered or ended in it were
    sent again), so the hang-up that followed made the answered call an abandoned one."""
    now = [100.0]
    _, lease, producer, worker = active_with_clock(now)
    await worker._take_over(_TookOver(await lease.hold()))
    queued = {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Uniqueid": "c1", "Linkedid": "c1"}
    await worker._handle(queued, 1.0)
    now[0] += 2.0  # the renewal came back late: the term ran out
    answered = event("DialEnd", "c1") | {"DialStatus": "ANSWER"}
    await worker._handle(answered, 2.0)
    assert not worker.active
    await worker._take_over(_TookOver(await lease.hold()))
    await worker._handle(event("Hangup", "c1"), 3.0)
    assert [e.data["Event"] for e, _ in producer.sent] == ["UserEvent", "DialEnd", "Hangup"]


async def test_a_listing_in_a_lapse_is_published_in_its_place_when_the_term_resumes() -> None:
    """The AMI listing after a reconnect reached the pump while the term had run out (a
    renewal late on a loaded machine): it was dropped, and the renewal with the same token
    did not list again, so a call that entered while AMI was away stayed unknown to the
    routers (a lost call in `acd chaos`, ami_link_dropped, beside another heavy run)."""
    now = [100.0]
    _, lease, producer, worker = active_with_clock(now)
    await worker._take_over(_TookOver(await lease.hold()))
    worker._needs_resync.clear()  # the first term's resync came and went
    now[0] += 2.0  # no renewal came back: the term ran out
    listed = {"Event": "CoreShowChannel", "Uniqueid": "c2", "Linkedid": "c2"}
    await worker._take(_Snapshot([listed], ["c2"], 50.0, {"link_lost_at": 40.0, "pbx_restart": False}))
    await worker._take(event("Hangup", "c1"))  # type: ignore[arg-type]
    assert producer.sent == [] and not worker.active  # not the active one: nothing published
    await worker._take_over(_TookOver(await lease.hold()))  # the same token: the term resumes
    sent = [envelope for envelope, _ in producer.sent]
    assert [(e.data.get("Event"), e.data.get("Uniqueid")) for e in sent] == [
        ("CoreShowChannel", "c2"),  # the listing, in its place among what was kept
        ("Hangup", "c1"),
    ]
    assert sent[0].data["Resync"] == "1" and len({e.session for e in sent}) == 1


async def test_a_take_over_of_its_own_after_a_lapse_publishes_what_it_kept_since_standing_down() -> None:
    """A starved ingest lapsed, a renewal with its old token came back that it had no time to
    act on, then its key expired and it took a new token: the lease's "last known held" had
    moved past the events it kept since standing down, and the call that entered then was
    never heard of (the race test beside another pipeline, 2026-11-30)."""
    now = [100.0]
    store, lease, producer, worker = active_with_clock(now)
    first = await lease.hold()
    await worker._take_over(_TookOver(first))
    now[0] += 2.0  # the term ran out
    queued = {"Event": "UserEvent", "UserEvent": "AcdCallQueued", "Uniqueid": "c1", "Linkedid": "c1"}
    await worker._take(queued)  # type: ignore[arg-type]
    assert producer.sent == [] and not worker.active  # standing by since 102
    now[0] += 3.0
    assert await lease.hold() == first  # renewed with the old token; its _TookOver still queued
    now[0] += 2.0
    store.holder = ""  # the key expired before the next renewal: a new token
    second = await lease.hold()
    assert second == first + 1
    await worker._take_over(_TookOver(first))  # its turn came too late: skipped
    await worker._take_over(_TookOver(second))
    assert [e.data["UserEvent"] for e, _ in producer.sent] == ["AcdCallQueued"]
    assert {e.fence for e, _ in producer.sent} == {second}


async def test_a_take_over_of_its_own_sends_everything_kept_in_the_lapse_holds_too() -> None:
    """Its key expired and it took a new token itself: nobody published meanwhile, but it
    sent only what a new term replays (calls that entered or ended, Dial ends), so a caller
    put on hold in the lapse stayed "talking" for the routers."""
    now = [100.0]
    store, lease, producer, worker = active_with_clock(now)
    first = await lease.hold()
    await worker._take_over(_TookOver(first))
    await worker._handle(event("DialEnd", "c1") | {"DialStatus": "ANSWER"}, 1.0)
    worker._needs_resync.clear()  # the first term's resync came and went
    now[0] += 2.0  # the term ran out
    await worker._handle(event("MusicOnHoldStart", "c1"), 2.0)
    store.holder = ""  # its key expired: the next renewal takes a new token
    second = await lease.hold()
    assert second > first and lease.follows_own_term
    await worker._take_over(_TookOver(second))
    sent = [envelope for envelope, _ in producer.sent]
    assert [e.data["Event"] for e in sent] == ["DialEnd", "MusicOnHoldStart"]
    assert sent[1].fence == second and sent[1].session == sent[0].session
    assert not worker._needs_resync.is_set()  # nobody published meanwhile: nothing to list


async def test_a_term_that_ran_out_with_nothing_received_meanwhile_resumes_too() -> None:
    """No event came in the lapse, so ingest never stood down: the renewal's new term began a
    new session, asked for a resync and dropped what it held for the broker."""
    now = [100.0]
    _, lease, _, worker = active_with_clock(now)
    first = await lease.hold()
    await worker._take_over(_TookOver(first))
    worker._needs_resync.clear()  # the first term's resync came and went
    session = worker._session
    await worker._handle(event("Newchannel", "c1"), 1.0)
    worker._resend_recent()  # the broker lost its topics: the recent envelope is held
    worker._needs_resync.clear()
    now[0] += 2.0  # the term ran out; nothing arrived meanwhile
    renewed = await lease.hold()
    assert renewed == first and not worker._needs_resync.is_set()
    await worker._take_over(_TookOver(renewed))
    assert worker.active and worker._session == session
    assert [e.data["Event"] for e in worker._held] == ["Newchannel"]
    assert not worker._needs_resync.is_set()


async def test_a_standby_does_not_send_its_last_terms_envelopes_again_after_a_broker_loss() -> None:
    """A deposed active's recent envelopes were resent after a broker hiccup, landing after
    its successor's, where the routing workers dropped them as a deposed ingest's."""
    now = [100.0]
    store, lease, producer, worker = active_with_clock(now)
    await worker._take_over(_TookOver(await lease.hold()))
    await worker._handle(event("Newchannel", "c1"), 1.0)
    producer.settle()
    store.holder = "the-other"  # another took the lease
    now[0] += 2.0
    assert await lease.hold() == 0
    worker._lease_changed(0)
    worker._topics_lost(["acd.ami.events.v1"])  # the broker lost them: the recent ones are held
    assert await worker._resend_held()
    assert len(producer.sent) == 1 and not worker._held
