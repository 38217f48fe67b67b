"""Channels and bridges as AMI shows them: the snapshot header blocks of Asterisk 18-22.

Field order follows ``ast_manager_build_channel_state_string_prefix`` (main/manager_channels.c)
with ``Linkedid`` after ``Uniqueid`` as documented for Asterisk 16+, and the bridge block of
``ast_manager_build_bridge_state_string_prefix`` (main/manager_bridges.c). Every configured
``channelvars`` variable is listed on every channel, empty when unset, as channel.c does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from load_tests.amisim.wire import EOL

# enum ast_channel_state and ast_state2str().
DOWN, RESERVED, OFFHOOK, DIALING, RING, RINGING, UP, BUSY = range(8)
STATE_DESC = {
    DOWN: "Down",
    RESERVED: "Rsrvd",
    OFFHOOK: "OffHook",
    DIALING: "Dialing",
    RING: "Ring",
    RINGING: "Ringing",
    UP: "Up",
    BUSY: "Busy",
}

# ast_cause2str() texts for the causes the simulator produces (main/channel.c causes[]).
CAUSE_TEXT = {
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    31: "Normal, unspecified",
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


# OriginateResponse "Reason": the last control frame of the dial (main/pbx.c pbx_dial_reason,
# enum ast_control_frame_type): 0 no channel, 3 rang out, 4 answered, 5 busy.
REASON_FAILED, REASON_RING_TIMEOUT, REASON_ANSWERED, REASON_BUSY = 0, 3, 4, 5


# enum ast_device_state: the numbers QueueMember "Status" carries, the names of
# DeviceStateChange "State".
DEVICE_STATES = {
    "UNKNOWN": 0,
    "NOT_INUSE": 1,
    "INUSE": 2,
    "BUSY": 3,
    "INVALID": 4,
    "UNAVAILABLE": 5,
    "RINGING": 6,
    "RINGINUSE": 7,
    "ONHOLD": 8,
}


def _or_unknown(value: str) -> str:
    return value or "<unknown>"


@dataclass(eq=False)
class Channel:
    """One Asterisk channel; mutate through ``update``/``set_var`` so snapshots stay fresh."""

    name: str
    uniqueid: str
    linkedid: str
    created_at: float
    context: str
    exten: str
    manager_vars: tuple[str, ...]
    state: int = DOWN
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    priority: int = 1
    language: str = "en"
    accountcode: str = ""
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""
    hangup_pending: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    def update(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self._cache.clear()

    def set_var(self, name: str, value: str) -> None:
        self.variables[name] = value
        self._cache.clear()

    def snapshot(self, prefix: str = "") -> str:
        """The channel block of an event, encoded once per change and prefix."""
        text = self._cache.get(prefix)
        if text is None:
            text = self._render(prefix)
            self._cache[prefix] = text
        return text

    def _render(self, p: str) -> str:
        lines = [
            f"{p}Channel: {self.name}",
            f"{p}ChannelState: {self.state}",
            f"{p}ChannelStateDesc: {STATE_DESC.get(self.state, 'Unknown')}",
            f"{p}CallerIDNum: {_or_unknown(self.caller_num)}",
            f"{p}CallerIDName: {_or_unknown(self.caller_name)}",
            f"{p}ConnectedLineNum: {_or_unknown(self.connected_num)}",
            f"{p}ConnectedLineName: {_or_unknown(self.connected_name)}",
            f"{p}Language: {self.language}",
            f"{p}AccountCode: {self.accountcode}",
            f"{p}Context: {self.context}",
            f"{p}Exten: {self.exten}",
            f"{p}Priority: {self.priority}",
            f"{p}Uniqueid: {self.uniqueid}",
            f"{p}Linkedid: {self.linkedid}",
        ]
        lines += [f"{p}ChanVariable: {v}={self.variables.get(v, '')}" for v in self.manager_vars]
        return EOL.join(lines) + EOL


@dataclass(eq=False)
class Bridge:
    """A basic two-party bridge, as Dial creates one when the callee answers."""

    uniqueid: str
    members: list[Channel] = field(default_factory=list)

    def snapshot(self) -> str:
        return (
            f"BridgeUniqueid: {self.uniqueid}{EOL}"
            f"BridgeType: basic{EOL}"
            f"BridgeTechnology: simple_bridge{EOL}"
            f"BridgeCreator: {EOL}"
            f"BridgeName: {EOL}"
            f"BridgeNumChannels: {len(self.members)}{EOL}"
            f"BridgeVideoSourceMode: none{EOL}"
        )


def duration(seconds: float) -> str:
    """CoreShowChannel ``Duration``: whole seconds as %02d:%02d:%02d (hours may grow)."""
    total = max(int(seconds), 0)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
