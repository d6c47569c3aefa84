"""What the blobs app needs from the apps above it, registered in code by those apps.

The garbage collector and a holding's deletion must know whether an unfinished job uses a
blob (an input, a code archive), but blobs never imports jobs (jobs -> blobs). The jobs app sets
``blobs_in_use`` in its ``AppConfig.ready``, as ``ledger.providers`` is filled. Unset, every
blob counts as in use: a deployment that lost the registration collects nothing rather than
a running job's input. A test sets it with ``monkeypatch.setattr``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

# ids of blobs -> those among them that an unfinished job uses.
BlobsInUseProvider = Callable[[Collection[int]], set[int]]


@dataclass
class Providers:
    blobs_in_use: BlobsInUseProvider | None = None


providers = Providers()


def blobs_in_use(blob_ids: Collection[int]) -> set[int]:
    provider = providers.blobs_in_use
    if provider is None:
        return set(blob_ids)
    return provider(blob_ids) if blob_ids else set()
