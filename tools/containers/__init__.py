"""Building and running the project's containers with podman, where no registry can be reached.

The public base images (``python:3.11-slim``, ``nginx``, Prometheus, Redis,
the PyTorch CUDA image) are replaced by stand-ins built from Debian's packages
(``debootstrap``, then the ``*.Containerfile`` files here) and tagged with
the public names, so the project's Dockerfiles and compose file build and
run unchanged. Python packages come from a wheelhouse that the python
stand-in's pip downloads (the CPU torch wheel included; the images' Python
decides the version markers) and that is mounted into the builds, with pip
told, through the Dockerfiles' build arguments, to use nothing else.
Everything is kept between runs: stand-ins in podman's storage, the
wheelhouse under the cache folder, keyed by that Python and the
requirements.

    python -m tools.containers        # build everything the container tests need, once
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PODMAN = ["podman"]
# runc and the sandbox's limits, for podman and podman-compose alike.
ENVIRONMENT = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}
DEBIAN = "localhost/debian:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PYTHON = "docker.io/library/python:3.11-slim"
# Public name -> its stand-in's Containerfile (built in this order).
STAND_INS = {
    PYTHON: "python.Containerfile",
    "docker.io/library/nginx:1.28-alpine": "nginx.Containerfile",
    "docker.io/prom/prometheus:v3.5.0": "prometheus.Containerfile",
    "docker.io/library/redis:7.2-alpine": "redis.Containerfile",
    "docker.io/pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime": "pytorch.Containerfile",
}
TORCH = "torch==2.13.0"
# What pip in the project's builds may use: the mounted wheelhouse and nothing else.
OFFLINE_PIP = {"PIP_OPTIONS": "--no-index --find-links /wheels"}


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


def podman(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*PODMAN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ENVIRONMENT,
    )
    if check and done.returncode:
        raise RuntimeError(
            f"podman {' '.join(args[:4])} ... failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def has_image(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def debian_base() -> None:
    """``localhost/debian:bookworm`` from ``debootstrap --variant=minbase``."""
    if has_image(DEBIAN):
        return
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [*PODMAN, "import", "-", DEBIAN],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            env=ENVIRONMENT,
        )
        tar.wait()


def requirements(extras: tuple[str, ...] = ("openvino", "video", "redis")) -> list[str]:
    """The runtime requirements of the project (with ``extras``), from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return found


def host_pip_sources() -> list[str]:
    """``podman run`` arguments that give the stand-in's pip what this machine's pip has: its
    certificate file (a registry behind a TLS-inspecting proxy) and its local wheel folders
    (``find-links``, where a CPU torch wheel may be), each mounted read-only at its path."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found: dict[str, list[str]] = {"cert": [], "find-links": []}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        option = key.rpartition(".")[2]
        if option in found:
            found[option] += [p for p in value.strip("'\"").split() if Path(p).exists()]
    arguments = []
    for option, paths in found.items():
        paths = list(dict.fromkeys(paths))
        for path in paths:
            arguments += ["-v", f"{path}:{path}:ro"]
        if paths:
            variable = "PIP_" + option.upper().replace("-", "_")
            arguments += ["-e", f"{variable}={paths[0] if option == 'cert' else ' '.join(paths)}"]
    return arguments


def wheelhouse(cache: Path) -> Path:
    """Every wheel the images install (the CPU torch first), downloaded once by the python
    stand-in's own pip: requirements whose markers depend on the Python version (redis needs
    async-timeout before 3.11.3; Debian's is 3.11.2) resolve as they will in the images."""
    wanted = [TORCH, *requirements(), "hatchling>=1.24"]
    python = podman("run", "--rm", PYTHON, "python", "-VV").stdout.strip()
    key = hashlib.sha256("\n".join([python, *wanted]).encode()).hexdigest()[:16]
    folder = cache / f"wheelhouse-{key}"
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    podman(
        "run", "--rm", "--network", "host", "-v", f"{folder}:/wheels", *host_pip_sources(),
        PYTHON, "pip", "download", "--quiet", "--dest", "/wheels", *wanted,
    )  # fmt: skip
    (folder / ".complete").touch()
    return folder


def build(
    tag: str,
    containerfile: Path,
    *,
    context: Path,
    wheels: Path | None = None,
    build_args: dict[str, str] | None = None,
    volumes: dict[Path, str] | None = None,
) -> None:
    """``podman build`` on the host network, with the wheelhouse at ``/wheels``."""
    # Docker's image format: OCI's has no HEALTHCHECK.
    arguments = ["build", "--network", "host", "--format", "docker", "-t", tag]
    arguments += ["-f", str(containerfile)]
    mounts = dict(volumes or {})
    if wheels is not None:
        mounts[wheels] = "/wheels"
    for source, target in mounts.items():
        arguments += ["-v", f"{source}:{target}:ro"]
    for name, value in (build_args or {}).items():
        arguments += ["--build-arg", f"{name}={value}"]
    podman(*arguments, str(context))


def stand_ins(cache: Path) -> Path:
    """The Debian base, the stand-ins of the public images, and the wheelhouse; built once."""
    debian_base()
    if not has_image(PYTHON):
        build(PYTHON, HERE / STAND_INS[PYTHON], context=HERE)
    wheels = wheelhouse(cache)
    for name, containerfile in STAND_INS.items():
        if not has_image(name):
            build(name, HERE / containerfile, context=HERE, wheels=wheels)
    return wheels


if __name__ == "__main__":
    from model.options import RuntimeOptions

    print(stand_ins(RuntimeOptions().cache_dir / "containers"))
