"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Optional: without the package, without the driver, or without a GPU the host simply has no
GPUs (``[]``). ``nvml`` can be passed in so tests run against a fake module.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.protocol import GpuSpec

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


def gpus_detect(nvml: Any = None) -> list[GpuSpec]:
    """Model and total memory of each NVIDIA GPU NVML can see, in NVML's index order."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return []
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        logger.debug("no NVIDIA driver: %s", exc)
        return []
    try:
        return [_gpu(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:
        logger.warning("NVML failed while listing GPUs, reporting none: %s", exc)
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            logger.debug("nvmlShutdown failed: %s", exc)


def _gpu(nvml: Any, index: int) -> GpuSpec:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    if isinstance(name, bytes):  # older nvidia-ml-py releases return bytes
        name = name.decode("utf-8", "replace")
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return GpuSpec(model=str(name), memory_mb=int(memory.total) // _MIB)
