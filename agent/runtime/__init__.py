"""Sandboxes for jobs: the Runtime interface, the Docker runtime and the unisolated process
runtime for the local demo. See docs/sandbox.md."""

from agent.runtime.docker_runtime import DockerRuntime
from agent.runtime.process_runtime import ProcessRuntime
from agent.runtime.types import (
    DEFAULT_IMAGE,
    Handle,
    JobSpec,
    JobSpecError,
    Outcome,
    OutputFile,
    OwnedContainer,
    Prepared,
    Runtime,
    RuntimeSettings,
    Status,
    StopStatus,
    UsageSample,
)

__all__ = [
    "DEFAULT_IMAGE",
    "DockerRuntime",
    "Handle",
    "JobSpec",
    "JobSpecError",
    "Outcome",
    "OutputFile",
    "OwnedContainer",
    "Prepared",
    "ProcessRuntime",
    "Runtime",
    "RuntimeSettings",
    "Status",
    "StopStatus",
    "UsageSample",
]
