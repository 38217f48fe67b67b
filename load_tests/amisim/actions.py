"""AMI actions: permission gate, dispatch and handlers, with Asterisk's response texts.

``dispatch`` follows ``process_message`` in main/manager.c: a message without Action gets
"Missing action in request"; before login only Login, Logoff and Challenge pass ("Permission
denied" otherwise); an action outside the user's write classes gets "Permission denied"; an
unknown one "Invalid/unknown command: <name>. Use Action: ListCommands to show available
commands.". Handler texts are those of manager.c and apps/app_queue.c.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from load_tests.amisim import perms
from load_tests.amisim.originate import OriginateRequest
from load_tests.amisim.pbx import Pbx
from load_tests.amisim.perms import AmiUser
from load_tests.amisim.snapshot import duration
from load_tests.amisim.wire import (
    EOL,
    ActionMessage,
    Headers,
    encode,
    list_complete,
    list_event,
    render_lines,
    response,
    timestamp,
)

PRE_LOGIN = frozenset({"login", "logoff", "challenge"})
TRUE_WORDS = frozenset({"yes", "true", "y", "t", "1", "on"})
# Originate applications that need the system class (manager.c originate_app_permissions).
SYSTEM_APPS = ("agi", "dbdeltree", "exec", "externalivr", "mixmonitor", "originate", "reload", "system")
SYSTEM_FUNCTIONS = ("CURL", "DB", "EVAL", "FILE", "ODBC", "REALTIME", "SHELL")


class AmiSession(Protocol):
    """What handlers use of one connection (server.AmiSession).

    A protocol, so that this module does not import the server that dispatches to it.
    """

    authenticated: bool
    username: str
    read_mask: int
    write_mask: int
    event_mask: int
    challenge: str
    closing: bool

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None: ...


class AmiServer(Protocol):
    """What handlers use of the server (server.AmiSimulator)."""

    @property
    def pbx(self) -> Pbx: ...

    @property
    def users(self) -> Mapping[str, AmiUser]: ...

    @property
    def shutting_down(self) -> bool: ...

    @property
    def auth_failure_delay_s(self) -> float: ...

    def privilege(self, category: int) -> str: ...


@dataclass
class Ctx:
    """What a handler needs: the server, the session and the message."""

    sim: AmiServer
    session: AmiSession
    msg: ActionMessage

    @property
    def pbx(self) -> Pbx:
        return self.sim.pbx

    def h(self, key: str) -> str:
        return self.msg.get(key)

    def ok(self, text: str | None = None, *, list_flag: str | None = None, extra: Headers = ()) -> None:
        self.session.send(response(self.msg, "Success", text, list_flag=list_flag, extra=extra))

    def error(self, text: str) -> None:
        self.session.send(response(self.msg, "Error", text))

    def reply(self, error: str | None, success: str) -> None:
        if error is None:
            self.ok(success)
        else:
            self.error(error)


Handler = Callable[[Ctx], None]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    authority: int
    handler: Handler


ACTIONS: dict[str, ActionSpec] = {}


def action(name: str, authority: int) -> Callable[[Handler], Handler]:
    """Register a handler with the write classes Asterisk registers the action with."""

    def register(handler: Handler) -> Handler:
        ACTIONS[name.lower()] = ActionSpec(name, authority, handler)
        return handler

    return register


def dispatch(sim: AmiServer, session: AmiSession, msg: ActionMessage) -> None:
    ctx = Ctx(sim, session, msg)
    error = _gate(ctx)
    if error is not None:
        ctx.error(error)
        return
    with sim.pbx.holding_events():
        ACTIONS[msg.action.lower()].handler(ctx)


def _gate(ctx: Ctx) -> str | None:
    """The checks of process_message(), in its order; None lets the action run."""
    if ctx.msg.error is not None:
        return ctx.msg.error
    name = ctx.msg.action
    if not name:
        return "Missing action in request"
    if ctx.sim.shutting_down:
        return "Asterisk is shutting down"
    if not ctx.session.authenticated and name.lower() not in PRE_LOGIN:
        return "Permission denied"
    spec = ACTIONS.get(name.lower())
    if spec is None:
        return f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."
    if spec.authority and not ctx.session.write_mask & spec.authority:
        return "Permission denied"
    return None


def is_true(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


def leading_int(text: str) -> int | None:
    """``sscanf("%d")``: an optional sign and digits after leading blanks, rest ignored."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else None


