"""The deployment files (deploy/systemd, deploy/compose.yaml, deploy/k8s, deploy/Dockerfile)
against the real CLI and settings. No container engine or cluster runs here, so this is
what is checked instead (docs/deployment.md says what is and is not tested):

- every file parses (YAML; systemd units with `systemd-analyze verify` where available);
- every `acd` command line in them is accepted by the real argument parser;
- every ACD_* variable names a real settings field, and ACD_API__* appear only where the
  `acd api` process runs (the other processes refuse unknown sections);
- secrets are passed as files that the same unit or pod actually provides;
- health checks, probes and Prometheus scrape targets use the port the process serves on;
- the configuration files they ship validate; their Prometheus configurations pass
  `promtool check config` together with the rules of deploy/prometheus.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from router.settings import AcdSettings, load_settings
from workers.api.settings import ApiSettings
from workers.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ACD_COMMANDS = {"ingest", "route", "dispatch", "collect", "record", "api"}
# Compose and k8s have no PostgreSQL yet, so no recorder (docs/deployment.md says so).
CONTAINER_COMMANDS = ACD_COMMANDS - {"record"}
METRICS_PORT = "9400"


# -- shared checks -----------------------------------------------------------------------


def _section_model(section: str) -> type[BaseModel] | None:
    if section == "api":
        return ApiSettings
    field = AcdSettings.model_fields.get(section)
    annotation = field.annotation if field else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def check_env_name(name: str) -> None:
    """ACD_<SECTION>__<FIELD>[__<FIELD>...] must name a real (nested) settings field."""
    assert name.startswith("ACD_") and "__" in name, f"{name}: not ACD_<SECTION>__<FIELD>"
    section, *path = name[4:].lower().split("__")
    model = _section_model(section)
    assert model is not None, f"{name}: unknown section {section!r}"
    for part in path:
        assert part in model.model_fields, f"{name}: {model.__name__} has no field {part!r}"
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation


def check_acd_args(args: list[str]) -> str:
    """The real parser accepts ``args``; returns the subcommand."""
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"acd does not accept: {shlex.join(args)}")
    assert parsed.command in ACD_COMMANDS | {"check-config"}, args
    return str(parsed.command)


def check_process_env(command: str, env: dict[str, str], where: str) -> None:
    for name in env:
        if name.startswith("ACD_"):
            check_env_name(name)
    api_vars = [name for name in env if name.startswith("ACD_API__")]
    assert command == "api" or not api_vars, (
        f"{where}: {api_vars} set for `acd {command}`, which refuses them"
    )
    if command == "api":
        assert "ACD_API__TOKEN_FILE" in env or "ACD_API__TOKEN" in env, f"{where}: the API needs a token"
        assert "ACD_API__TOKEN" not in env, f"{where}: pass the token as a file, not inline"
    assert env.get("ACD_HTTP__HOST") == "0.0.0.0", f"{where}: /metrics must be reachable from Prometheus"
    if command in {"ingest", "dispatch", "api"}:
        assert "ACD_AMI__SECRET_FILE" in env, (
            f"{where}: `acd {command}` talks to Asterisk and needs the secret"
        )
    assert "ACD_AMI__SECRET" not in env, f"{where}: the AMI secret must come from a file"


def promtool_check(config: dict[str, Any], tmp_path: Path) -> None:
    """`promtool check config` on ``config`` with deploy/prometheus's rule files beside it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    rules = []
    for rule_file in config.get("rule_files", []):
        source = DEPLOY / "prometheus" / Path(rule_file).name
        assert source.exists(), f"rule file {rule_file} is not in deploy/prometheus"
        shutil.copy(source, tmp_path / source.name)
        rules.append(source.name)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config | {"rule_files": rules}))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def validate_config_file(
    text: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration file validates as the processes would read it (file paths aside)."""
    for name in [n for n in os.environ if n.startswith("ACD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ACD_") and not name.startswith("ACD_API__") and not name.endswith("_FILE"):
            monkeypatch.setenv(name, value)
    path = tmp_path / "acd.yaml"
    path.write_text(text)
    settings = load_settings(path)
    assert settings.queues and settings.agents


# -- systemd -----------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


SERVICE_UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_there_is_a_systemd_unit_for_each_process() -> None:
    names = {path.name for path in SERVICE_UNITS}
    assert names == {f"acd-{c}.service" for c in ("dispatch", "collect", "record", "api")} | {
        "acd-route@.service",
        "acd-ingest@.service",  # two instances: the ingest pair
    }
    assert (DEPLOY / "systemd" / "acd.target").exists()


@pytest.mark.parametrize("path", SERVICE_UNITS, ids=lambda p: p.name)
def test_systemd_unit_commands_and_environment(path: Path) -> None:
    unit = read_unit(path)
    (start,) = values(unit, "Service", "ExecStart")
    binary, *args = shlex.split(start)
    assert binary == "/opt/acd/venv/bin/acd"
    command = check_acd_args(args)
    assert path.name.startswith(f"acd-{command}")
    for reload in values(unit, "Service", "ExecReload"):
        argv = shlex.split(reload)
        if argv[0] == binary:
            assert check_acd_args(argv[1:]) == "check-config"
        else:
            assert argv == ["/bin/kill", "-HUP", "$MAINPID"]
    env = dict(value.split("=", 1) for value in values(unit, "Service", "Environment"))
    check_process_env(command, env, path.name)
    credentials = {value.split(":", 1)[0] for value in values(unit, "Service", "LoadCredential")}
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert value.startswith("%d/") and value[3:] in credentials, f"{name}={value}: no such credential"
    assert values(unit, "Service", "KillSignal") == ["SIGTERM"]
    assert values(unit, "Service", "RestartPreventExitStatus") == ["2"]  # config errors exit 2
    assert values(unit, "Install", "WantedBy") == ["acd.target"]


def test_systemd_units_use_distinct_metrics_ports() -> None:
    ports: list[str] = []
    for path in SERVICE_UNITS:
        env = dict(value.split("=", 1) for value in values(read_unit(path), "Service", "Environment"))
        port = env["ACD_HTTP__PORT"]
        ports += [port.replace("%i", str(i)) for i in range(10)] if "%i" in port else [port]
        assert all(p.isdigit() and 1024 < int(p) < 65536 for p in ports), ports
    assert len(ports) == len(set(ports))


def test_systemd_env_example_holds_no_secrets_and_no_api_variables() -> None:
    for line in (DEPLOY / "systemd" / "acd.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            check_env_name(name)
            assert not name.startswith("ACD_API__") and "SECRET" not in name and "PASSWORD" not in name


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    acd = shutil.which("acd", path=str(ROOT / ".venv" / "bin")) or shutil.which("acd")
    assert acd, "the acd entry point is not installed"
    units = []
    for path in [*SERVICE_UNITS, DEPLOY / "systemd" / "acd.target"]:
        name = path.name.replace("@.service", "@1.service")  # an instance of the template
        (tmp_path / name).write_text(path.read_text().replace("/opt/acd/venv/bin/acd", acd))
        units.append(str(tmp_path / name))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, check=False, timeout=120
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# -- docker compose ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def acd_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if str(service.get("image", "")).startswith("acd-router"):
            yield name, service


def test_compose_runs_every_process_with_real_commands_and_variables(compose: dict[str, Any]) -> None:
    commands = {}
    for name, service in acd_services(compose):
        command = check_acd_args(service["command"])
        commands[name] = command
        env = {k: str(v) for k, v in service["environment"].items()}
        check_process_env(command, env, f"compose service {name}")
        secrets = set(service.get("secrets", []))
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/") and value.split("/")[-1] in secrets, (name, key)
        assert f"127.0.0.1:{env['ACD_HTTP__PORT']}/ready" in " ".join(service["healthcheck"]["test"])
        assert service["stop_signal"] == "SIGTERM"
    assert set(commands.values()) == CONTAINER_COMMANDS
    assert compose["services"]["route"]["deploy"]["replicas"] > 1
    assert {"kafka", "redis", "prometheus", "grafana"} <= set(compose["services"])


def test_compose_mounts_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and "$" not in source:
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    assert (ROOT / compose["services"]["ingest"]["build"]["context"].replace("..", ".")).exists()
    assert (DEPLOY / "Dockerfile").exists()


def test_compose_prometheus_scrapes_every_process(compose: dict[str, Any], tmp_path: Path) -> None:
    config = yaml.safe_load(compose["configs"]["prometheus_config"]["content"])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "acd"
    scraped = {(name, entry["port"]) for entry in job["dns_sd_configs"] for name in entry["names"]}
    assert scraped == {(name, int(METRICS_PORT)) for name, _ in acd_services(compose)}
    promtool_check(config, tmp_path)


def test_the_example_configuration_validates_with_the_compose_environment(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in compose["services"]["route"]["environment"].items()}
    env["ACD_AMI__HOST"] = "10.0.0.5"  # ${ASTERISK_HOST:?...} in the file
    validate_config_file((ROOT / "config" / "acd.example.yaml").read_text(), env, tmp_path, monkeypatch)


# -- Kubernetes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        path = DEPLOY / "k8s" / resource
        assert path.exists(), resource
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (DEPLOY / "k8s" / file).exists(), file
    yaml.safe_load((DEPLOY / "k8s" / "secrets.example.yaml").read_text())
    return documents


def workloads(k8s: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (doc for doc in k8s if doc["kind"] in {"Deployment", "StatefulSet"})


def test_k8s_workloads_select_their_own_pods_and_services_find_them(k8s: list[dict[str, Any]]) -> None:
    templates = []
    for doc in workloads(k8s):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
        templates.append(labels)
    for service in (doc for doc in k8s if doc["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        assert any(selector <= labels.items() for labels in templates), service["metadata"]["name"]


def test_k8s_runs_every_process_with_real_commands_and_variables(k8s: list[dict[str, Any]]) -> None:
    commands = {}
    for doc in workloads(k8s):
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            if container["image"] != "acd-router":
                continue
            command = check_acd_args(container["args"])
            commands[doc["metadata"]["name"]] = command
            env = {item["name"]: str(item["value"]) for item in container["env"]}
            check_process_env(command, env, doc["metadata"]["name"])
            _check_secret_files(env, container, spec)
            ports = {port["name"]: str(port["containerPort"]) for port in container["ports"]}
            assert ports["metrics"] == env["ACD_HTTP__PORT"] == METRICS_PORT
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] == "metrics"
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            if command == "api":
                assert ports["api"] == env["ACD_API__PORT"]
    assert set(commands.values()) == CONTAINER_COMMANDS
    by_name = {doc["metadata"]["name"]: doc for doc in workloads(k8s)}
    ingest = by_name["acd-ingest"]["spec"]
    assert ingest["replicas"] == 2  # a pair: one active, one standby (the lease)
    assert ingest["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}  # never three
    assert by_name["acd-route"]["spec"]["replicas"] > 1


def _check_secret_files(env: dict[str, str], container: dict[str, Any], spec: dict[str, Any]) -> None:
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for name, value in env.items():
        if not name.endswith("_FILE"):
            continue
        directory, file = value.rsplit("/", 1)
        volume = next((v for n, v in mounts.items() if v == directory), None)
        assert volume is not None, f"{name}={value}: nothing is mounted at {directory}"
        secret = volumes[next(n for n, p in mounts.items() if p == directory)]["secret"]
        assert file in {item["path"] for item in secret["items"]}, f"{name}: {file} not in the secret's items"


def test_k8s_configuration_validates(
    k8s: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = next(
        doc for doc in k8s if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "acd-config"
    )
    route = next(doc for doc in workloads(k8s) if doc["metadata"]["name"] == "acd-route")
    env = {
        item["name"]: str(item["value"]) for item in route["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    validate_config_file(config["data"]["acd.yaml"], env, tmp_path, monkeypatch)
    settings = load_settings(tmp_path / "acd.yaml")
    assert settings.kafka.replication_factor == 3 and settings.kafka.partitions >= route["spec"]["replicas"]


def test_k8s_prometheus_configuration(k8s: list[dict[str, Any]], tmp_path: Path) -> None:
    config_map = next(
        d for d in k8s if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "acd-prometheus-config"
    )
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "acd"
    keep = {
        tuple(rule["source_labels"]): rule.get("regex")
        for rule in job["relabel_configs"]
        if rule.get("action")
    }
    assert keep[("__meta_kubernetes_pod_container_port_name",)] == "metrics"
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["acd"]}}]
    # Debian's promtool is built without Kubernetes discovery: check everything else (the
    # relabelling, the rules) with the discovery swapped for a static target.
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:9400"]}]
    promtool_check(config, tmp_path)


# -- the image ---------------------------------------------------------------------------


def test_dockerfile_copies_what_exists_and_runs_acd() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+?) \S+$", text, flags=re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), item
    assert 'ENTRYPOINT ["acd"]' in text and re.search(r"^USER \d+$", text, flags=re.MULTILINE)
