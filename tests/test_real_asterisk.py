"""The pipeline against a real Asterisk, when one is given (skipped otherwise).

    ACD_TEST_ASTERISK_AMI=127.0.0.1:5038                  the manager port
    ACD_TEST_ASTERISK_USER / _SECRET                      the router's user (acd-router)
    ACD_TEST_ASTERISK_DRIVER_USER / _DRIVER_SECRET        a user with read = all, write = all
    ACD_TEST_ASTERISK_AGENTS=Local/1001@agent-phones,...  two or more agent phones
    ACD_TEST_ASTERISK_EVENTS=/tmp/events.jsonl            optional: every AMI event seen, as JSON lines

docs/asterisk.md ("Testing against your own Asterisk") says which dialplan it expects: the
shipped recipe, an [agent-phones] context whose behaviour astdb keys set
(acdphone/<ext>/noanswer, delay, talk) and a [callers] context (acdcaller/<n>/wait).
ingest, a routing worker and the dispatcher run as real `acd` processes on the session's
redis-server and broker; a second AMI session (the driver) places calls, logs agents in,
transfers and restarts Asterisk, as people and phones would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from panoramisk.message import Message
from pydantic import SecretStr
from redis.asyncio import Redis

from load_tests.children import ChildProcesses, ChildSpec
from load_tests.embedded import EmbeddedRedis
from router.ami.gateway import AmiGateway
from router.errors import AmiError
from router.settings import AmiSettings
from router.store import RedisStateStore
from tests.polling import eventually
from workers.api.roster import member_name_of

AMI = os.environ.get("ACD_TEST_ASTERISK_AMI", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AMI, reason="no real Asterisk given (set ACD_TEST_ASTERISK_AMI=host:port)"),
]

ROSTER = "acd-agents"
QUEUE = "support"
SITE = "realast"
RING_S = 4  # how long agents' and callers' phones ring (the recipe's Dial, callbacks' Originate)
CALLBACK_AFTER_S = 1  # a callback queue's caller hears the offer this long after entering
CALLBACK = {"offer_after_s": CALLBACK_AFTER_S, "attempts": 2, "retry_after_s": 1, "agent_first": True}
CALLER_NUMBERS = itertools.count(int(uuid.uuid4().int % 9000) * 100 + 100_000)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ACD_TEST_ASTERISK_{name}", default)


def ami_settings(user: str, secret: str) -> AmiSettings:
    host, _, port = AMI.rpartition(":")
    return AmiSettings(
        host=host or "127.0.0.1",
        port=int(port),
        username=user,
        secret=SecretStr(secret),
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        ping_interval_s=1.0,
    )


@dataclass
class Phone:
    interface: str

    @property
    def extension(self) -> str:
        return member_name_of(self.interface)

    @property
    def agent_id(self) -> str:
        return f"rt{self.extension}"


PHONES = [Phone(i) for i in _env("AGENTS", "Local/1001@agent-phones,Local/1002@agent-phones").split(",")]


@dataclass(frozen=True)
class Caller:
    call_id: str  # the Linkedid of the caller's channel
    number: str


@dataclass
class Driver:
    """The test's own AMI session: what phones, callers and an administrator do."""

    gateway: AmiGateway
    events: list[Message] = field(default_factory=list)

    async def act(self, action: str, **headers: str) -> Any:
        return await self.gateway.send_action({"Action": action, **headers}, timeout_s=10)

    async def call(
        self, *, wait_s: float = 600, queue: str = QUEUE, press_after_s: float | None = None
    ) -> Caller:
        """A caller dials in through [acd-inbound]; with ``press_after_s``, the queue's
        callback is offered after CALLBACK_AFTER_S and the caller presses 1 that long after
        answering (inside the offer's prompt and timeout)."""
        number = str(next(CALLER_NUMBERS))
        await self.act("DBPut", Family="acdcaller", Key=f"{number}/wait", Val=f"{wait_s:g}")
        variables = f"ACD_QUEUE={queue}"
        if press_after_s is not None:
            await self.act("DBPut", Family="acdcaller", Key=f"{number}/press", Val="1")
            await self.act("DBPut", Family="acdcaller", Key=f"{number}/press_after", Val=f"{press_after_s:g}")
            variables += f",ACD_CALLBACK_AFTER={CALLBACK_AFTER_S}"
        await self.act(
            "Originate",
            Channel=f"Local/{number}@callers",
            Context="acd-inbound",
            Exten=number,
            Priority="1",
            CallerID=f"Test <{number}>",
            Variable=variables,
            Async="true",
        )
        queued = await self.wait_for(
            lambda e: e.get("Event") == "UserEvent" and e.get("UserEvent") == "AcdCallQueued"
            and e.get("Exten") == number
        )
        return Caller(str(queued.get("Linkedid")), number)

    async def caller_answers(self, caller: Caller, answers: bool) -> None:
        """Whether the caller's phone answers from now on (a callback rings it)."""
        await self.act(
            "DBPut", Family="acdcaller", Key=f"{caller.number}/noanswer", Val="0" if answers else "1"
        )

    async def phone(self, phone: Phone, **knobs: str) -> None:
        """Set how a phone behaves (noanswer, delay, talk seconds) in astdb."""
        for key, value in knobs.items():
            await self.act("DBPut", Family="acdphone", Key=f"{phone.extension}/{key}", Val=value)

    async def wait_for(self, predicate: Callable[[Message], bool], within: float = 20) -> Message:
        found: Message = await eventually(
            lambda: next((e for e in self.events if predicate(e)), None), "an AMI event", within=within
        )
        return found


