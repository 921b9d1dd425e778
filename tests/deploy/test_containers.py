"""Dockerfiles, compose, nginx, Prometheus, Grafana and Kubernetes files agree with the code.

No container engine runs in CI, so these read the files and hold them
against the app (routes, port, settings) and a live service (metrics).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from dockerfile import Dockerfile

from model.images import open_image
from service.app import create_app
from service.config import Settings
from service.lifecycle import SETTLE_S
from tools.launcher import free_port

APP_ROUTES = set(create_app().openapi()["paths"])
APP_PORT = Settings().port


def test_every_copy_source_exists(dockerfile, repo):
    for rest in dockerfile.all("COPY"):
        *sources, _target = rest.split()
        for source in sources:
            assert (repo / source).exists(), f"{dockerfile.path.name}: COPY {source} is missing"


def test_container_runs_the_service_as_the_tests_do(dockerfile):
    assert dockerfile.exec_form("CMD") == ["python", "-m", "service"]
    users = dockerfile.all("USER")
    assert users
    assert users[-1] not in ("root", "0")
    env = dockerfile.env()
    assert env["EXTD_HOST"] == "0.0.0.0"
    assert dockerfile.all("EXPOSE") == [env["EXTD_PORT"]]


def test_healthcheck_probes_livez_on_the_service_port(dockerfile):
    (healthcheck,) = dockerfile.all("HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", healthcheck)
    assert url, healthcheck
    assert url.group(1) == dockerfile.env()["EXTD_PORT"]
    assert url.group(2) == "/livez"
    assert "/livez" in APP_ROUTES


def test_every_setting_the_images_set_exists(dockerfile):
    fields = {f"EXTD_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in dockerfile.env() if k.startswith("EXTD_")} - fields
    assert not unknown


def test_compose_topology(compose, repo):
    services = compose["services"]
    assert {"api", "lb", "prometheus", "grafana", "train"} <= set(services)
    assert services["api"]["deploy"]["replicas"] > 1
    assert services["train"]["profiles"] == ["train"]
    for name, service in services.items():
        assert service["deploy"]["resources"]["limits"], name
        assert "restart" in service, name
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (repo / source).exists(), source
    # The api and the trainer share the watched weights volume.
    assert "weights:/app/weights" in services["api"]["volumes"]
    assert "weights:/app/weights" in services["train"]["volumes"]
    train = services["train"]["command"]
    published = train[train.index("--publish") + 1]
    assert Path(published).parent == Path(services["api"]["environment"]["EXTD_WEIGHTS_DIR"])


def test_load_balancer_spreads_over_the_api_replicas(compose, repo):
    conf = (repo / "docker" / "nginx.conf").read_text()
    assert re.search(rf"server\s+api:{APP_PORT};", conf)
    listen = re.search(r"listen\s+(\d+);", conf).group(1)
    assert any(p.endswith(f":{listen}:{listen}") for p in compose["services"]["lb"]["ports"])
    # A replica that did not start the work (full, stopping, gone): POSTs go to another.
    retry = re.search(r"proxy_next_upstream\s+([^;]+);", conf).group(1).split()
    assert {"http_429", "http_502", "http_503", "non_idempotent"} <= set(retry)
    assert int(re.search(r"proxy_next_upstream_tries\s+(\d+);", conf).group(1)) <= 3
    assert re.search(r"proxy_next_upstream_timeout\s+\d+s;", conf)
    # The api believes X-Forwarded-For from the balancer alone, which sets it itself.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    address = compose["services"]["lb"]["networks"]["default"]["ipv4_address"]
    assert compose["services"]["api"]["environment"]["EXTD_FORWARDED_ALLOW_IPS"] == address
    body_mb = int(re.search(r"client_max_body_size\s+(\d+)m;", conf).group(1))
    assert body_mb * 2**20 >= Settings().max_body_bytes
    # A request may wait as long as the drain lets it; slow clients are cut off.
    read_s = int(re.search(r"proxy_read_timeout\s+(\d+)s;", conf).group(1))
    assert read_s > Settings().drain_timeout_s
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert re.search(rf"{directive}\s+\d+s;", conf), directive


def test_prometheus_finds_every_replica(repo):
    config = yaml.safe_load((repo / "docker" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] in APP_ROUTES
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["api"]
    assert discovery["port"] == APP_PORT


def dashboard_metrics(repo: Path) -> set[str]:
    dashboard = json.loads((repo / "docker" / "grafana" / "dashboards" / "extd.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = set()
    for expression in expressions:
        names |= set(re.findall(r"\b(extd_[a-z_]+)", expression))
    return names


def test_grafana_is_provisioned_with_the_dashboard(repo):
    provisioning = repo / "docker" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "extd.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    titles = {
        p["title"]
        for p in json.loads((repo / "docker/grafana/dashboards/extd.json").read_text())["panels"]
    }
    for word in (
        "Requests",
        "latency",
        "Queue wait",
        "batch size",
        "Queue depth",
        "Rejections",
        "faces",
    ):
        assert any(word.lower() in title.lower() for title in titles), word


@pytest.mark.slow
def test_every_dashboard_metric_is_exported_by_the_live_service(server, repo):
    exported = httpx.get(f"{server.url}/metrics").text
    families = set(re.findall(r"^# TYPE (\S+) ", exported, flags=re.MULTILINE))
    for name in dashboard_metrics(repo):
        family = name if name in families else re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in families, f"{name} is queried by the dashboard but not exported"


def test_kubernetes_probes_and_autoscaler(repo):
    deployment = yaml.safe_load((repo / "deploy" / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "service"]
    assert container["ports"][0]["containerPort"] == APP_PORT
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {"/readyz", "/livez"} <= APP_ROUTES
    # Kubernetes kills the pod after the grace period: the preStop pause, the drain and the
    # close after it must fit.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pause = float(re.search(r"sleep\((\d+)\)", str(container["lifecycle"]["preStop"])).group(1))
    assert grace >= pause + Settings().drain_timeout_s + SETTLE_S
    hpa = yaml.safe_load((repo / "deploy" / "k8s" / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2


def test_kubernetes_manifests_follow_the_api_schema(repo):
    validate = pytest.importorskip("kubernetes_validate", reason="needs the dev extra")
    for path in sorted((repo / "deploy" / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            validate.validate(document, "1.33.0", strict=True)  # raises when it does not


@pytest.mark.slow
def test_the_exact_container_command_serves_a_detection(repo, tmp_path, weights_mirror, dev_images):
    """CMD of docker/Dockerfile, with its ENV, on this machine (paths and host adapted)."""
    image = Dockerfile.read(repo / "docker" / "Dockerfile")
    command = image.exec_form("CMD")
    port = free_port()
    env = image.env() | {
        "EXTD_HOST": "127.0.0.1",
        "EXTD_PORT": str(port),
        "EXTD_WEIGHTS_DIR": str(tmp_path / "weights"),
        "EXTD_CACHE_DIR": str(tmp_path / "cache"),
        "EXTD_WEIGHTS_MIRROR": str(weights_mirror),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    log = tmp_path / "server.log"  # a file, not a pipe: nobody reads a pipe while it fills
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        data = dev_images[0].read_bytes()
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/detect", files={"images": ("a.jpg", data)}, timeout=120
        )
        assert response.status_code == 200, response.text
        faces = response.json()["results"][0]["faces"]
        assert len(faces) >= 9
        assert response.json()["model"] == "extd-64"
        assert np.asarray(open_image(data)).shape[:2] == (768, 1024)
    finally:
        process.terminate()
        process.wait(timeout=90)
    assert "Application startup complete" in log.read_text()
    assert process.returncode == 0  # the drain ends cleanly


@pytest.mark.slow
def test_smoke_script_passes_against_a_live_service(server, repo, dev_images):
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "smoke.sh"), server.url, str(dev_images[0])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all endpoints answer" in done.stdout
