"""CommuniPute's renter SDK: run Python scripts on the marketplace's hosts (docs/sdk.md).

    from communipute import Client
    client = Client()  # COMMUNIPUTE_URL / COMMUNIPUTE_TOKEN, or what `communipute login` kept
    job = client.run("train.py", requirements=["numpy"], inputs=["data.csv"], max_cost=2)
    for text in job.logs():
        print(text, end="")
    print(job.wait().status, job.receipt().charged_micros)

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
    InsufficientCredits,
    JobWaitTimeout,
    NotFound,
    UploadFailed,
)
from communipute.jobs import Job
from communipute.login import login
from communipute.models import (
    FINAL_STATUSES,
    AttemptReceipt,
    Disk,
    JobInfo,
    JobInput,
    LogPage,
    Output,
    Receipt,
    ReceiptTotals,
    UsageLine,
    Wallet,
)
from communipute.money import credits_to_micros, micros_text

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "AttemptReceipt",
    "AuthenticationFailed",
    "Client",
    "CommuniputeError",
    "ConfigError",
    "ConnectionFailed",
    "Disk",
    "InsufficientCredits",
    "Job",
    "JobInfo",
    "JobInput",
    "JobWaitTimeout",
    "LogPage",
    "NotFound",
    "Output",
    "Receipt",
    "ReceiptTotals",
    "UploadFailed",
    "UsageLine",
    "Wallet",
    "__version__",
    "credits_to_micros",
    "login",
    "micros_text",
]