@dataclass
class RealPbx:
    driver: Driver
    store: RedisStateStore
    children: ChildProcesses

    async def call_state(self, call_id: str) -> dict[str, str]:
        return await self.store.call(call_id)

    async def agent(self, phone: Phone) -> dict[str, str]:
        return await self.store.agent(phone.agent_id)

    async def until(self, probe: Callable[[], Any], what: str, within: float = 30) -> Any:
        def described() -> str:
            logs = {name: child.log_tail(15) for name, child in self.children.children.items()}
            return f"{what}; process logs: {logs}"

        return await eventually(probe, described, within=within, every=0.1)

    async def state_is(self, call_id: str, *states: str, within: float = 30) -> None:
        async def probe() -> bool:
            return (await self.call_state(call_id)).get("state") in states

        await self.until(probe, f"call {call_id} in {states}", within)

    async def agent_is(self, phone: Phone, state: str, within: float = 30) -> None:
        async def probe() -> bool:
            return (await self.agent(phone)).get("state") == state

        await self.until(probe, f"agent {phone.agent_id} {state}", within)


async def set_ring_timeouts(driver: Driver) -> None:
    """The recipe's [globals] rings for RING_S (global variables set over AMI do not
    survive an Asterisk restart: set them again after one)."""
    for variable in ("ACD_RING_TIMEOUT", "ACD_CALLBACK_RING_TIMEOUT"):
        await driver.act("Setvar", Variable=variable, Value=f"{RING_S:g}")


def record_events(events: list[Message]) -> None:
    """Every AMI event the driver saw, one JSON object a line, when ACD_TEST_ASTERISK_EVENTS
    names a file: the ground truth to hold the simulator's events against."""
    if path := _env("EVENTS", ""):
        with open(path, "w") as out:
            out.writelines(json.dumps(dict(event.items())) + "\n" for event in events)


@contextlib.asynccontextmanager
async def driver_session() -> AsyncIterator[Driver]:
    settings = ami_settings(_env("DRIVER_USER", "lab"), _env("DRIVER_SECRET", "lab-secret"))
    events: list[Message] = []
    driver = Driver(AmiGateway(settings, on_message=events.append), events)
    task = asyncio.create_task(driver.gateway.run())
    await eventually(lambda: driver.gateway.ready, "the driver's AMI link ready", within=20)
    try:
        yield driver
    finally:
        record_events(events)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.gateway.close()


