"""What this machine offers: CPU, memory, disk, OS, GPUs and whether Docker is usable.

Docker is probed with a bare ``GET /_ping`` on its socket instead of importing the Docker SDK,
which would add its dependencies to an idle agent's memory for a yes/no answer.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from agent.gpu import gpus_detect
from agent.protocol import HostSpecs

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}


def specs_collect(work_dir: Path) -> HostSpecs:
    return HostSpecs(
        cpu_model=cpu_model(),
        arch=arch(),
        cpus=psutil.cpu_count(logical=True) or 1,
        memory_mb=psutil.virtual_memory().total // _MIB,
        disk_free_mb=disk_free_mb(work_dir),
        os=platform.system().lower(),
        os_version=os_version(),
        gpus=gpus_detect(),
        docker_available=docker_available(),
    )


def arch() -> str:
    machine = platform.machine().lower()
    return ARCH_ALIASES.get(machine, machine)


def cpu_model() -> str:
    system = platform.system()
    if system == "Linux":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()[:200]
        except OSError:
            pass
    elif system == "Darwin":
        brand = _command_output(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand[:200]
    return (platform.processor() or platform.machine())[:200]


def os_version() -> str:
    if platform.system() == "Linux":
        try:
            release = platform.freedesktop_os_release()
            return release.get("PRETTY_NAME", release.get("NAME", ""))[:100]
        except OSError:
            pass
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"[:100]
    return f"{platform.release()} {platform.version()}".strip()[:100]


def disk_free_mb(work_dir: Path) -> int:
    """Free space where jobs' files go (the nearest existing parent of the work dir)."""
    path = work_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free // _MIB


def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers on DOCKER_HOST or the usual sockets."""
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY"):
        parts = urlsplit(docker_host)
        return _ping(socket.AF_INET, (parts.hostname or "127.0.0.1", parts.port or 2375), timeout)
    if docker_host.startswith("unix://"):
        return _ping(socket.AF_UNIX, docker_host.removeprefix("unix://"), timeout)
    if docker_host or os.name == "nt":
        return _ping_with_sdk()  # TLS, SSH or a named pipe: let the SDK do it
    candidates = ["/var/run/docker.sock"]
    if os.environ.get("XDG_RUNTIME_DIR"):  # rootless Docker
        candidates.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "docker.sock"))
    candidates.append(str(Path.home() / ".docker" / "run" / "docker.sock"))  # Docker Desktop
    return any(_ping(socket.AF_UNIX, path, timeout) for path in candidates if os.path.exists(path))


def _ping(family: int, address: str | tuple[str, int], timeout: float) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(address)
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = connection.recv(4096)
    except OSError as exc:
        logger.debug("docker at %s does not answer: %s", address, exc)
        return False
    return bool(re.match(rb"HTTP/1\.[01] 200", reply))


def _ping_with_sdk() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:
        logger.debug("docker does not answer: %s", exc)
        return False


def _command_output(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return ""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