# -- session ------------------------------------------------------------------------------


@action("Login", 0)
def _login(ctx: Ctx) -> None:
    session = ctx.session
    if session.authenticated:
        ctx.ok("Already authenticated")
        return
    user = ctx.sim.users.get(ctx.h("Username").lower()) if ctx.h("Username") else None
    if user is None or not _secret_matches(ctx, user.secret):
        # Asterisk sleeps a second, answers, then ends the session (return -1).
        session.closing = True
        session.call_later(ctx.sim.auth_failure_delay_s, lambda: _refuse(ctx))
        return
    session.authenticated = True
    session.username = ctx.h("Username")
    session.read_mask = perms.mask_of(user.read)
    session.write_mask = perms.mask_of(user.write)
    mask = perms.strings_to_mask(ctx.h("Events"))
    if mask >= 0:
        session.event_mask = mask
    ctx.ok("Authentication accepted")
    if session.event_mask & perms.SYSTEM and session.read_mask & perms.SYSTEM:
        session.send(_fully_booted(ctx))


def _secret_matches(ctx: Ctx, secret: str) -> bool:
    if ctx.h("AuthType").lower() == "md5":
        key, challenge = ctx.h("Key"), ctx.session.challenge
        expected = hashlib.md5((challenge + secret).encode(), usedforsecurity=False).hexdigest()
        return bool(key and challenge) and secrets.compare_digest(key, expected)
    return secrets.compare_digest(ctx.h("Secret").encode(), secret.encode())


def _refuse(ctx: Ctx) -> None:
    ctx.session.send(response(ctx.msg, "Error", "Authentication failed"))
    ctx.session.close()


def _fully_booted(ctx: Ctx) -> bytes:
    pbx = ctx.pbx
    uptime = int(pbx.now() - pbx.started_at)
    return encode(
        f"Event: FullyBooted{EOL}Privilege: {ctx.sim.privilege(perms.SYSTEM)}{EOL}"
        f"Uptime: {uptime}{EOL}LastReload: {uptime}{EOL}Status: Fully Booted{EOL}{EOL}"
    )


@action("Logoff", 0)
def _logoff(ctx: Ctx) -> None:
    ctx.session.send(response(ctx.msg, "Goodbye", "Thanks for all the fish."))
    ctx.session.close()


@action("Challenge", 0)
def _challenge(ctx: Ctx) -> None:
    if ctx.h("AuthType").lower() != "md5":
        ctx.error("Must specify AuthType")
        return
    if not ctx.session.challenge:
        ctx.session.challenge = str(secrets.randbelow(2**31))
    ctx.ok(extra=[("Challenge", ctx.session.challenge)])


@action("Ping", 0)
def _ping(ctx: Ctx) -> None:
    ctx.ok(extra=[("Ping", "Pong"), ("Timestamp", timestamp(ctx.pbx.now()))])


@action("Events", 0)
def _events(ctx: Ctx) -> None:
    mask = perms.strings_to_mask(ctx.h("EventMask"))
    if mask < 0:
        ctx.error("Invalid event mask")
        return
    ctx.session.event_mask = mask
    ctx.ok(extra=[("Events", "On" if mask else "Off")])


# -- channels -----------------------------------------------------------------------------


@action("Redirect", perms.CALL)
def _redirect(ctx: Ctx) -> None:
    error = _redirect_args(ctx, "")
    extra_channel = ctx.h("ExtraChannel")
    if error is None and extra_channel and ctx.h("ExtraContext"):
        error = _redirect_args(ctx, "Extra")
    if error is None:
        error = _redirect_apply(ctx, extra_channel)
    if error is not None:
        ctx.error(error)


