import shutil
import subprocess
from types import SimpleNamespace

import pytest

from agent.gpu import gpus_detect


class FakeNvml:
    """The slice of pynvml that agent.gpu uses, with GPUs given by (name, total bytes)."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus, *, init_error=None, fail_at=None):
        self.gpus = gpus
        self.init_error = init_error
        self.fail_at = fail_at
        self.calls = []

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index == self.fail_at:
            raise self.NVMLError("GPU is lost")
        return index

    def nvmlDeviceGetName(self, handle):
        return self.gpus[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=self.gpus[handle][1], free=0, used=0)


def test_each_gpu_is_reported_with_its_model_and_memory():
    nvml = FakeNvml(
        [("NVIDIA H100 80GB HBM3", 85_520_809_984), (b"NVIDIA RTX 4090", 25_757_220_864)]
    )

    gpus = gpus_detect(nvml)

    assert gpus == [
        {"model": "NVIDIA H100 80GB HBM3", "memory_mb": 81559},
        {"model": "NVIDIA RTX 4090", "memory_mb": 24564},
    ]
    assert nvml.calls == ["init", "shutdown"]


def test_no_driver_means_no_gpus():
    nvml = FakeNvml([], init_error=FakeNvml.NVMLError("Driver Not Loaded"))

    assert gpus_detect(nvml) == []
    assert nvml.calls == ["init"]


def test_an_nvml_failure_while_listing_reports_no_gpus_and_shuts_nvml_down():
    nvml = FakeNvml([("A", 1), ("B", 1)], fail_at=1)

    assert gpus_detect(nvml) == []
    assert nvml.calls == ["init", "shutdown"]


def test_the_real_nvml_on_a_machine_without_gpus_reports_none():
    if _nvidia_smi_gpus():
        pytest.skip("this machine has an NVIDIA GPU")
    # nvidia-ml-py is installed but there is no driver: the import works, init fails.
    assert gpus_detect() == []


def _nvidia_smi_gpus():
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    rows = [line.rsplit(",", 1) for line in result.stdout.strip().splitlines()]
    return [{"model": name.strip(), "memory_mb": int(memory)} for name, memory in rows]


@pytest.mark.gpu
def test_a_real_nvidia_gpu_is_reported_as_nvidia_smi_sees_it():
    expected = _nvidia_smi_gpus()
    if not expected:
        pytest.skip("no NVIDIA GPU (nvidia-smi) on this machine")

    assert gpus_detect() == expected
