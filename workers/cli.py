"""`acd`: one command-line entry point for every process and tool.

    acd ingest   --config FILE     AMI -> Kafka
    acd route    --config FILE     routing worker (run several: they form a consumer group)
    acd dispatch --config FILE     routing commands -> AMI actions
    acd collect  --config FILE     site-wide state gauges for Prometheus
    acd staffing --calls-per-hour R --aht S [--sl-target 0.8] [--threshold 20] [--patience S] [--json]
    acd api      --config FILE     agent and supervisor API, live updates, wallboard
    acd record   --config FILE     call and agent-state records from Kafka into PostgreSQL
    acd db upgrade|current --config FILE   the recorder's schema (Alembic migrations)
    acd report   --config FILE --from ISO --to ISO [--interval 15m|30m|1h|1d] [--by queue|agent|site]
                 [--format table|csv|json] [--timezone TZ] [--queue NAME] [--agent ID]
                                   interval reports from the records in PostgreSQL (docs/reports.md)
    acd report   --abandoned --config FILE --from ISO --to ISO [--needs-callback] [--queue NAME]
                 [--format table|csv|json] [--timezone TZ] [--limit N]
                                   abandoned callers to call back, newest first (docs/reports.md)
    acd check-config --config FILE validate a configuration file (e.g. before a reload)

With the lab installed (`pip install 'acd-router[lab]'`, load_tests/cli.py), through the
entry points of workers/plugins.py:

    acd demo     [--scenario FILE] [--duration S] [--json] [--assignments OUT.jsonl]
    acd loadtest [--scenario FILE] [--duration S] [--json] [--report DIR]
    acd chaos, acd benchmark

Every process runs the same lifecycle (workers/lifecycle.py): SIGTERM drains and exits 0;
SIGHUP re-reads the configuration file (validated first: an invalid file is logged and
changes nothing) and `acd route`, `acd collect` and `acd api` apply its queues and agents.

Every process reads its configuration file plus ACD_<SECTION>__<FIELD> environment
variables. Errors print one clear message on stderr and exit with status 2 when only a
change of configuration or credentials can cure them, 75 (EX_TEMPFAIL) when trying again
later can (a broker, Redis or Asterisk still unreachable after the start-up timeout), so
that a supervisor restarts the second kind and not the first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from router.clock import Clock
from router.errors import AcdError, ConfigError
from router.settings import AcdSettings, load_settings
from workers.lifecycle import ProcessMain
from workers.plugins import add_plugin_commands, parse_args
from workers.runtime import (
    configure_logging,
    install_reload_signal,
    install_stop_signals,
    loop_factory,
    settle_garbage_collector,
)

logger = logging.getLogger("acd")

EXIT_CONFIG = 2  # fix the configuration or the credentials: restarting cannot help
EXIT_RETRY = 75  # EX_TEMPFAIL: something was not there yet; a restart may well succeed

def _process_mains() -> dict[str, ProcessMain]:
    from workers.api.process import run_api
    from workers.collector import run_collector
    from workers.dispatcher import run_dispatcher
    from workers.ingest import run_ingest
    from workers.records.recorder import run_recorder
    from workers.routing import run_routing

    def api(
        settings: AcdSettings,
        clock: Clock,
        stop: asyncio.Event,
        *,
        reload: asyncio.Event | None = None,
        config_path: Path | None = None,
    ) -> Coroutine[Any, Any, None]:
        return run_api(settings, settings.api, clock, stop, reload=reload, config_path=config_path)

    return {
        "ingest": run_ingest,
        "route": run_routing,
        "dispatch": run_dispatcher,
        "collect": run_collector,
        "record": run_recorder,
        "api": api,
    }


PROCESS_HELP = {
    "ingest": "read AMI events from Asterisk and publish them to Kafka",
    "route": "routing worker: apply events, offer calls to agents",
    "dispatch": "execute routing commands as AMI actions",
    "collect": "serve site-wide state gauges (calls waiting, agents by state)",
    "record": "keep call and agent-state records in PostgreSQL",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; ``command``: the one to be run, when known, so that a
    production process (route, ingest, ...) does not import the lab to build parsers it
    will never use (about 0.3 s of CPU at each start: the lab brings Alembic and more)."""
    parser = argparse.ArgumentParser(prog="acd", description="Event-driven ACD routing backend")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in PROCESS_HELP.items():
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="YAML configuration file (see config/acd.example.yaml)")
    # The lab's commands (demo, loadtest, benchmark, chaos), if installed: workers/plugins.py.
    if command not in PROCESS_HELP:
        add_plugin_commands(commands)
    from workers.staffing import add_staffing_arguments

    add_staffing_arguments(
        commands.add_parser(
            "staffing", help="Erlang C (or A, with --patience): the fewest agents that meet a service-level target"
        )
    )
    api = commands.add_parser("api", help="agent and supervisor API, live updates and wallboard")
    api.add_argument("--config", type=Path, help="YAML configuration file (see config/acd.example.yaml)")
    add_db_arguments(commands.add_parser("db", help="the recorder's PostgreSQL schema: upgrade, current"))
    from workers.reports.cli import add_report_arguments

    add_report_arguments(
        commands.add_parser("report", help="interval reports (service level, ASA, AHT, agents) from PostgreSQL")
    )
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", type=Path, required=True, help="YAML configuration file to check")
    return parser