@pytest.fixture(scope="module")
async def pbx(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, kafka_bootstrap: str
) -> AsyncIterator[RealPbx]:
    run_dir = tmp_path_factory.mktemp("real-asterisk")
    settings = ami_settings(_env("USER", "acd-router"), _env("SECRET", "acd-router-secret"))
    config = {
        "site": SITE,
        # Every answered call sampled and recorded: MixMonitor, as the recipe's user may send it.
        "queues": [
            {"name": QUEUE, "wrapup_s": 1, "qa": {"sample_share": 1.0, "record": True}},
            {"name": "cb-agent", "wrapup_s": 1, "callback": CALLBACK},
            {"name": "cb-fails", "wrapup_s": 1, "callback": CALLBACK},
            {"name": "cb-caller-fails", "wrapup_s": 1, "callback": CALLBACK | {"agent_first": False}},
            {"name": "cb-caller", "wrapup_s": 1, "callback": CALLBACK | {"agent_first": False}},
            {"name": "cb-rejected", "wrapup_s": 1, "callback": CALLBACK},
        ],
        "agents": [
            {"id": p.agent_id, "extension": p.extension, "interface": p.interface} for p in PHONES
        ],
        "ami": {"host": settings.host, "port": settings.port, "username": settings.username},
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": f"realast-{uuid.uuid4().hex[:8]}",
            "partitions": 2,
        },
        "redis": {"url": redis_server.url},
        "routing": {
            "timer_interval_s": 0.1,
            # Caller first: the caller's phone is a Local channel, as the callers are.
            "callback": {"ring_timeout_s": RING_S, "caller_dial": "Local/{number}@callers"},
        },
    }
    (run_dir / "acd.yaml").write_text(json.dumps(config))
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    children = ChildProcesses(run_dir)
    env = {"ACD_AMI__SECRET": settings.secret.get_secret_value()}
    async with driver_session() as driver:
        for phone in PHONES:  # a clean roster: every phone logged out, answering normally
            with contextlib.suppress(AmiError):
                await driver.act("QueueRemove", Queue=ROSTER, Interface=phone.interface)
            await driver.phone(phone, noanswer="0", delay="1", talk="30")
        await set_ring_timeouts(driver)
        try:
            for name in ("ingest", "route-1", "dispatch"):
                spec = ChildSpec(name, ["--config", str(run_dir / "acd.yaml")], name.split("-")[0], env)
                await children.start_one(spec)
            await children.wait_ready(timeout_s=90)
            yield RealPbx(driver, RedisStateStore(redis, SITE), children)
        finally:
            await children.stop()
            await redis.aclose()


async def log_in(pbx: RealPbx, phone: Phone, *, paused: bool = False, reason: str = "") -> None:
    """QueueAdd as the API sends it (the *51 feature code names the member the same)."""
    headers = {"Queue": ROSTER, "Interface": phone.interface, "MemberName": phone.extension}
    headers["Paused"] = "true" if paused else "false"
    if reason:
        headers["Reason"] = reason
    await pbx.driver.gateway.send_action({"Action": "QueueAdd", **headers}, as_list=False)
    await pbx.agent_is(phone, "paused" if paused else "available")


async def log_out_everyone(pbx: RealPbx) -> None:
    for phone in PHONES:
        with contextlib.suppress(AmiError):
            await pbx.driver.act("QueueRemove", Queue=ROSTER, Interface=phone.interface)
        await pbx.agent_is(phone, "logged_out")


@pytest.fixture
async def clean(pbx: RealPbx) -> AsyncIterator[RealPbx]:
    yield pbx
    await log_out_everyone(pbx)
    for phone in PHONES:
        await pbx.driver.phone(phone, noanswer="0", delay="1", talk="30")


async def test_a_call_is_routed_answered_and_completed(clean: RealPbx) -> None:
    pbx, phone = clean, PHONES[0]
    await pbx.driver.phone(phone, talk="2")
    await log_in(pbx, phone)
    call_id = (await pbx.driver.call()).call_id
    await pbx.state_is(call_id, "connected")
    assert (await pbx.call_state(call_id))["agent"] == phone.agent_id
    await pbx.state_is(call_id, "completed")
    await pbx.agent_is(phone, "available")  # after its 1 s of wrap-up


async def test_a_sampled_call_is_recorded_on_the_callers_channel(clean: RealPbx) -> None:
    """MixMonitor as the recipe's acd-router (write = system) on the caller's channel: Asterisk
    starts it (MixMonitorStart, a call-class event) into the monitor directory's file."""
    pbx, phone = clean, PHONES[0]
    await pbx.driver.phone(phone, talk="3")
    await log_in(pbx, phone)
    call_id = (await pbx.driver.call()).call_id
    await pbx.state_is(call_id, "connected")
    state = await pbx.call_state(call_id)
    assert (state["qa_sampled"], state["qa_reason"], state["recording"]) == ("1", "random", f"acd-{call_id}.wav")
    started = await pbx.driver.wait_for(
        lambda e: e.get("Event") == "MixMonitorStart" and e.get("Linkedid") == call_id
    )
    assert started.get("Channel") == state["channel"] and started.get("Uniqueid") == call_id
    await pbx.state_is(call_id, "completed")


