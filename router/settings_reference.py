"""The configuration reference, docs/configuration.md, generated from the settings models.

Every key, its type and limits, its default and its environment variable are read from
the pydantic models in router.settings and router.domain, so the page cannot drift from
the code; tests/test_docs.py fails when the committed page differs from what this renders.
A field whose model gives no ``description`` takes its sentence from ``NOTES`` below, and
the same test fails when a field has neither. Regenerate with::

    .venv/bin/python -m router.settings_reference --write
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from router.domain import Requirements
from router.settings import ENV_PREFIX, AcdSettings

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = ".venv/bin/python -m router.settings_reference --write"

# What a field means, for fields whose model gives no ``description``. Keys are dotted
# paths as written in the file (list items without an index: ``queues.name``).
NOTES: dict[str, str] = {
    "site": "names this site's Redis keys (`acd:{site}:...`: one Redis Cluster hash slot per site)",
    "queues.name": "the name the dialplan's `ACD_QUEUE` gives",
    "queues.requirements": "skills an agent needs (AND of terms; a term `{any: [...]}` is an OR)",
    "queues.relax": (
        "steps `{after_s, requirements}`: from `after_s` (the router's seconds) of waiting on, those requirements"
    ),
    "queues.strategy": "which available agent takes a new call",
    "queues.priority": "default priority of its calls; higher is served first (`ACD_PRIORITY` overrides)",
    "queues.service_level.threshold_s": "T of 'answered within T seconds' (the router's seconds)",
    "queues.service_level.target": "the share to meet (0.8 = 80 %)",
    "queues.service_level.formula": "which service-level definition (docs/metrics.md)",
    "queues.staffing.patience_s": "callers' mean patience (router's seconds): the live staffing advice "
    "uses Erlang A, which counts callers who give up; unset: Erlang C (docs/metrics.md, Staffing)",
    "queues.wrapup_s": "timed after-call work after each call, in the router's seconds",
    "queues.overflow": "optional: send calls elsewhere (docs/routing.md, Overflow)",
    "queues.overflow.after_s": "overflow once the call has waited this long (the router's seconds)",
    "queues.overflow.when_no_agents": "overflow when no logged-in agent meets the requirements",
    "queues.overflow.to_queue": "the queue to move the call to (one of `queues`)",
    "agents.id": "the agent's id (API paths, metrics, decisions)",
    "agents.skills": "skill name to level",
    "agents.capacity": "calls at once",
    "agents.extension": "what `[acd-connect]` dials; default: the id",
    "agents.interface": "the device in `QueueMember*` events; default: `PJSIP/<extension>`",
    "ami.host": "Asterisk's manager interface address",
    "ami.port": "manager.conf `port`",
    "ami.username": "the manager.conf user (`[acd-router]`)",
    "ami.secret": "that user's secret; better `secret_file`",
    "ami.secret_file": "a file holding the secret (read at start-up)",
    "ami.connect_timeout_s": "real seconds to connect and log in (also: give up an attempt into a hung link)",
    "ami.action_timeout_s": "real seconds to wait for an action's answer",
    "ami.ping_interval_s": "real seconds between keep-alive Pings",
    "ami.reconnect_min_s": "first reconnect back-off (real seconds)",
    "ami.reconnect_max_s": "longest reconnect back-off (real seconds)",
    "kafka.bootstrap_servers": "comma-separated host:port list",
    "kafka.topic_prefix": "topics are `<prefix>.ami.events.v1` and so on",
    "kafka.partitions": "partitions of topics the processes create; bounds the routing workers",
    "kafka.replication_factor": "replication of topics the processes create",
    "kafka.consumer_group": "the routing workers' group (the dispatcher's is `<group>-dispatch`)",
    "kafka.security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "kafka.sasl_mechanism": "e.g. PLAIN, SCRAM-SHA-256",
    "kafka.sasl_username": "SASL user",
    "kafka.sasl_password": "SASL password; better `sasl_password_file`",
    "kafka.sasl_password_file": "a file holding the SASL password",
    "kafka.ssl_cafile": "CA bundle for SSL / SASL_SSL",
    "kafka.request_timeout_s": "real seconds per broker request; then the client drops the connection",
    "kafka.fetch_max_wait_ms": "how long the broker may hold a fetch that finds nothing (docs/performance.md)",
    "kafka.session_timeout_ms": "a dead routing worker's partitions move after this",
    "kafka.heartbeat_interval_ms": "consumer group heartbeat",
    "kafka.max_poll_interval_ms": "longest gap between polls before the group evicts a worker",
    "redis.url": "`redis://` or `rediss://` (TLS) URL with the database number",
    "redis.password": "better `password_file`",
    "redis.password_file": "a file holding the Redis password",
    "redis.socket_timeout_s": "real seconds a command may wait for its answer; then the link counts as hung",
    "http.host": "where /metrics, /health and /ready listen",
    "http.port": "their port (0: any free port)",
    "routing.ring_no_answer.auto_pause": "pause an agent who lets an offer ring out",
    "routing.ring_no_answer.reason": "the pause reason code it gets",
    "routing.candidate_limit": "how many candidates a strategy compares at most",
    "routing.connect_context": "the dialplan context offers are redirected to",
    "clock.time_scale": "simulated seconds per real second: 1 in production, more in scenarios",
    "clock.epoch": "start of scaled time (Unix seconds); processes of one run share it",
    "api.host": "where the API listens",
    "api.token": "full-access bearer token; better `token_file`",
    "api.token_file": "a file holding the full-access token (required: this or `token`)",
    "api.read_token": "read-only bearer token (wallboards); must differ from `token`",
    "api.read_token_file": "a file holding the read token",
    "api.reviewer_token": (
        "bearer token of the quality reviews (`/api/v1/qa/...`, and nothing else); must differ from "
        "the other two"
    ),
    "api.reviewer_token_file": "a file holding the reviewer token",
    "api.roster_queue": "older name of `ami.roster_queue`: if both are set they must agree",
    "api.pause_reasons": "comma-separated reason codes agents may pause with; empty: any code",
    "api.max_wrapup_extend_s": "longest single wrap-up extension (the router's seconds)",
}

HEADER = """\
# Configuration reference

