"""Agent presence through Asterisk's roster queue: QueueAdd, QueueRemove, QueuePause.

Presence has one source of truth, the roster queue in Asterisk (``acd-agents``). The API
never writes presence to Redis: it asks Asterisk, and the routing workers learn the
change from the QueueMemberAdded / QueueMemberRemoved / QueueMemberPause event like any
login from a phone's feature code. So the API answers 202 Accepted.
"""

from __future__ import annotations

from typing import Any

from router.ami.gateway import AmiGateway


def member_name_of(device: str) -> str:
    """The member name the recipe's *51 feature code gives (``${CALLERID(num)}``, the phone's
    endpoint): ``PJSIP/1001`` -> ``1001``, so `queue show` lists API and phone logins alike."""
    endpoint = device.partition("/")[2] or device
    return endpoint.partition("@")[0]


class RosterGateway(AmiGateway):
    """The API's AMI session (events off); roster answers are single messages."""

    async def send_single(self, action: dict[str, str], *, timeout_s: float | None = None) -> Any:
        return await self.send_action(action, timeout_s=timeout_s, as_list=False)


class Roster:
    """Login, logout, pause and unpause of agents in the roster queue."""

    def __init__(self, gateway: RosterGateway, queue: str) -> None:
        self.gateway = gateway
        self.queue = queue

    async def login(self, device: str, *, paused: bool, reason: str) -> None:
        action = {
            "Action": "QueueAdd",
            "Queue": self.queue,
            "Interface": device,
            "MemberName": member_name_of(device),
            "StateInterface": device,
            "Paused": "true" if paused else "false",
        }
        if paused and reason:
            action["Reason"] = reason
        await self.gateway.send_single(action)

    async def logout(self, device: str) -> None:
        await self.gateway.send_single({"Action": "QueueRemove", "Queue": self.queue, "Interface": device})

    async def pause(self, device: str, reason: str) -> None:
        await self.gateway.send_single(
            {
                "Action": "QueuePause",
                "Queue": self.queue,
                "Interface": device,
                "Paused": "true",
                "Reason": reason,
            }
        )

    async def unpause(self, device: str) -> None:
        await self.gateway.send_single(
            {"Action": "QueuePause", "Queue": self.queue, "Interface": device, "Paused": "false"}
        )