def _redirect_args(ctx: Ctx, prefix: str) -> str | None:
    names = ("Channel", "Context", "Exten", "Priority") if not prefix else ("", "", "Exten", "Priority")
    for name in names:
        if name and not ctx.h(prefix + name):
            return f"{prefix}{name} not specified"
    priority = leading_int(ctx.h(prefix + "Priority"))
    if priority is None or priority < 1:
        return f"{prefix}Priority is invalid"
    return None


def _redirect_apply(ctx: Ctx, extra_channel: str) -> str | None:
    pbx, priority = ctx.pbx, leading_int(ctx.h("Priority")) or 1
    if extra_channel and pbx.find_channel(ctx.h("Channel")) and not pbx.find_channel(extra_channel):
        return f"ExtraChannel does not exist: {extra_channel}"
    error = pbx.redirect(ctx.h("Channel"), ctx.h("Context"), ctx.h("Exten"), priority)
    if error is not None or not extra_channel:
        if error is None:
            ctx.ok("Redirect successful")
        return error
    context = ctx.h("ExtraContext") or ctx.h("Context")
    exten = ctx.h("ExtraExten") if ctx.h("ExtraContext") else ctx.h("Exten")
    extra_priority = leading_int(ctx.h("ExtraPriority")) if ctx.h("ExtraContext") else priority
    if pbx.redirect(extra_channel, context, exten, extra_priority or 1) is not None:
        return "Secondary redirect failed"
    ctx.ok("Dual Redirect successful")
    return None


def _cause(text: str) -> int:
    """The Cause header: 0 (do not set) unless a whole number in 0..127."""
    text = text.strip()
    if not text or not text.isdigit() or int(text) > 127:
        return 0
    return int(text)


@action("Hangup", perms.SYSTEM | perms.CALL)
def _hangup(ctx: Ctx) -> None:
    name = ctx.h("Channel")
    if not name:
        ctx.error("No channel specified")
        return
    cause = _cause(ctx.h("Cause"))
    if not name.startswith("/"):
        ctx.reply(ctx.pbx.hangup_channel(name, cause), "Channel Hungup")
        return
    _hangup_matching(ctx, name, cause)


def _hangup_matching(ctx: Ctx, name: str, cause: int) -> None:
    if len(name) < 2 or not name.endswith("/"):
        ctx.error("Regex format invalid, Channel param should be /regex/")
        return
    try:
        pattern = re.compile(name[1:-1])
    except re.error:
        ctx.error(f"Regex compile failed on: {name}")
        return
    ctx.ok("Channels hung up will follow", list_flag="start")
    matched = [channel.name for channel in ctx.pbx.channels() if pattern.search(channel.name)]
    id_line = f"ActionID: {ctx.msg.action_id}{EOL}" if ctx.msg.action_id else ""
    for channel_name in matched:
        ctx.pbx.hangup_channel(channel_name, cause)
        ctx.session.send(encode(f"Event: ChannelHungup{EOL}Channel: {channel_name}{EOL}{id_line}{EOL}"))
    ctx.session.send(list_complete("ChannelsHungupListComplete", ctx.msg.action_id, len(matched)))


@action("BlindTransfer", perms.CALL)
def _blind_transfer(ctx: Ctx) -> None:
    """manager.c action_blind_transfer: the transfer runs before the response goes out."""
    if not ctx.h("Channel"):
        ctx.error("No channel specified")
    elif not ctx.h("Exten"):
        ctx.error("No extension specified")
    else:
        error = ctx.pbx.transfer_channel(ctx.h("Channel"), "blind", ctx.h("Context"), ctx.h("Exten"))
        ctx.reply(error, "Transfer succeeded")


@action("Atxfer", perms.CALL)
def _atxfer(ctx: Ctx) -> None:
    """manager.c action_atxfer: queued on the channel; the transfer follows the response.
    The agent's consultation is immediate here: the target answers and the agent completes."""
    if not ctx.h("Channel"):
        ctx.error("No channel specified")
    elif not ctx.h("Exten"):
        ctx.error("No extension specified")
    else:
        error = ctx.pbx.transfer_channel(ctx.h("Channel"), "attended", ctx.h("Context"), ctx.h("Exten"))
        ctx.reply(error, "Atxfer successfully queued")


