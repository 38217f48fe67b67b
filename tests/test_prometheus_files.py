"""The shipped Prometheus and Grafana files, statically: promtool accepts the rules and
the scrape config; the dashboards import into any Grafana (a data-source variable, no
fixed data source) and every alert says what it is about. The reports dashboard queries
PostgreSQL, not Prometheus (tests/test_grafana_reports.py runs its SQL)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
# Data-source type -> what each panel target holds.
QUERY_FIELD = {"prometheus": "expr", "grafana-postgresql-datasource": "rawSql"}
ALERTS = {
    "AcdServiceLevelBelowTarget",
    "AcdOldestWaitHigh",
    "AcdCallsWaitingNoAgents",
    "AcdRoutingLatencyHigh",
    "AcdAmiDisconnected",
    "AcdApiAmiDisconnected",
    "AcdConsumerLagGrowing",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: scripts/bootstrap.sh installs Debian's prometheus package")
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def test_rule_files_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", *sorted(str(p) for p in PROMETHEUS_DIR.glob("*.rules.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_passes_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_issue_and_say_what_they_are_about() -> None:
    rules = [
        rule
        for path in PROMETHEUS_DIR.glob("*.rules.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert {rule["alert"] for rule in rules} >= ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert "for" in rule, rule["alert"]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [inner for panel in dashboard["panels"] for inner in [panel, *panel.get("panels", [])]]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_import_into_any_grafana(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    kind = variables["datasource"]["query"]
    assert kind in QUERY_FIELD
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    queried = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    assert queried
    for panel in queried:
        assert panel["datasource"] == {"type": kind, "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            query = target[QUERY_FIELD[kind]]
            assert query.strip() and target["datasource"] == panel["datasource"], panel["title"]


def test_the_wallboard_repeats_a_row_per_queue() -> None:
    wallboard = json.loads((ROOT / "deploy" / "grafana" / "acd-wallboard.json").read_text())
    rows = [panel for panel in wallboard["panels"] if panel["type"] == "row"]
    assert any(row.get("repeat") == "queue" for row in rows)
    titles = {panel["title"] for panel in panels(wallboard)}
    assert {
        "Service level / target",
        "ASA",
        "Abandoned",
        "Waiting now",
        "Oldest wait",
        "Agents by state",
    } <= titles
