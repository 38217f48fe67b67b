"""The shipped dashboards, alert rules and documented PromQL, against a real Prometheus
scraping a real demo run; and the service level and ASA Prometheus computes agree with the
demo's own summary.

Debian's `prometheus` scrapes every process of an in-process demo (1 s interval, the
shipped rule files loaded). Every panel target and every rule expression is evaluated
through the HTTP API. An extra queue that no agent can serve makes some alerts fire.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from load_tests.demo import Demo
from load_tests.embedded import free_port
from load_tests.scenario import Scenario, default_scenario_path, parse_scenario
from router.store import RedisStateStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
METRICS_DOC = ROOT / "docs" / "metrics.md"

UNSTAFFED = "unstaffed"
# Grafana's variables, as a panel would see them for one queue on the wallboard.
VARIABLES = {
    "$__rate_interval": "10s",
    "$__interval": "2s",
    "$__range": "1h",
    "${queue}": "billing",
    "$queue": "billing",
    "$job": "acd",
}
# Alerts the unservable queue must set off (their expressions, not their `for:`).
MUST_FIRE = {"AcdServiceLevelBelowTarget", "AcdOldestWaitHigh", "AcdCallsWaitingNoAgents"}

FORMULAS = (
    "answered_within_over_answered",
    "answered_within_over_answered_and_abandoned",
    "answered_within_over_answered_and_abandoned_after_threshold",
)
THRESHOLD = 'label_replace(acd_queue_service_level_threshold_seconds, "le", "$1", "bucket", "(.*)")'
INFO = "acd_queue_service_level_formula_info"
# Service level and ASA since the processes started, from the raw counters (exact).
WITHIN = f"sum by (queue) (acd_call_answer_wait_seconds_bucket and on (queue, le) {THRESHOLD})"
SHORT = f"sum by (queue) (acd_call_abandon_wait_seconds_bucket and on (queue, le) {THRESHOLD})"
ANSWERED = "sum by (queue) (acd_calls_answered_total)"
ABANDONED = "sum by (queue) (acd_calls_abandoned_total)"
DENOMINATOR = (
    f'({ANSWERED} and on (queue) {INFO}{{formula="{FORMULAS[0]}"}})'
    f' or ({ANSWERED} + {ABANDONED} and on (queue) {INFO}{{formula="{FORMULAS[1]}"}})'
    f' or ({ANSWERED} + {ABANDONED} - {SHORT} and on (queue) {INFO}{{formula="{FORMULAS[2]}"}})'
)
SL_BY_QUEUE = f"{WITHIN} / ({DENOMINATOR})"
SL_SITE = f"sum({WITHIN}) / sum({DENOMINATOR})"
ASA_BY_QUEUE = (
    "sum by (queue) (acd_call_answer_wait_seconds_sum) / sum by (queue) (acd_call_answer_wait_seconds_count)"
)
ASA_SITE = "sum(acd_call_answer_wait_seconds_sum) / sum(acd_call_answer_wait_seconds_count)"


def observed_scenario() -> Scenario:
    """The demo, faster, one formula per queue, plus a queue that no agent can serve."""
    data = yaml.safe_load(default_scenario_path().read_text())
    data["time_scale"] = 30.0
    formulas = {"billing": FORMULAS[2], "support": FORMULAS[0], "spanish": FORMULAS[1]}
    for queue in data["queues"]:
        queue["service_level"]["formula"] = formulas[queue["name"]]
    data["queues"].append(
        {"name": UNSTAFFED, "requirements": [{"skill": "nobody", "min_level": 1}], "service_level": {}}
    )
    data["traffic"].append(
        {
            "queue": UNSTAFFED,
            "calls_per_hour": 540,
            "handle_time_s": {"dist": "fixed", "mean": 60},
            "patience_s": {"dist": "uniform", "min": 180, "max": 210},
        }
    )
    return parse_scenario(data)


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert not re.search(r"\$[A-Za-z_{]", expr), f"unsubstituted Grafana variable in {expr!r}"
    return expr


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of every panel, rows included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], target) for target in inner.get("targets", [])]
    return found


def prometheus_dashboards() -> list[tuple[Path, dict[str, Any]]]:
    """The dashboards on a Prometheus data source (the reports dashboard queries PostgreSQL:
    tests/test_grafana_reports.py)."""
    found = []
    for path in sorted(GRAFANA_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        kinds = {v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
        if kinds == {"prometheus"}:
            found.append((path, dashboard))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    """(name, expr) of every recording and alerting rule shipped."""
    found = []
    for path in sorted(PROMETHEUS_DIR.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(rule.get("alert") or rule["record"], rule["expr"]) for rule in group["rules"]]
    return found


def documented_queries() -> list[str]:
    return re.findall(r"```promql\n(.*?)```", METRICS_DOC.read_text(), flags=re.DOTALL)


class PrometheusError(AssertionError):
    pass


class Prometheus:
    """Debian's prometheus on a free port, scraping the demo's processes."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None

    def write_config(self, ports: dict[str, int]) -> Path:
        """The shipped scrape config, pointed at this run's ports and scraping every second."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
        for static in config["scrape_configs"][0]["static_configs"]:
            component = static["labels"]["component"]
            static["targets"] = [
                f"127.0.0.1:{port}" for name, port in ports.items() if name.split("-")[0] == component
            ]
        path = self.work / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    async def start(self, ports: dict[str, int]) -> None:
        config = self.write_config(ports)
        log = (self.work / "prometheus.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            prometheus_binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self.wait_for(self._targets_up, 30, "every target up")

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def _targets_up(self) -> bool:
        try:
            data = await self.api("targets")
        except (aiohttp.ClientError, OSError, PrometheusError):
            return False
        targets = data["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    async def wait_for(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not await predicate():
            if self.process is not None and self.process.returncode is not None:
                raise PrometheusError(f"prometheus exited: {(self.work / 'prometheus.log').read_text()}")
            if time.monotonic() > deadline:
                raise PrometheusError(f"timed out waiting for {what}")
            await asyncio.sleep(0.25)

    async def api(self, path: str, **params: str) -> Any:
        assert self.session is not None
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = await self.api("query", **params)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    async def by_queue(self, expr: str) -> dict[str, float]:
        return {row["metric"].get("queue", ""): float(row["value"][1]) for row in await self.query(expr)}

    async def scalar(self, expr: str) -> float:
        rows = await self.query(expr)
        assert len(rows) == 1, (expr, rows)
        return float(rows[0]["value"][1])


def prometheus_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: scripts/bootstrap.sh installs Debian's prometheus package")
    return found


class Observer:
    """Watches the demo: starts Prometheus once the processes are up, checks everything at the end."""

    def __init__(self, work: Path) -> None:
        self.prometheus = Prometheus(work)
        self.ports: dict[str, int] = {}
        self.checked: dict[str, Any] = {}

    async def started(self, http_ports: dict[str, int]) -> None:
        self.ports = http_ports
        await self.prometheus.start(http_ports)

    async def finishing(self, store: RedisStateStore) -> None:
        during_traffic = time.time() - 1.0
        await self.prometheus.wait_for(self._rules_evaluated, 10, "rule groups evaluated")
        self.checked["panels"] = await self._evaluate_panels(during_traffic)
        self.checked["rules"] = await self._evaluate_rules(during_traffic)
        self.checked["documented"] = await self._evaluate_documented(during_traffic)
        self.checked["rule_health"] = await self.prometheus.api("rules")
        self.checked["alerts"] = await self.prometheus.api("alerts")
        self.checked["metrics_text"] = await self._scrape_text()
        await self._settle(store)
        self.checked["sl_by_queue"] = await self.prometheus.by_queue(SL_BY_QUEUE)
        self.checked["asa_by_queue"] = await self.prometheus.by_queue(ASA_BY_QUEUE)
        self.checked["sl_site"] = await self.prometheus.scalar(SL_SITE)
        self.checked["asa_site"] = await self.prometheus.scalar(ASA_SITE)

    async def _rules_evaluated(self) -> bool:
        groups = (await self.prometheus.api("rules"))["groups"]
        return all(rule.get("lastEvaluation", "").startswith("20") for g in groups for rule in g["rules"])

    async def _evaluate_panels(self, at: float) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """(legend, result) per panel target."""
        results = {}
        for path, dashboard in prometheus_dashboards():
            for title, target in panel_targets(dashboard):
                key = f"{path.name}: {title} [{target['refId']}]"
                result = await self.prometheus.query(substitute(target["expr"]), at)
                results[key] = (target.get("legendFormat", ""), result)
        return results

    async def _evaluate_rules(self, at: float) -> dict[str, list[dict[str, Any]]]:
        return {name: await self.prometheus.query(expr, at) for name, expr in rule_expressions()}

    async def _evaluate_documented(self, at: float) -> dict[str, list[dict[str, Any]]]:
        return {expr: await self.prometheus.query(substitute(expr), at) for expr in documented_queries()}

    async def _scrape_text(self) -> dict[str, str]:
        texts = {}
        async with aiohttp.ClientSession() as session:
            for name, port in self.ports.items():
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    texts[name] = await response.text()
        return texts

    async def _settle(self, store: RedisStateStore) -> None:
        """Wait until no call waits (the counters stop moving) and Prometheus has scraped that."""
        deadline = time.monotonic() + 20
        while sum((await store.state_summary()).waiting.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        queues = ("billing", "support", "spanish", UNSTAFFED)

        async def scraped() -> bool:
            stats = {queue: await store.queue_stats(queue) for queue in queues}
            answered = await self.prometheus.by_queue(ANSWERED)
            abandoned = await self.prometheus.by_queue(ABANDONED)
            return all(
                answered.get(q) == s.get("answered", 0) and abandoned.get(q) == s.get("abandoned", 0)
                for q, s in stats.items()
            )

        await self.prometheus.wait_for(scraped, 10, "Prometheus to scrape the final counts")


@pytest.fixture(scope="module")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """One demo run watched by Prometheus: (the demo's summary, what the observer found)."""
    args = argparse.Namespace(
        duration=15.0, json=True, assignments=None, workers=2, metrics_port=0, keep=False
    )
    demo = Demo(observed_scenario(), args)
    observer = Observer(tmp_path_factory.mktemp("prometheus"))
    demo.observer = observer
    try:
        summary = await demo.run(asyncio.Event())
    finally:
        await observer.prometheus.stop()
    return summary, observer.checked


async def test_every_panel_query_returns_data_of_its_shape(observed: Any) -> None:
    _, checked = observed
    panels = checked["panels"]
    assert len(panels) > 20
    for key, (legend, result) in panels.items():
        assert result, f"panel query returned no data: {key}"
        labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)
        for row in result:
            assert all(label in row["metric"] for label in labels), (key, labels, row["metric"])
            assert row["value"][1] != "NaN", (key, row)