@action("Setvar", perms.CALL)
def _setvar(ctx: Ctx) -> None:
    variable = ctx.h("Variable")
    if not variable:
        ctx.error("No variable specified")
        return
    ctx.reply(ctx.pbx.set_var(ctx.h("Channel"), variable, ctx.h("Value")), "Variable Set")


@action("Getvar", perms.CALL | perms.REPORTING)
def _getvar(ctx: Ctx) -> None:
    variable = ctx.h("Variable")
    if not variable:
        ctx.error("No variable specified")
        return
    if not ctx.session.write_mask & perms.SYSTEM and ("SHELL" in variable or "EVAL" in variable):
        ctx.error("GetVar Access Forbidden: Variable")
        return
    error, value = ctx.pbx.get_var(ctx.h("Channel"), variable)
    if error is not None:
        ctx.error(error)
        return
    ctx.ok(extra=[("Variable", variable), ("Value", value)])


@action("CoreShowChannels", perms.SYSTEM | perms.REPORTING)
def _core_show_channels(ctx: Ctx) -> None:
    ctx.ok("Channels will follow", list_flag="start")
    now, action_id = ctx.pbx.now(), ctx.msg.action_id
    channels = ctx.pbx.channels()
    ctx.pbx.ledger.listings.append(now)
    for channel in channels:
        tail = render_lines(
            [
                ("Application", channel.application),
                ("ApplicationData", channel.app_data),
                ("Duration", duration(now - channel.created_at)),
                ("BridgeId", channel.bridge_id),
            ]
        )
        ctx.session.send(list_event("CoreShowChannel", action_id, channel.snapshot() + tail))
    ctx.session.send(list_complete("CoreShowChannelsComplete", action_id, len(channels)))


# -- originate ----------------------------------------------------------------------------


@action("Originate", perms.ORIGINATE)
def _originate(ctx: Ctx) -> None:
    request = _originate_request(ctx)
    if isinstance(request, str):
        ctx.error(request)
        return
    if is_true(ctx.h("Async")):
        ctx.pbx.originate(request, lambda _ok: None)
        ctx.ok("Originate successfully queued")
        return
    if not request.application and not request.priority:
        ctx.error("Originate with 'Exten' requires 'Context' and 'Priority'")
        return
    # Synchronous Originate answers when the call is answered or has failed.
    ctx.pbx.originate(
        request, lambda ok: ctx.reply(None if ok else "Originate failed", "Originate successfully queued")
    )


def _originate_request(ctx: Ctx) -> OriginateRequest | str:
    """Validate like action_originate(); a string is the error message."""
    name, priority_text, timeout_text = ctx.h("Channel"), ctx.h("Priority"), ctx.h("Timeout")
    if not name:
        return "Channel not specified"
    priority = leading_int(priority_text) if priority_text else 0
    if priority is None or priority < 0:
        return "Invalid priority"
    timeout_ms = leading_int(timeout_text) if timeout_text else 30000
    if timeout_ms is None:
        return "Invalid timeout"
    if "/" not in name:
        return "Invalid channel"
    application, data = ctx.h("Application"), ctx.h("Data")
    if application and not ctx.session.write_mask & perms.SYSTEM and _forbidden_app(application, data):
        return "Originate Access Forbidden: app or data blacklisted"
    if priority and not ctx.pbx.extension_exists(ctx.h("Context"), ctx.h("Exten"), priority):
        return "Extension does not exist."
    caller_name, caller_num = parse_callerid(ctx.h("CallerID"))
    return OriginateRequest(
        channel=name,
        context=ctx.h("Context"),
        exten=ctx.h("Exten"),
        priority=priority,
        application=application,
        data=data,
        timeout_s=max(timeout_ms, 0) / 1000.0,
        caller_num=caller_num,
        caller_name=caller_name,
        action_id=ctx.msg.action_id,
        channel_id=ctx.h("ChannelId"),
    )


def _forbidden_app(application: str, data: str) -> bool:
    app = application.lower()
    return any(word in app for word in SYSTEM_APPS) or any(f in data for f in SYSTEM_FUNCTIONS)


