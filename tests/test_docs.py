"""The docs say what the code does, where a machine can check it: the configuration
reference is the one the settings models generate, every configuration or scenario example
validates, and docs/metrics.md names every metric and alert the code and rules define."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from load_tests.scenario import parse_scenario
from router import settings_reference
from router.errors import AcdError
from router.settings import AcdSettings
from workers.reports.report import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METRICS_DOC = ROOT / "docs" / "metrics.md"
CODE_DIRS = ("router", "workers", "load_tests")
METRIC_DEFINITION = re.compile(r'\b(?:Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*"(acd_[a-z0-9_]+)"')


def test_configuration_reference_is_what_the_settings_models_generate() -> None:
    page = settings_reference.DOC_PATH
    current = page.read_text() if page.exists() else ""
    assert current == settings_reference.render(), (
        f"{page.relative_to(ROOT)} differs from what router/settings.py generates: "
        f"regenerate it with `{settings_reference.REGENERATE}` and commit it"
    )


def test_every_settings_key_is_explained_and_no_note_is_stale() -> None:
    assert settings_reference.undescribed() == [], (
        "give these keys a Field(description=...) in their model or a line in "
        "router/settings_reference.py NOTES"
    )
    assert settings_reference.stale_notes() == [], "NOTES in router/settings_reference.py for keys that are gone"


def yaml_examples() -> Iterator[tuple[str, str]]:
    """(where, text) of every ```yaml block in README.md and docs/."""
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"^```yaml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{path.relative_to(ROOT)}:{line}", match.group(1)


@pytest.mark.parametrize(("where", "text"), list(yaml_examples()), ids=lambda value: str(value).split("\n")[0])
def test_every_configuration_and_scenario_example_validates(
    where: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("ACD_")]:
        monkeypatch.delenv(name)
    data: Any = yaml.safe_load(text)
    assert isinstance(data, dict), f"{where}: not a mapping"
    try:
        if "traffic" in data:
            parse_scenario(data)
        else:
            unknown = set(data) - set(AcdSettings.model_fields)
            assert not unknown, f"{where}: neither a scenario nor a configuration (keys {sorted(unknown)})"
            AcdSettings(**data)
    except (AcdError, ValidationError) as exc:
        pytest.fail(f"{where}: the example does not validate:\n{exc}")


def test_yaml_examples_are_found() -> None:
    assert len(list(yaml_examples())) >= 4


def metrics_in_code() -> set[str]:
    names: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(METRIC_DEFINITION.findall(path.read_text()))
    return names


def metrics_in_reference_tables() -> set[str]:
    """Metric names in the first column of docs/metrics.md's tables."""
    return set(re.findall(r"^\| `(acd_[a-z0-9_]+)` \|", METRICS_DOC.read_text(), flags=re.MULTILINE))


def test_metrics_md_lists_every_metric_the_code_defines_and_no_other() -> None:
    defined = metrics_in_code()
    assert len(defined) >= 40, "the metric definitions were not found: has the pattern changed?"
    documented = metrics_in_reference_tables()
    assert defined - documented == set(), "defined in code, missing from docs/metrics.md's tables"
    assert documented - defined == set(), "in docs/metrics.md's tables, but no code defines them"


def test_metrics_md_lists_every_alert() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "acd-alerts.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    documented = set(re.findall(r"^\| `(Acd[A-Za-z]+)` \|", METRICS_DOC.read_text(), flags=re.MULTILINE))
    assert alerts == documented


def test_reports_md_lists_the_report_columns_in_their_order() -> None:
    """Other people's scripts read the CSV by these names (docs/reports.md, Columns)."""
    section = (ROOT / "docs" / "reports.md").read_text().split("\n## Columns", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"((?:^\| `[a-z_]+` \|.*\n)+)", section, flags=re.MULTILINE)
    documented = [re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE) for table in tables]
    assert documented == [list(COLUMNS["queue"]), list(COLUMNS["agent"])]
    assert COLUMNS["site"] == tuple("site" if name == "queue" else name for name in COLUMNS["queue"])
