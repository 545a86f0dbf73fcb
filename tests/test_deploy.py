"""The compose stack, validated without a Docker engine (none runs here).

Checks: docker-compose.yml against the compose-spec JSON schema (vendored from the docker-compose
1.29.2 wheel, ``compose/config/compose_spec.json``, Apache-2.0), the OpenTelemetry Collector
pipeline's structure, the Grafana provisioning and dashboard, pinned image tags (compose and
Dockerfile), and that ports and hostnames agree across the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).parent / "schemas" / "compose_spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def collector() -> dict:
    return yaml.safe_load((ROOT / "deploy/otel-collector/config.yaml").read_text())


@pytest.fixture(scope="module")
def datasources() -> dict:
    data = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text())
    return {d["uid"]: d for d in data["datasources"]}


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _port_binding(spec) -> tuple[str, int, int]:
    """``(host IP, host port, container port)`` of one short-syntax ``ports`` entry.

    Handles ``"8000"``, ``"8000:8000"``, ``"127.0.0.1:8000:8000"``, ``"[::1]:8000:8000"`` and a
    ``/tcp``/``/udp`` suffix; the IP is ``""`` when none is given (every interface). A port range or a
    missing host port raises ``ValueError``.
    """
    text = str(spec).split("/", 1)[0]
    ip = ""
    if text.startswith("["):  # IPv6 address in brackets
        ip, _, text = text[1:].partition("]:")
    elif text.count(":") == 2:
        ip, _, text = text.partition(":")
    host, _, container = text.rpartition(":")
    if not host:
        host = container if ":" not in text else ""
    if not host or "-" in host or "-" in container:
        raise ValueError(f"{spec!r}: give a single host port")
    return ip, int(host), int(container)


def _published(service: dict) -> dict[int, int]:
    """container port -> host port of a service's ``ports`` (short syntax)."""
    return {container: host for _, host, container in map(_port_binding, service.get("ports", []))}


def test_the_port_parser_reads_every_short_syntax_form():
    assert _port_binding("8000") == ("", 8000, 8000)
    assert _port_binding(5000) == ("", 5000, 5000)
    assert _port_binding("8080:8000") == ("", 8080, 8000)
    assert _port_binding("127.0.0.1:8001:8000") == ("127.0.0.1", 8001, 8000)
    assert _port_binding("[::1]:3001:3000/tcp") == ("::1", 3001, 3000)
    assert _port_binding("4317:4317/udp") == ("", 4317, 4317)
    for bad in ("127.0.0.1::8000", "8000-8002:8000-8002"):
        with pytest.raises(ValueError):
            _port_binding(bad)


def test_every_port_is_published_on_loopback_only(compose):
    """tracehound has no API token and Grafana lets anonymous visitors in: nothing may listen on
    the host's other interfaces."""
    bindings = {
        (name, str(spec)): _port_binding(spec)[0]
        for name, service in compose["services"].items()
        for spec in service.get("ports", [])
    }
    assert len(bindings) >= 6
    assert {key: ip for key, ip in bindings.items() if ip != "127.0.0.1"} == {}


def test_grafana_anonymous_visitors_can_only_view(compose):
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert str(env.get("GF_AUTH_DISABLE_LOGIN_FORM", "false")).lower() != "true"  # admins can sign in


def test_compose_file_matches_the_compose_spec_schema(compose):
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    broken = dict(compose, services={"x": {"image": "a:1", "ports": {"not": "a list"}}})
    assert list(validator_class(schema).iter_errors(broken))  # the schema does catch mistakes


def test_the_services_the_issue_asks_for(compose):
    services = compose["services"]
    assert {"demo", "otel-collector", "tracehound", "jaeger", "grafana"} <= set(services)
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")  # Jaeger v2
    assert _published(services["jaeger"])[16686] == 16686
    assert services["tracehound"]["command"][0] == "serve"
    assert _flag(services["tracehound"]["command"], "--host") == "0.0.0.0"
    assert "opentelemetry-instrument" in " ".join(services["demo"]["command"])


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image: built services get an explicit name:tag too"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag and tag != "latest" and re.search(r"\d", tag), (
            f"{name}: {image} is not pinned"
        )
    stages = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.upper().startswith("FROM "):
            words = line.split()
            image = words[1]
            if len(words) == 4:
                stages.add(words[3])
            if image in stages:  # an earlier build stage
                continue
            assert ":" in image and not image.endswith(":latest") and re.search(r":\S*\d", image), line
    env = compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    for plugin in env.split(","):
        name, version = plugin.strip().split(" ")
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"plugin {name} is not pinned"


