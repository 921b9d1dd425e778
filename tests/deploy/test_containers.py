"""Dockerfiles, compose, nginx, Prometheus, Grafana and Kubernetes files agree with the code.

No container engine runs in CI, so these read the files and hold them
against the app (routes, port, settings) and a live service (metrics).
"""

from __future__ import annotations

import argparse
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

from model.commands import build_parser
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


def train_arguments(command: list[str]) -> argparse.Namespace:
    """``python -m model train ...`` (or through torchrun) parsed by the command's own parser."""
    start = command.index("model") + 1
    assert command[start] == "train"
    return build_parser().parse_args(command[start:])


def test_the_compose_trainer_publishes_where_the_api_watches(compose):
    services = compose["services"]
    assert "weights:/app/weights" in services["api"]["volumes"]
    assert "weights:/app/weights" in services["train"]["volumes"]
    watched = Path(services["api"]["environment"]["EXTD_WEIGHTS_DIR"])
    assert services["train"]["environment"]["EXTD_WEIGHTS_DIR"] == str(watched)
    args = train_arguments(services["train"]["entrypoint"])
    assert Path(args.publish).parent == watched
    assert args.init == "extd-64"  # resolved in the watched folder: the checkpoint it serves
    outputs = {volume.split(":")[1] for volume in services["train"]["volumes"]}
    assert Path(args.out).parent.as_posix() in outputs  # runs outlive the container
    assert "command" not in services["train"]  # `run train --flag ...` appends, and overrides


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


def claims(pod: dict, container: dict) -> dict[str, str]:
    """Mount path -> claim name of a container's persistent volumes."""
    volumes = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def test_the_kubernetes_training_job_publishes_where_the_api_pods_read(repo):
    validate = pytest.importorskip("kubernetes_validate", reason="needs the dev extra")
    training = [
        document
        for path in sorted((repo / "deploy" / "k8s" / "training").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    for document in training:
        validate.validate(document, "1.33.0", strict=True)
    (job,) = [d for d in training if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    # torchrun, one process unless told otherwise: CPUs by default, GPUs when asked for.
    assert train["command"][:2] == ["torchrun", "--standalone"]
    assert {"name": "NPROC_PER_NODE", "value": "1"} in train["env"]
    assert "nvidia.com/gpu" not in train["resources"]["limits"]
    args = train_arguments([p.replace("$(NPROC_PER_NODE)", "1") for p in train["command"]])
    assert args.init == "extd-64"
    deployment = yaml.safe_load((repo / "deploy" / "k8s" / "deployment.yaml").read_text())
    api_pod = deployment["spec"]["template"]["spec"]
    (api,) = api_pod["containers"]
    served = Dockerfile.read(repo / "docker" / "Dockerfile").env()["EXTD_WEIGHTS_DIR"]
    assert claims(pod, train)[str(Path(args.publish).parent)] == claims(api_pod, api)[served]
    assert claims(pod, train)[Path(args.out).parent.as_posix()]  # runs outlive the pod
    assert {"name": "EXTD_WEIGHTS_DIR", "value": served} in train["env"]
    claimed = {d["metadata"]["name"] for d in training if d["kind"] == "PersistentVolumeClaim"}
    assert set(claims(pod, train).values()) - {None} <= claimed | {claims(api_pod, api)[served]}
    # `kubectl apply -f deploy/k8s/` never starts a training run.
    top = [yaml.safe_load_all(p.read_text()) for p in (repo / "deploy" / "k8s").glob("*.yaml")]
    assert not [d for documents in top for d in documents if d["kind"] == "Job"]


def test_the_api_pods_seed_their_weights_volume_and_keep_what_is_there(repo, tmp_path):
    """The seed step, run here with the image's and the volume's folders replaced."""
    deployment = yaml.safe_load((repo / "deploy" / "k8s" / "deployment.yaml").read_text())
    (seed,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert seed["volumeMounts"] == [{"name": "weights", "mountPath": "/weights"}]
    image, volume = tmp_path / "image", tmp_path / "volume"
    image.mkdir()
    volume.mkdir()
    for name in ("extd-32", "extd-64"):
        (image / f"{name}.safetensors").write_text(f"released {name}")
    (volume / "extd-64.safetensors").write_text("fine-tuned")
    assert seed["command"][:2] == ["python", "-c"]
    script = seed["command"][2]
    script = script.replace('"/app/weights"', repr(str(image))).replace(
        '"/weights"', repr(str(volume))
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert sorted(p.name for p in volume.iterdir()) == [
        "extd-32.safetensors",
        "extd-64.safetensors",
    ]
    assert (volume / "extd-32.safetensors").read_text() == "released extd-32"
    assert (volume / "extd-64.safetensors").read_text() == "fine-tuned"


def manifests(repo: Path) -> dict[tuple[str, str], dict]:
    """Every object of deploy/k8s (and its folders) by kind and name."""
    found = {}
    for path in sorted((repo / "deploy" / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


# KEDA's ScaledObject (keda.sh/v1alpha1) as its documentation describes the fields used here;
# kubernetes-validate knows only Kubernetes' own kinds.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                **{
                    field: {"type": "integer", "minimum": 0}
                    for field in (
                        "pollingInterval",
                        "cooldownPeriod",
                        "idleReplicaCount",
                        "minReplicaCount",
                        "maxReplicaCount",
                    )
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "redis"},
                            "metadata": {
                                "type": "object",
                                "required": ["listName", "listLength"],
                                "additionalProperties": {"type": "string"},
                                "propertyNames": {
                                    "enum": [
                                        "address", "host", "port", "listName", "listLength",
                                        "activationListLength", "databaseIndex", "enableTLS",
                                        "unsafeSsl", "usernameFromEnv", "passwordFromEnv",
                                        "addressFromEnv", "hostFromEnv", "portFromEnv",
                                    ]
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip


def test_the_workers_scale_on_the_queue_the_service_fills(repo):
    """The KEDA scaler follows the worker Deployment and the Redis list huey writes the jobs to;
    API and worker pods share one queue and one jobs volume."""
    jsonschema = pytest.importorskip("jsonschema", reason="needs the dev extra")
    from service.jobs.store import QUEUE_NAME, open_queue

    found = manifests(repo)
    scaler = found[("ScaledObject", "extd-worker")]
    jsonschema.validate(scaler, SCALED_OBJECT)
    worker, api = found[("Deployment", "extd-worker")], found[("Deployment", "extd-api")]
    assert scaler["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaler["spec"]["minReplicaCount"] >= 1  # a running job is not in the list
    (trigger,) = scaler["spec"]["triggers"]
    queue = open_queue("redis://127.0.0.1:1/0", repo)  # no connection is made
    assert trigger["metadata"]["listName"] == queue.storage.queue_key == f"huey.redis.{QUEUE_NAME}"
    service = found[("Service", "extd-redis")]
    assert trigger["metadata"]["address"] == f"extd-redis:{service['spec']['ports'][0]['port']}"
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "service", "worker"]
    settings = []
    for deployment in (api, worker):
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        settings.append((env["EXTD_QUEUE_URL"], env["EXTD_JOBS_DIR"], "extd-jobs" in claims))
    assert settings[0] == settings[1]
    assert settings[0][0] == "redis://extd-redis:6379/0"
    assert found[("PersistentVolumeClaim", "extd-jobs")]["spec"]["accessModes"] == ["ReadWriteMany"]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= Settings().drain_timeout_s + SETTLE_S


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
