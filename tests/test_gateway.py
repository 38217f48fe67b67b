"""AmiGateway (panoramisk) against the AMI simulator over real TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from panoramisk.message import Message
from pydantic import SecretStr

from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.server import AmiSimulator
from router.ami.gateway import AmiGateway
from router.clock import ScaledClock
from router.errors import AmiActionError, AmiAuthenticationError, AmiConnectionError, AmiShuttingDownError
from router.settings import AmiSettings
from tests.polling import eventually

USER = AmiUser(
    "right", frozenset({"system", "call", "agent", "user"}), frozenset({"call", "reporting", "agent"})
)


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    pbx = Pbx(ScaledClock(time_scale=50.0), seed=1)
    sim = AmiSimulator(pbx, users={"acd-router": USER}, auth_failure_delay_s=0.05)
    await sim.start()
    yield sim
    await sim.stop()
    await pbx.aclose()


def settings_for(sim: AmiSimulator, secret: str = "right", **overrides: float) -> AmiSettings:
    return AmiSettings(
        host="127.0.0.1",
        port=sim.port,
        username="acd-router",
        secret=SecretStr(secret),
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        **overrides,
    )


async def test_login_and_events(simulator: AmiSimulator) -> None:
    received: list[Message] = []
    gateway = AmiGateway(settings_for(simulator), on_message=received.append)
    await gateway.connect()
    assert gateway.connected and gateway.version.startswith("9.")
    simulator.pbx.add_agent("a1")
    simulator.pbx.login("a1")
    await eventually(lambda: any(m.get("Event") == "QueueMemberAdded" for m in received))
    pong = await gateway.send_action({"Action": "Ping"})
    assert pong.get("Ping") == "Pong"
    await gateway.close()


async def test_wrong_secret_is_a_clear_authentication_error(simulator: AmiSimulator) -> None:
    gateway = AmiGateway(settings_for(simulator, secret="wrong"))
    with pytest.raises(
        AmiAuthenticationError, match=r"refused AMI login for user 'acd-router'.*ACD_AMI__SECRET"
    ):
        await gateway.connect()
    run = asyncio.create_task(gateway.run())
    with pytest.raises(AmiAuthenticationError):
        await asyncio.wait_for(run, 5)  # run() does not retry a wrong secret forever


async def test_unreachable_ami_is_retriable_and_says_what_to_check() -> None:
    gateway = AmiGateway(AmiSettings(host="127.0.0.1", port=1, connect_timeout_s=2))
    with pytest.raises(
        AmiConnectionError, match=r"cannot connect to AMI at 127.0.0.1:1.*manager.conf"
    ) as caught:
        await gateway.connect()
    assert caught.value.retriable


async def test_action_errors_carry_asterisks_message(simulator: AmiSimulator) -> None:
    gateway = AmiGateway(settings_for(simulator))
    await gateway.connect()
    with pytest.raises(AmiActionError) as caught:
        await gateway.send_action(
            {
                "Action": "Redirect",
                "Channel": "PJSIP/gone-1",
                "Context": "acd-connect",
                "Exten": "a1",
                "Priority": "1",
            }
        )
    assert caught.value.action == "Redirect" and caught.value.ami_message
    await gateway.close()


async def test_reconnects_after_a_drop_and_runs_the_hook_each_time(
    simulator: AmiSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    connects: list[int] = []
    gateway = AmiGateway(settings_for(simulator))

    async def on_connected() -> None:
        connects.append(gateway.connects)

    run = asyncio.create_task(gateway.run(on_connected))
    await eventually(lambda: connects == [1])
    await simulator.drop_connections()
    await eventually(lambda: connects == [1, 2])
    await simulator.set_listening(False)
    await simulator.drop_connections()
    await eventually(lambda: not gateway.connected)
    refused = retries(caplog)
    await eventually(lambda: retries(caplog) >= refused + 2, "two more connection attempts refused")
    assert connects == [1, 2]
    await simulator.set_listening(True)
    await eventually(lambda: connects == [1, 2, 3])
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await gateway.close()


def retries(caplog: pytest.LogCaptureFixture) -> int:
    """Connection attempts that failed so far: run() logs each before its backoff."""
    return sum("retrying in" in record.getMessage() for record in caplog.records)


async def test_in_flight_action_fails_fast_when_the_link_drops(simulator: AmiSimulator) -> None:
    gateway = AmiGateway(settings_for(simulator, action_timeout_s=30))
    await gateway.connect()
    await simulator.set_listening(False)
    pending = asyncio.create_task(gateway.send_action({"Action": "Ping"}))
    await simulator.drop_connections()
    with pytest.raises(AmiConnectionError):
        await asyncio.wait_for(pending, 5)
    await gateway.close()


async def test_run_cancels_promptly_while_connecting() -> None:
    gateway = AmiGateway(AmiSettings(host="10.255.255.1", port=5038, connect_timeout_s=30))
    run = asyncio.create_task(gateway.run())
    await asyncio.sleep(0.1)
    run.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await run


async def test_run_rides_out_an_asterisk_restart_and_reconnects(simulator: AmiSimulator) -> None:
    """`core restart gracefully`: Pings answered "Asterisk is shutting down" while a call
    remains, then Event: Shutdown, the socket closes, the port refuses; run() stays up,
    says not ready, and logs in again (hook and all) once the fresh Asterisk listens."""
    connects: list[int] = []
    shutdown_events: list[Message] = []
    gateway = AmiGateway(
        settings_for(simulator, ping_interval_s=0.05),
        on_message=lambda m: shutdown_events.append(m) if m.get("Event") == "Shutdown" else None,
    )

    async def on_connected() -> None:
        connects.append(gateway.connects)

    run = asyncio.create_task(gateway.run(on_connected))
    await eventually(lambda: connects == [1] and gateway.ready)
    call = simulator.pbx.place_call("sales", handle_time_s=60)
    restart = asyncio.create_task(simulator.restart("gracefully", down_s=0.5))
    await eventually(lambda: gateway.pbx_shutting_down)
    assert gateway.connected and not gateway.ready
    with pytest.raises(AmiShuttingDownError) as refused:
        await gateway.send_action({"Action": "Ping"})
    assert refused.value.retriable and refused.value.ami_message == "Asterisk is shutting down"
    await asyncio.sleep(0.3)  # several Pings refused meanwhile: run() must not have ended
    assert not run.done()
    simulator.pbx.hangup_call(call.call_id)
    assert await asyncio.wait_for(restart, 5) == 0
    assert [m.get("Restart") for m in shutdown_events] == ["True"]
    await eventually(lambda: connects == [1, 2] and gateway.ready)
    assert not run.done()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await gateway.close()


async def test_an_aborted_shutdown_makes_the_gateway_ready_again(simulator: AmiSimulator) -> None:
    """`core stop gracefully`, then `core abort shutdown`: the same link answers again."""
    gateway = AmiGateway(settings_for(simulator, ping_interval_s=0.05))
    run = asyncio.create_task(gateway.run())
    await eventually(lambda: gateway.ready)
    simulator.shutting_down = True  # what the gate answers while Asterisk shuts down
    await eventually(lambda: gateway.pbx_shutting_down and not gateway.ready)
    simulator.shutting_down = False  # aborted: nothing closes, Pings are answered again
    await eventually(lambda: gateway.ready)
    assert gateway.connects == 1
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await gateway.close()


async def test_a_restart_now_hangs_every_call_up_and_the_gateway_logs_in_again(
    simulator: AmiSimulator,
) -> None:
    lost: list[bool] = []
    gateway = AmiGateway(settings_for(simulator, ping_interval_s=0.05), on_lost=lambda: lost.append(True))
    run = asyncio.create_task(gateway.run())
    await eventually(lambda: gateway.ready)
    calls = [simulator.pbx.place_call("sales", handle_time_s=60) for _ in range(3)]
    assert await simulator.restart("now", down_s=0.3) == 3
    assert [simulator.pbx.ledger.calls[c.call_id].state for c in calls] == ["ended_by_restart"] * 3
    assert simulator.pbx.ledger.summary()["ended_by_pbx_restart"] == 3
    assert lost == [True]
    await eventually(lambda: gateway.connects == 2 and gateway.ready)
    assert not run.done()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await gateway.close()