async def test_a_caller_who_hangs_up_on_hold_is_an_abandon(clean: RealPbx) -> None:
    pbx = clean
    await log_in(pbx, PHONES[0], paused=True, reason="lunch")
    agent = await pbx.agent(PHONES[0])
    assert (agent["state"], agent["reason"]) == ("paused", "lunch")
    call_id = (await pbx.driver.call(wait_s=2)).call_id
    await pbx.state_is(call_id, "abandoned")


async def test_ring_no_answer_pauses_the_agent_in_the_roster_queue_only(clean: RealPbx) -> None:
    pbx, lazy, keen = clean, PHONES[0], PHONES[1]
    await pbx.driver.phone(lazy, noanswer="1")
    await log_in(pbx, lazy)
    call_id = (await pbx.driver.call()).call_id
    await pbx.agent_is(lazy, "paused", within=30)
    assert (await pbx.agent(lazy))["reason"] == "ring-no-answer"
    await log_in(pbx, keen)
    await pbx.state_is(call_id, "connected")
    assert (await pbx.call_state(call_id))["agent"] == keen.agent_id
    status = await pbx.driver.act("QueueStatus", Queue=ROSTER)
    paused = {m.get("Location"): m.get("Paused") for m in status if m.get("Event") == "QueueMember"}
    assert paused[lazy.interface] == "1" and paused[keen.interface] == "0"
    await pbx.driver.act("Hangup", Channel=(await pbx.call_state(call_id))["channel"])
    await pbx.state_is(call_id, "completed")


async def test_a_blind_transfer_frees_the_agent(clean: RealPbx) -> None:
    pbx, phone = clean, PHONES[0]
    await log_in(pbx, phone)
    call_id = (await pbx.driver.call()).call_id
    await pbx.state_is(call_id, "connected")
    bridged = await pbx.driver.wait_for(
        lambda e: e.get("Event") == "BridgeEnter"
        and e.get("Linkedid") == call_id
        and e.get("Uniqueid") != call_id
        and str(e.get("Channel", "")).startswith(phone.interface.split("@")[0])
    )
    await pbx.driver.act("BlindTransfer", Channel=str(bridged.get("Channel")), Context="lab-targets", Exten="7001")
    await pbx.state_is(call_id, "transferred")
    await pbx.agent_is(phone, "available")


async def test_an_asterisk_restart_is_ridden_out_and_routing_resumes(clean: RealPbx) -> None:
    pbx, phone = clean, PHONES[0]
    await pbx.driver.phone(phone, talk="2")
    await log_in(pbx, phone, paused=True, reason="briefing")
    cut = (await pbx.driver.call()).call_id
    await pbx.state_is(cut, "waiting")
    with contextlib.suppress(AmiError):
        await pbx.driver.act("Command", Command="core restart now")
    await pbx.state_is(cut, "pbx_restart", within=60)
    assert all(child.process.returncode is None for child in pbx.children.children.values())
    await pbx.children.wait_ready(timeout_s=60)
    await eventually(lambda: pbx.driver.gateway.ready, "the driver's AMI link ready again", within=30)
    await set_ring_timeouts(pbx.driver)
    await pbx.driver.act("QueuePause", Queue=ROSTER, Interface=phone.interface, Paused="false")
    await pbx.agent_is(phone, "available")
    call_id = (await pbx.driver.call()).call_id
    await pbx.state_is(call_id, "connected", "completed")


async def callback_kept(pbx: RealPbx, caller: Caller) -> None:
    """The caller pressed 1, hung up, and the call waits at its place for its callback."""

    async def probe() -> bool:
        call = await pbx.call_state(caller.call_id)
        return bool(call.get("cb_hung_up_at")) and call.get("state") == "waiting"

    await pbx.until(probe, f"call {caller.call_id} waiting for its callback")
    call = await pbx.call_state(caller.call_id)
    assert call["cb_num"] == caller.number


async def called_back_by(pbx: RealPbx, caller: Caller, phone: Phone) -> None:
    """The callback connected ``phone``'s agent with the caller, and the call then ended."""
    await pbx.state_is(caller.call_id, "connected", "completed", within=40)
    assert (await pbx.call_state(caller.call_id))["agent"] == phone.agent_id
    await pbx.state_is(caller.call_id, "completed")


