"""CommuniPute's renter SDK: run Python scripts on the marketplace's hosts (docs/sdk.md).

    from communipute import Client
    client = Client()  # COMMUNIPUTE_URL / COMMUNIPUTE_TOKEN, or what `communipute login` kept
    job = client.run("train.py", requirements=["numpy"], inputs=["data.csv"], max_cost=2)
    for text in job.logs():
        print(text, end="")
    print(job.wait().status, job.receipt().charged_micros)
    squares = client.map(lambda x: x * x, range(10), max_cost=2)  # a task each, many hosts

It imports nothing of the server and talks only its REST API.
"""

from communipute._version import __version__
from communipute.client import Client
from communipute.errors import (
    ApiError,
    AuthenticationFailed,
    CommuniputeError,
    ConfigError,
    ConnectionFailed,
    GroupWaitTimeout,
    InsufficientCredits,
    JobWaitTimeout,
    NotFound,
    PythonVersionMismatch,
    RemoteTraceback,
    TaskError,
    UploadFailed,
)
from communipute.executor import Executor, TaskFuture
from communipute.functions import RUNNER_PYTHON, RemoteFunction, TaskOutput, pinned
from communipute.groups import Group
from communipute.jobs import Job
from communipute.login import login
from communipute.maps import MapRun
from communipute.models import (
    FINAL_STATUSES,
    AttemptReceipt,
    Disk,
    GroupInfo,
    GroupReceipt,
    GroupReceiptLine,
    GroupTask,
    JobInfo,
    JobInput,
    LogPage,
    Output,
    Receipt,
    ReceiptTotals,
    TaskResult,
    UsageLine,
    Wallet,
)
from communipute.money import credits_to_micros, micros_text

__all__ = [
    "FINAL_STATUSES",
    "RUNNER_PYTHON",
    "ApiError",
    "AttemptReceipt",
    "AuthenticationFailed",
    "Client",
    "CommuniputeError",
    "ConfigError",
    "ConnectionFailed",
    "Disk",
    "Executor",
    "Group",
    "GroupInfo",
    "GroupReceipt",
    "GroupReceiptLine",
    "GroupTask",
    "GroupWaitTimeout",
    "InsufficientCredits",
    "Job",
    "JobInfo",
    "JobInput",
    "JobWaitTimeout",
    "LogPage",
    "MapRun",
    "NotFound",
    "Output",
    "PythonVersionMismatch",
    "Receipt",
    "ReceiptTotals",
    "RemoteFunction",
    "RemoteTraceback",
    "TaskError",
    "TaskFuture",
    "TaskOutput",
    "TaskResult",
    "UploadFailed",
    "UsageLine",
    "Wallet",
    "__version__",
    "credits_to_micros",
    "login",
    "micros_text",
    "pinned",
]
