"""Migration jobs 0007: outputs stored as files (MEDIA_ROOT) become blobs their owner holds."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.jobs.helpers import finished, say, submit

BEFORE = [("jobs", "0006_usage_history")]
AFTER = [("jobs", "0007_job_output_blob")]
CONTENT = b"result,42\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_after():
    """Going back to BEFORE unapplies every later jobs migration: put them all back after the
    test, so the tests after it find the whole schema."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_stored_outputs_become_held_blobs_and_damaged_ones_stay_without(
    latest_schema_after, alice, make_host, hana, ledger, committed, settings, tmp_path
):
    # given two declared outputs of a finished job, before the migration: one stored intact,
    # one whose stored file no longer matches its digest
    settings.MEDIA_ROOT = tmp_path / "media"
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "a")
    declared = [
        {"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA},
        {"name": "out/damaged.csv", "size": len(CONTENT), "sha256": SHA[::-1]},
    ]
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(host, "job.finished", **finished(job, 1, outputs=declared))
    old = migrate(BEFORE)
    for output in old.get_model("jobs", "JobOutput").objects.all():
        name = default_storage.save(f"job-outputs/{job.pk}/{output.name}", ContentFile(CONTENT))
        output.file = name
        output.uploaded_at = job.created_at
        output.save()

    # when
    new = migrate(AFTER)

    # then
    outputs = {o.name: o for o in new.get_model("jobs", "JobOutput").objects.all()}
    blob = new.get_model("blobs", "Blob").objects.get()
    assert (blob.sha256, blob.size) == (SHA, len(CONTENT))
    assert (outputs["out/result.csv"].blob_id, outputs["out/damaged.csv"].blob_id) == (
        blob.pk,
        None,
    )
    holding = new.get_model("blobs", "BlobHolding").objects.get()
    assert (holding.user_id, holding.blob_id, holding.origin, holding.name) == (
        alice.pk,
        blob.pk,
        "output",
        "result.csv",
    )
    with storages["blobs"].open(f"blobs/{SHA[:2]}/{SHA}", "rb") as handle:
        assert handle.read() == CONTENT
