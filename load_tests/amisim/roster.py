"""The app_queue roster queue agents log in to (``acd-agents``), and its AMI views.

Only membership is modelled: callers never pass through app_queue in this recipe, so, as
on a real Asterisk, ``CallsTaken``, ``LastCall`` and ``InCall`` stay 0 and no QueueEntry
exists. ``Status`` follows the member's device state. Field lists follow
``queue_member_blob_create`` and ``manager_queues_status``/``manager_queues_summary`` in
apps/app_queue.c (Asterisk 18-22).
"""

from __future__ import annotations

from dataclasses import dataclass

from load_tests.amisim import perms
from load_tests.amisim.core import Core
from load_tests.amisim.phones import Phones, SimAgent
from load_tests.amisim.snapshot import DEVICE_STATES
from load_tests.amisim.wire import render_lines

Pairs = list[tuple[str, object]]


@dataclass
class RosterMember:
    interface: str
    name: str
    login_time: int
    paused: bool = False
    reason: str = ""
    last_pause: int = 0


class Roster:
    """Dynamic members of the roster queue, keyed by interface."""

    def __init__(self, core: Core, phones: Phones, queue: str) -> None:
        self._core = core
        self._phones = phones
        self.queue = queue
        self.members: dict[str, RosterMember] = {}
        phones.device_listeners.append(self._device_changed)

    def status_of(self, interface: str) -> int:
        agent = self._phones.by_interface.get(interface)
        if agent is None:
            return DEVICE_STATES["INVALID"]
        return DEVICE_STATES[agent.device_state]

    def member_pairs(self, member: RosterMember) -> Pairs:
        """Fields of QueueMemberAdded/Removed/Pause/Status, in Asterisk's order."""
        return [
            ("Queue", self.queue),
            ("MemberName", member.name),
            ("Interface", member.interface),
            ("StateInterface", member.interface),
            ("Membership", "dynamic"),
            ("Penalty", 0),
            ("CallsTaken", 0),
            ("LastCall", 0),
            ("LastPause", member.last_pause),
            ("LoginTime", member.login_time),
            ("InCall", 0),
            ("Status", self.status_of(member.interface)),
            ("Paused", int(member.paused)),
            ("PausedReason", member.reason),
            ("Ringinuse", 1),
            ("Wrapuptime", 0),
        ]

    def _publish(self, name: str, member: RosterMember) -> None:
        self._core.emit(name, perms.AGENT, render_lines(self.member_pairs(member)))

    def add(self, interface: str, name: str, *, paused: bool = False, reason: str = "") -> bool:
        """AddQueueMember: False (and no event) when the interface is already a member."""
        if interface in self.members:
            return False
        now = int(self._core.now())
        member = RosterMember(interface, name or interface, now, paused, reason if paused else "")
        if paused:
            member.last_pause = now
        self.members[interface] = member
        self._publish("QueueMemberAdded", member)
        return True

    def remove(self, interface: str) -> bool:
        member = self.members.pop(interface, None)
        if member is None:
            return False
        self._publish("QueueMemberRemoved", member)
        return True

    def set_paused(self, interface: str, paused: bool, reason: str = "") -> bool:
        """PauseQueueMember/UnpauseQueueMember; publishes even when already in that state."""
        member = self.members.get(interface)
        if member is None:
            return False
        member.paused = paused
        member.reason = reason
        if paused:
            member.last_pause = int(self._core.now())
        self._publish("QueueMemberPause", member)
        return True

    def _device_changed(self, agent: SimAgent) -> None:
        member = self.members.get(agent.interface)
        if member is not None:
            self._publish("QueueMemberStatus", member)

    # -- QueueStatus / QueueSummary -------------------------------------------------

    def params_pairs(self) -> Pairs:
        return [
            ("Queue", self.queue),
            ("Max", 0),
            ("Strategy", "ringall"),
            ("Calls", 0),
            ("Holdtime", 0),
            ("TalkTime", 0),
            ("Completed", 0),
            ("Abandoned", 0),
            ("ServiceLevel", 0),
            ("ServicelevelPerf", "0.0"),
            ("ServicelevelPerf2", "0.0"),
            ("Weight", 0),
        ]

    def status_member_pairs(self, member: RosterMember) -> Pairs:
        return [
            ("Queue", self.queue),
            ("Name", member.name),
            ("Location", member.interface),
            ("StateInterface", member.interface),
            ("Membership", "dynamic"),
            ("Penalty", 0),
            ("CallsTaken", 0),
            ("LastCall", 0),
            ("LastPause", member.last_pause),
            ("LoginTime", member.login_time),
            ("InCall", 0),
            ("Status", self.status_of(member.interface)),
            ("Paused", int(member.paused)),
            ("PausedReason", member.reason),
            ("Wrapuptime", 0),
        ]

    def summary_pairs(self) -> Pairs:
        statuses = [(self.status_of(m.interface), m.paused) for m in self.members.values()]
        unusable = (DEVICE_STATES["INVALID"], DEVICE_STATES["UNAVAILABLE"])
        idle = (DEVICE_STATES["NOT_INUSE"], DEVICE_STATES["UNKNOWN"])
        return [
            ("Queue", self.queue),
            ("LoggedIn", sum(1 for status, _ in statuses if status not in unusable)),
            ("Available", sum(1 for status, paused in statuses if status in idle and not paused)),
            ("Callers", 0),
            ("HoldTime", 0),
            ("TalkTime", 0),
            ("LongestHoldTime", 0),
        ]
