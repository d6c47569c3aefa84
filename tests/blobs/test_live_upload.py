"""A 1 GiB tus upload through a real daphne, cut mid-PATCH and resumed (bench/uploads.py)."""

from __future__ import annotations

import pytest

from bench.uploads import RSS_GROWTH_LIMIT, upload_through_daphne
from blobs.models import Blob, BlobHolding
from tests.hosts.test_agent_end_to_end import database_url


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_1_gib_upload_cut_and_resumed_keeps_daphne_memory_bounded(tmp_path):
    # when
    result = upload_through_daphne(
        1024 * 1024 * 1024, database_url(), tmp_path / "blobs", tmp_path / "daphne.log"
    )

    # then
    print(result.report())
    assert result.ok, result.report()
    assert result.resumed_from < result.cut_at
    assert result.growth < RSS_GROWTH_LIMIT, result.report()
    blob = Blob.objects.get()
    assert (blob.sha256, blob.size) == (result.sha256, 1024 * 1024 * 1024)
    assert BlobHolding.objects.get().blob == blob
