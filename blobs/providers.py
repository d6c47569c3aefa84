"""What the blobs app needs from the apps above it, registered in code by those apps.

The garbage collector must not delete a blob, nor drop a holding, that a job still needs; jobs
sit above blobs (jobs -> blobs) and blobs never imports them. The jobs app sets
``blobs_in_use`` here in its ``AppConfig.ready`` (``jobs.apps``): of the given blob ids, those
an unfinished job reads (an input or its code archive). Unset, the collector must treat every
blob as in use. A test sets or clears it with ``monkeypatch.setattr(providers, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

BlobsInUseProvider = Callable[[Collection[int]], set[int]]


@dataclass
class Providers:
    blobs_in_use: BlobsInUseProvider | None = None


providers = Providers()