async def test_a_callback_keeps_the_callers_place_and_rings_the_agent_first(clean: RealPbx) -> None:
    """The recipe's offer, the caller's 1 and hang-up; the agent's phone is originated into
    [acd-callback], which dials the caller back, when the call's place comes up."""
    pbx, phone = clean, PHONES[0]
    await pbx.driver.phone(phone, talk="2")
    before = (await pbx.driver.call(queue="cb-agent")).call_id
    caller = await pbx.driver.call(queue="cb-agent", press_after_s=CALLBACK_AFTER_S + 2)
    after = (await pbx.driver.call(queue="cb-agent")).call_id
    await callback_kept(pbx, caller)
    await log_in(pbx, phone)
    await pbx.state_is(caller.call_id, "connected", within=40)
    # Not earlier than the caller who entered before it, not later than the one after it.
    assert (await pbx.call_state(before))["state"] == "completed"
    assert (await pbx.call_state(after))["state"] == "waiting"
    assert (await pbx.call_state(caller.call_id))["agent"] == phone.agent_id
    await pbx.state_is(after, "completed", within=40)
    assert (await pbx.call_state(caller.call_id))["state"] == "completed"
    stats = await pbx.store.queue_stats("cb-agent")
    assert (stats["offered"], stats["answered"], stats.get("abandoned", 0), stats["cb_answered"]) == (
        3,
        3,
        0,
        1,
    )


@pytest.mark.parametrize("queue", ["cb-fails", "cb-caller-fails"])  # agent first, caller first
async def test_a_callback_nobody_answers_is_tried_again_then_fails(clean: RealPbx, queue: str) -> None:
    pbx, phone = clean, PHONES[0]
    caller = await pbx.driver.call(queue=queue, press_after_s=CALLBACK_AFTER_S + 2)
    await callback_kept(pbx, caller)
    await pbx.driver.caller_answers(caller, False)
    await log_in(pbx, phone)
    await pbx.state_is(caller.call_id, "callback_failed", within=40)
    stats = await pbx.store.queue_stats(queue)
    assert (stats["cb_unanswered"], stats["cb_failed"], stats.get("abandoned", 0)) == (2, 1, 0)
    await pbx.agent_is(phone, "available")
    assert (await pbx.agent(phone)).get("reserved") == "0"


async def test_a_callback_rings_the_caller_first_then_connects_the_reserved_agent(clean: RealPbx) -> None:
    """routing.callback.caller_dial is originated into [acd-callback-connect], which dials
    the agent's extension."""
    pbx, phone = clean, PHONES[1]
    await pbx.driver.phone(phone, talk="2")
    caller = await pbx.driver.call(queue="cb-caller", press_after_s=CALLBACK_AFTER_S + 2)
    await callback_kept(pbx, caller)
    await log_in(pbx, phone)
    await called_back_by(pbx, caller, phone)
    stats = await pbx.store.queue_stats("cb-caller")
    assert (stats["answered"], stats["cb_answered"], stats.get("cb_unanswered", 0)) == (1, 1, 0)
    assert (await pbx.agent(phone)).get("reserved") == "0"


async def test_an_agent_who_lets_the_callback_ring_out_is_skipped_and_the_call_keeps_its_place(
    clean: RealPbx,
) -> None:
    """Agent first, the agent's phone never answers the Originate: a rejection (not an
    attempt), the agent paused for ring-no-answer, and the next agent calls the caller back."""
    pbx, lazy, keen = clean, PHONES[0], PHONES[1]
    await pbx.driver.phone(lazy, noanswer="1")
    await pbx.driver.phone(keen, talk="2")
    caller = await pbx.driver.call(queue="cb-rejected", press_after_s=CALLBACK_AFTER_S + 2)
    await callback_kept(pbx, caller)
    await log_in(pbx, lazy)
    await pbx.agent_is(lazy, "paused", within=30)
    assert (await pbx.agent(lazy))["reason"] == "ring-no-answer"
    call = await pbx.call_state(caller.call_id)
    assert (call["state"], call["cb_attempts"]) == ("waiting", "0")
    await log_in(pbx, keen)
    await called_back_by(pbx, caller, keen)
    stats = await pbx.store.queue_stats("cb-rejected")
    assert (stats["cb_rejected"], stats["cb_answered"], stats.get("cb_unanswered", 0)) == (1, 1, 0)
