"""Commands that another install plugs into `acd`: the lab's demo, loadtest, chaos, benchmark.

A distribution adds a command with an entry point in the group ``acd.commands``, named
after the command (pyproject.toml: ``[project.entry-points."acd.commands"]``). The entry
point names a function ``register(commands)`` that adds the subparser of that name to
``commands`` and returns the function that runs the command: ``run(args) -> exit status``.

`pip install .` without the lab extra (and the production image, which has no lab code at
all) still carries the lab's entry points in its metadata. A command whose code or
dependencies cannot be imported therefore still shows in `acd --help`, and running it says
how to install it (exit 2) instead of printing a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

from router.errors import AcdError

GROUP = "acd.commands"
OUR_DISTRIBUTION = "acd-router"
LAB_MISSING = "the lab is not installed: pip install 'acd-router[lab]'"

type Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
type CommandRunner = Callable[[argparse.Namespace], int]
type Register = Callable[[Subcommands], CommandRunner]


class CommandUnavailableError(AcdError):
    """A plugged-in command cannot run: its code or its dependencies are not installed."""


def add_plugin_commands(commands: Subcommands) -> None:
    """Add the subcommand of every ``acd.commands`` entry point whose name is still free."""
    for entry in entry_points(group=GROUP):
        if entry.name in commands.choices:
            continue
        run = _register(entry, commands)
        commands.choices[entry.name].set_defaults(run_plugin=run)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that an unavailable command takes any arguments.

    Its own flags are unknown without its code; it only has to say how to install it.
    """
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "command_unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def _register(entry: EntryPoint, commands: Subcommands) -> CommandRunner:
    try:
        register: Register = entry.load()
        run = register(commands)
    except ImportError as exc:
        return _unavailable(entry, commands, exc)
    if entry.name not in commands.choices:
        raise RuntimeError(f"entry point {entry.value} added no subcommand named {entry.name!r}")
    return run


def _unavailable(entry: EntryPoint, commands: Subcommands, exc: ImportError) -> CommandRunner:
    hint = _install_hint(entry)
    if entry.name not in commands.choices:
        commands.add_parser(entry.name, help=f"({hint.partition(':')[0]})", description=hint)
    commands.choices[entry.name].set_defaults(command_unavailable=True)
    message = f"{hint} ({exc})"

    def run(args: argparse.Namespace) -> int:
        raise CommandUnavailableError(message)

    return run


def _install_hint(entry: EntryPoint) -> str:
    name = entry.dist.name if entry.dist is not None else OUR_DISTRIBUTION
    if name.replace("_", "-").lower() == OUR_DISTRIBUTION:
        return LAB_MISSING
    return f"the command's package is not fully installed: pip install {name!r}"