<!-- Generated from router/settings.py by `{regenerate}`: do not edit by hand. -->

Every `acd` process reads one YAML file (`--config FILE`, see `config/acd.example.yaml`)
plus environment variables; a variable overrides the file. The variable of a key is
`ACD_` + the key's path in capitals with `__` between the parts: `ami.port` is
`ACD_AMI__PORT`, `routing.ring_no_answer.reason` is `ACD_ROUTING__RING_NO_ANSWER__REASON`.
A list or mapping in a variable is written as JSON (`ACD_QUEUES='[{{"name": "billing"}}]'`);
the items of `queues` and `agents` have no variables of their own.

Every process validates the whole file and every `ACD_*` variable at start-up, whatever
sections it uses: an unknown key, an `ACD_<SECTION>__...` variable with an unknown section or
a value out of range stops it with exit status 2 and a message naming the key, the value
and what was expected, and so does a `*_file` it cannot read (give each process only the
secret files it needs: docs/deployment.md). `acd check-config --config FILE` runs the same
checks without starting anything.

Times are real seconds unless a key says "the router's seconds" (simulated seconds:
docs/architecture.md, Time). Secrets (`secret`, `password`, `token`) are never logged;
give them as `*_file` keys or variables rather than in the file.
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One key of the reference."""

    key: str
    type: str
    default: str
    env: str
    meaning: str


def render() -> str:
    """The whole page."""
    parts = [HEADER.format(regenerate=REGENERATE)]
    for name, field in AcdSettings.model_fields.items():
        parts.append(_section(name, field))
    return "\n".join(parts)


def _section(name: str, field: FieldInfo) -> str:
    model = _model_of(field.annotation)
    title = f"## `{name}`\n"
    if model is None:
        return title + "\n" + _table(_rows(name, field, env=True))
    intro = _first_line(model.__doc__)
    if _is_list(field.annotation):
        env = _env_name(name)
        intro += f" A list; each item has the keys below (the whole list: `{env}`, as JSON)."
    return f"{title}\n{intro}\n\n{_table(_rows(name, field, env=not _is_list(field.annotation)))}"


def _rows(path: str, field: FieldInfo, *, env: bool) -> Iterator[Row]:
    """Rows for ``path``: the key itself, or the keys of the model it holds."""
    for key, inner in _leaves(path, field):
        yield _row(key, inner, env=env)


def _row(path: str, field: FieldInfo, *, env: bool) -> Row:
    limits = _limits(field)
    return Row(
        key=_key(path),
        type=_type_name(field.annotation) + (f" ({limits})" if limits else ""),
        default=_default(field),
        env=f"`{_env_name(path)}`" if env else "—",
        meaning=meaning(path, field) or "",
    )


def meaning(path: str, field: FieldInfo) -> str | None:
    """The field's description, else its note; None when it has neither."""
    return field.description or NOTES.get(path)