def test_collector_pipeline_fans_out_to_tracehound_and_jaeger(collector, compose):
    assert set(collector) >= {"receivers", "exporters", "service"}
    pipelines = collector["service"]["pipelines"]
    traces = pipelines["traces"]
    for section in ("receivers", "processors", "exporters"):
        for component in traces.get(section, []):
            assert component in collector[section], f"{section} {component} used but not defined"
    for extension in collector["service"].get("extensions", []):
        assert extension in collector["extensions"]
    assert set(traces["exporters"]) == {"otlphttp/tracehound", "otlp/jaeger"}
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    services = compose["services"]
    th = urlparse(collector["exporters"]["otlphttp/tracehound"]["endpoint"])
    assert th.hostname == "tracehound" and th.port == int(
        _flag(services["tracehound"]["command"], "--otlp-http-port")
    )
    jaeger_host, jaeger_port = collector["exporters"]["otlp/jaeger"]["endpoint"].split(":")
    assert jaeger_host == "jaeger" and int(jaeger_port) == 4317  # Jaeger v2's OTLP/gRPC receiver
    mounts = [v.split(":") for v in services["otel-collector"]["volumes"]]
    assert ["./deploy/otel-collector/config.yaml", "/etc/otelcol-contrib/config.yaml", "ro"] in mounts
    assert "--config=/etc/otelcol-contrib/config.yaml" in services["otel-collector"]["command"]


def test_ports_and_hostnames_agree_across_files(compose, collector, datasources):
    services = compose["services"]
    demo_env = services["demo"]["environment"]
    endpoint = urlparse(demo_env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    assert demo_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert endpoint.port == int(
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    )
    stub = urlparse(demo_env["TRACEHOUND_DEMO_STUB_URL"])
    assert stub.hostname in services and stub.port == int(_flag(services[stub.hostname]["command"], "--port"))
    assert (
        _flag(services["demo"]["command"][-1].split(), "--port") == "5000"
        and _published(services["demo"])[5000]
    )
    load_url = urlparse(_flag(services["load"]["command"], "--url"))
    assert (load_url.hostname, load_url.port) == ("demo", 5000)
    api_port = int(_flag(services["tracehound"]["command"], "--port"))
    assert _published(services["tracehound"])[api_port] == api_port
    assert urlparse(datasources["tracehound"]["url"]) == urlparse(f"http://tracehound:{api_port}")
    assert urlparse(datasources["jaeger"]["url"]).port == 16686
    env = services["tracehound"]["environment"]
    assert urlparse(env["TRACEHOUND_JAEGER_URL"]).port == _published(services["jaeger"])[16686]
    assert urlparse(env["TRACEHOUND_GRAFANA_URL"]).port == _published(services["grafana"])[3000]


def test_grafana_provisioning_and_dashboard(compose, datasources):
    assert datasources["jaeger"]["type"] == "jaeger"
    infinity = datasources["tracehound"]
    assert infinity["type"] == "yesoreyeram-infinity-datasource"
    assert infinity["url"] in infinity["jsonData"]["allowedHosts"]
    plugins = compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert "yesoreyeram-infinity-datasource" in plugins
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dashboards_dir = ROOT / mounts[provider["options"]["path"]]
    [dashboard_file] = dashboards_dir.glob("*.json")
    dashboard = json.loads(dashboard_file.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    urls, links = set(), []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in datasources
        assert panel["datasource"]["type"] == datasources[panel["datasource"]["uid"]]["type"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in datasources
            if "url" in target:
                urls.add(target["url"].split("?")[0])
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    links += [link["url"] for link in prop["value"]]
    assert {"/api/findings", "/api/endpoints"} <= urls  # tracehound's JSON API (see api/routes_json.py)
    assert any(u.startswith("http://localhost:16686/trace/${__value.raw}") for u in links)  # to Jaeger
    assert any(u.startswith("/explore?") and '"uid":"jaeger"' in u for u in links)  # to Grafana Explore
