"""The lab's commands plug into `acd` through entry points, and say so when they cannot.

tests/test_install.py proves the same on a real install without the lab; these check the
protocol in process, with the entry points swapped for ones that cannot load.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import load_tests.cli
from workers import cli, plugins

LAB = ("benchmark", "chaos", "demo", "loadtest")


def subcommands() -> set[str]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


def test_the_installed_lab_adds_its_commands() -> None:
    assert set(LAB) <= subcommands()
    assert {"ingest", "route", "dispatch", "collect", "api", "check-config", "staffing"} <= subcommands()


def test_a_lab_command_keeps_its_flags() -> None:
    args = cli.build_parser().parse_args(["demo", "--duration", "5", "--json", "--workers", "3"])
    assert (args.duration, args.json, args.workers) == (5.0, True, 3)
    assert args.run_plugin is load_tests.cli.run_demo_command


@pytest.fixture
def lab_code_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint(name, f"load_tests_not_installed.cli:{name}", plugins.GROUP) for name in LAB]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points if group == plugins.GROUP else [])


def test_without_the_lab_help_still_works_and_lists_it(
    lab_code_missing: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "demo (the lab is not installed)" in out


@pytest.mark.parametrize("argv", [["demo"], ["demo", "--duration", "5", "--json"], ["chaos", "--short"]])
def test_without_the_lab_code_a_lab_command_says_how_to_install_it(
    lab_code_missing: None, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"acd {argv[0]}: error: the lab is not installed: pip install 'acd-router[lab]'" in err
    assert "No module named 'load_tests_not_installed'" in err
    assert "Traceback" not in err


def test_without_the_lab_dependencies_a_lab_command_names_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(load_tests.cli, "LAB_DEPENDENCIES", ("tqdm", "acd_no_such_module"))
    assert cli.main(["loadtest", "--duration", "5"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "the lab is not installed: pip install 'acd-router[lab]' (missing acd_no_such_module)" in err


def test_production_commands_still_reject_unknown_flags(lab_code_missing: None) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check-config", "--config", "x.yaml", "--bogus"])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["route", "--config", "x.yaml"], "route"),
        (["--log-level", "DEBUG", "--json-logs", "ingest"], "ingest"),
        (["--log-level", "demo", "chaos", "--short"], "chaos"),  # a level named like a command
        (["--help"], None),
    ],
)
def test_the_command_is_found_before_the_parsers_are_built(argv: list[str], command: str | None) -> None:
    assert cli.command_named(argv) == command


def test_a_production_process_does_not_import_the_lab() -> None:
    """`acd route` (and every process) builds its parser without the lab's commands: their
    modules bring Alembic, the simulator and more, about 0.3 s of CPU at each start."""
    import subprocess
    import sys

    probe = (
        "import sys; from workers.cli import build_parser; "
        "build_parser('route').parse_args(['route', '--config', 'x.yaml']); "
        "print(sorted(m for m in sys.modules if m.startswith('load_tests') or m == 'alembic'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    parser = cli.build_parser("demo")  # a lab command still gets the lab
    assert parser.parse_args(["demo", "--json"]).run_plugin is load_tests.cli.run_demo_command