def add_db_arguments(parser: argparse.ArgumentParser) -> None:
    """`acd db upgrade|current` (workers/records/migrate.py, imported only when run: Alembic is heavy)."""
    actions = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("upgrade", "apply the recorder's schema migrations (idempotent)"),
        ("current", "print the schema revision of the database; exit 1 when an upgrade is due"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="YAML configuration file (its postgres section)")


def command_named(argv: Sequence[str]) -> str | None:
    """The command in ``acd [--log-level LEVEL] [--json-logs] COMMAND ...``, if any."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(build_parser(command_named(argv)), argv)
    configure_logging(args.log_level, json_logs=args.json_logs)
    try:
        if (run_plugin := getattr(args, "run_plugin", None)) is not None:
            return int(run_plugin(args))
        if args.command == "staffing":
            from workers.staffing import run_staffing_command

            return run_staffing_command(args)
        if args.command == "db":
            from workers.records.migrate import run_db_command

            return run_db_command(args)
        if args.command == "report":
            from workers.reports.cli import run_report_command

            return run_report_command(args)
        if args.command == "check-config":
            return _check_config(args.config)
        if args.command == "api":
            return _run_api(args.config)
        return _run_process(args.command, args.config)
    except AcdError as exc:
        print(f"acd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_RETRY if exc.retriable else EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _run_process(command: str, config: Path | None) -> int:
    settings = load_settings(config)
    if command == "api":
        settings.api.require_token()  # before any connection is tried
    clock = settings.clock.build()
    process_main = _process_mains()[command]

    async def runner() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        install_stop_signals(stop)
        install_reload_signal(reload)
        await process_main(settings, clock, stop, reload=reload, config_path=config)

    settle_garbage_collector()
    try:
        asyncio.run(runner(), loop_factory=loop_factory(settings.event_loop))
    except BaseExceptionGroup as group:
        raise first_acd_error(group) or group from None
    return 0


def _run_api(config: Path | None) -> int:
    return _run_process("api", config)


def _check_config(config: Path) -> int:
    """Validate like a process would at start-up (and at a reload); print what it holds."""
    settings = load_settings(config)
    if not settings.queues:
        raise ConfigError(f"{config}: no queues configured; add at least one queue under 'queues:'")
    queues = ", ".join(queue.name for queue in settings.queues)
    print(
        f"{config}: OK (site {settings.site!r}; {len(settings.queues)} queues: {queues}; "
        f"{len(settings.agents)} agents)"
    )
    return 0


def first_acd_error(group: BaseExceptionGroup[BaseException]) -> AcdError | None:
    """The first AcdError inside a (nested) TaskGroup failure, to report it plainly."""
    for exc in group.exceptions:
        if isinstance(exc, AcdError):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (found := first_acd_error(exc)):
            return found
    return None


if __name__ == "__main__":
    sys.exit(main())