def _key(path: str) -> str:
    section, _, rest = path.partition(".")
    return f"`{rest or section}`"


def _table(rows: Iterator[Row]) -> str:
    lines = ["| key | type | default | environment variable | meaning |", "|---|---|---|---|---|"]
    for row in rows:
        cells = (row.key, row.type, row.default, row.env, row.meaning)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _env_name(path: str) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path.split("."))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _is_optional(annotation: Any) -> bool:
    return type(None) in _args(annotation)


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (tuple, list)


def _is_requirements(annotation: Any) -> bool:
    return annotation == Requirements or (_is_optional(annotation) and Requirements in _args(annotation))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model ``annotation`` holds, directly, optionally or as list items."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in _args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    """A reader's name for a type: str, int, list of ..., one of ..."""
    if _is_requirements(annotation):
        return "requirements"
    args = [arg for arg in _args(annotation) if arg is not type(None)]
    if _is_optional(annotation):
        return _type_name(args[0]) if len(args) == 1 else " or ".join(_type_name(a) for a in args)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (tuple, list):
        return "list of " + _type_name(args[0])
    if origin is dict:
        return f"mapping {_type_name(args[0])}: {_type_name(args[1])}"
    return _plain_type_name(annotation)


def _plain_type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", str(annotation))


LIMIT_SIGNS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _limits(field: FieldInfo) -> str:
    """Bounds and patterns the model enforces, e.g. ``≥ 1, ≤ 65535``."""
    found = []
    for item in field.metadata:
        for attribute, sign in LIMIT_SIGNS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{sign} {_number(value)}")
        if getattr(item, "pattern", None):
            found.append(f"pattern `{item.pattern}`")
        if getattr(item, "min_length", None):
            found.append(f"at least {item.min_length}")
    return ", ".join(found)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _shown(field.get_default(call_default_factory=True))
    if field.default is PydanticUndefined:
        return "required"
    return _shown(field.default)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "empty" if not value.get_secret_value() else "(set)"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, tuple | list | dict) and not value:
        return "`[]`" if not isinstance(value, dict) else "`{}`"
    if isinstance(value, str) and not value:
        return "empty"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"`{_number(value)}`"
    if isinstance(value, tuple | list):
        return f"`{json.dumps(_plain(value))}`"
    return f"`{json.dumps(value) if isinstance(value, bool) else value}`"


def _plain(value: Any) -> Any:
    """A default as the file would say it: models as mappings, tuples as lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def undescribed() -> list[str]:
    """Keys that have neither a description in their model nor a note here."""
    missing: list[str] = []
    for name, field in AcdSettings.model_fields.items():
        missing += [path for path, inner in _leaves(name, field) if not meaning(path, inner)]
    return missing


def stale_notes() -> list[str]:
    """Notes for keys the models no longer have."""
    keys = {path for name, field in AcdSettings.model_fields.items() for path, _ in _leaves(name, field)}
    return sorted(set(NOTES) - keys)


def _leaves(path: str, field: FieldInfo) -> Iterator[tuple[str, FieldInfo]]:
    """(path, field) of every key the reference has a row for: a section's keys, nested
    blocks' keys, an optional block (``overflow``) itself too; lists inside a section (``relax``)
    and requirements are one key each."""
    model = _model_of(field.annotation)
    nested = "." in path
    if model is None or _is_requirements(field.annotation) or (nested and _is_list(field.annotation)):
        yield path, field
        return
    if nested and _is_optional(field.annotation):
        yield path, field
    for name, inner in model.model_fields.items():
        yield from _leaves(f"{path}.{name}", inner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print (or --write, --check) docs/configuration.md")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    group.add_argument("--check", action="store_true", help="exit 1 when the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC_PATH.write_text(text)
    elif args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run {REGENERATE}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