def parse_callerid(text: str) -> tuple[str, str]:
    """``ast_callerid_parse`` + ``ast_shrink_phone_number``: (name, number)."""
    match = re.match(r'\s*"?([^"<]*?)"?\s*<([^>]*)>', text)
    if match:
        name, number = match.group(1).strip(), match.group(2)
    elif re.fullmatch(r"\s*[0-9+*#()\-. ]+\s*", text or "x"):
        name, number = "", text
    else:
        name, number = text.strip(), ""
    return name, re.sub(r"[()\-. ]", "", number)


# -- roster queue (apps/app_queue.c) --------------------------------------------------------


@action("QueueStatus", 0)
def _queue_status(ctx: Ctx) -> None:
    """Without ``Queue``, app_queue lists every queue on the PBX."""
    action_id = ctx.msg.action_id
    ctx.ok("Queue status will follow", list_flag="start")
    member_filter = ctx.h("Member")
    items = []
    for roster in ctx.pbx.rosters(ctx.h("Queue")):
        items.append(("QueueParams", roster.params_pairs()))
        items += [
            ("QueueMember", roster.status_member_pairs(member))
            for member in roster.members.values()
            if not member_filter or member_filter in (member.interface, member.name)
        ]
    for name, pairs in items:
        ctx.session.send(list_event(name, action_id, render_lines(pairs), id_first=False))
    ctx.session.send(list_complete("QueueStatusComplete", action_id, len(items)))


@action("QueueSummary", 0)
def _queue_summary(ctx: Ctx) -> None:
    action_id = ctx.msg.action_id
    ctx.ok("Queue summary will follow", list_flag="start")
    rosters = ctx.pbx.rosters(ctx.h("Queue"))
    for roster in rosters:
        body = render_lines(roster.summary_pairs())
        ctx.session.send(list_event("QueueSummary", action_id, body, id_first=False))
    ctx.session.send(list_complete("QueueSummaryComplete", action_id, len(rosters)))


# -- recording ----------------------------------------------------------------------------


@action("MixMonitor", perms.SYSTEM)
def _mix_monitor(ctx: Ctx) -> None:
    """app_mixmonitor.c manager_mixmonitor: write class system (its Command option runs a shell
    command). Success carries no Message, only ``MixMonitorID`` when ``i(<var>)`` asked for one;
    MixMonitorStart follows as an event (class call)."""
    if not ctx.h("Channel"):
        ctx.error("No channel specified")
        return
    error, mixmonitor_id = ctx.pbx.mix_monitor(ctx.h("Channel"), ctx.h("File"), ctx.h("Options"))
    if error is not None:
        ctx.error(error)
        return
    ctx.ok(extra=[("MixMonitorID", mixmonitor_id)] if mixmonitor_id else ())


@action("QueuePause", perms.AGENT)
def _queue_pause(ctx: Ctx) -> None:
    interface, paused_text = ctx.h("Interface"), ctx.h("Paused")
    if not interface or not paused_text:
        ctx.error("Need 'Interface' and 'Paused' parameters.")
        return
    paused = is_true(paused_text)
    error = ctx.pbx.queue_pause(interface, paused, ctx.h("Queue"), ctx.h("Reason"))
    text = "Interface paused successfully" if paused else "Interface unpaused successfully"
    ctx.reply(error, text)


@action("QueueAdd", perms.AGENT)
def _queue_add(ctx: Ctx) -> None:
    queue, interface = ctx.h("Queue"), ctx.h("Interface")
    if not queue:
        ctx.error("'Queue' not specified.")
        return
    if not interface:
        ctx.error("'Interface' not specified.")
        return
    member_name = ctx.h("MemberName") or interface
    error = ctx.pbx.queue_add(queue, interface, member_name, is_true(ctx.h("Paused")), ctx.h("Reason"))
    ctx.reply(error, "Added interface to queue")


@action("QueueRemove", perms.AGENT)
def _queue_remove(ctx: Ctx) -> None:
    queue, interface = ctx.h("Queue"), ctx.h("Interface")
    if not queue or not interface:
        ctx.error("Need 'Queue' and 'Interface' parameters.")
        return
    ctx.reply(ctx.pbx.queue_remove(queue, interface), "Removed interface from queue")