async def test_every_rule_evaluates_and_an_unservable_queue_sets_off_alerts(observed: Any) -> None:
    _, checked = observed
    rules = checked["rules"]
    for name, result in rules.items():
        if name.startswith(("queue:", "acd:")):
            assert result, f"recording rule {name} returned no data"
    for name in MUST_FIRE:
        assert UNSTAFFED in {row["metric"].get("queue") for row in rules[name]}, (name, rules[name])
    for group in checked["rule_health"]["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # Prometheus's own rule engine holds them pending (or firing) too.
    active = {alert["labels"]["alertname"] for alert in checked["alerts"]["alerts"]}
    assert active >= MUST_FIRE, active


async def test_documented_promql_returns_data(observed: Any) -> None:
    _, checked = observed
    assert len(checked["documented"]) >= 8
    for expr, result in checked["documented"].items():
        assert result, f"docs/metrics.md query returned no data: {expr}"


async def test_every_process_exposition_passes_promtool_check_metrics(observed: Any) -> None:
    _, checked = observed
    assert set(checked["metrics_text"]) == {"ingest", "dispatch", "collect", "route-1", "route-2"}
    for name, text in checked["metrics_text"].items():
        check = await asyncio.create_subprocess_exec(
            prometheus_binary("promtool"),
            "check",
            "metrics",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await check.communicate(text.encode())
        assert check.returncode == 0, (name, output.decode())


async def test_service_level_and_asa_from_prometheus_agree_with_the_demo_summary(observed: Any) -> None:
    summary, checked = observed
    assert summary["waiting_at_end"] == 0, "calls still waiting: the counters may have moved"
    print(
        f"\nPromQL: SL {checked['sl_site']:.4f} ASA {checked['asa_site']:.3f}s | "
        f"demo JSON: SL {summary['service_level']} ASA {summary['asa_seconds']}s"
    )
    assert checked["sl_site"] == pytest.approx(summary["service_level"], abs=6e-5)
    assert checked["asa_site"] == pytest.approx(summary["asa_seconds"], abs=6e-4)
    for name, figures in summary["queues"].items():
        print(
            f"  {name}: PromQL SL {checked['sl_by_queue'].get(name)} ASA {checked['asa_by_queue'].get(name)} | "
            f"JSON SL {figures['service_level']} ASA {figures['asa_seconds']} ({figures['service_level_formula']})"
        )
        if figures["service_level"] is not None:
            assert checked["sl_by_queue"][name] == pytest.approx(figures["service_level"], abs=6e-5), name
        if figures["asa_seconds"] is not None:
            assert checked["asa_by_queue"][name] == pytest.approx(figures["asa_seconds"], abs=6e-4), name
