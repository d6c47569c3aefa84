"""The garbage collector (docs/data.md, "Retention")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from blobs import providers as blob_providers
from blobs.models import Blob, BlobHolding, Upload, UploadStatus
from blobs.tasks import blobs_collect_task
from tests.blobs.conftest import sha, stored_names

pytestmark = pytest.mark.django_db(transaction=True)


def hold(tus, data: bytes) -> Blob:
    assert tus.upload(data).status_code == 204
    return Blob.objects.get(sha256=sha(data))


def test_old_unused_holdings_and_then_their_blobs_go(store, alice, bob, tus_for, settings):
    # given: alice's old holding, bob's recent one of another blob
    old = hold(tus_for(alice), b"old bytes")
    recent = hold(tus_for(bob), b"recent bytes")
    BlobHolding.objects.filter(blob=old).update(
        last_used_at=timezone.now() - timedelta(seconds=settings.BLOB_RETENTION_SECONDS + 1)
    )

    # when
    result = blobs_collect_task()

    # then
    assert result == {
        "uploads_aborted": 0,
        "holdings_dropped": 1,
        "blobs_deleted": 1,
        "uploads_forgotten": 0,
    }
    assert list(Blob.objects.values_list("sha256", flat=True)) == [recent.sha256]
    assert stored_names() == [recent.storage_name]


def test_a_blob_an_unfinished_job_uses_is_kept(store, alice, tus_for, settings, monkeypatch):
    blob = hold(tus_for(alice), b"input bytes")
    BlobHolding.objects.update(last_used_at=timezone.now() - timedelta(days=30))
    monkeypatch.setattr(blob_providers.providers, "blobs_in_use", lambda ids: set(ids))
    assert blobs_collect_task() == {
        "uploads_aborted": 0,
        "holdings_dropped": 0,
        "blobs_deleted": 0,
        "uploads_forgotten": 0,
    }
    assert BlobHolding.objects.count() == 1
    # the holding dropped by hand, the job still running: the bytes stay
    BlobHolding.objects.all().delete()
    assert blobs_collect_task()["blobs_deleted"] == 0
    assert stored_names() == [blob.storage_name]


def test_without_the_jobs_apps_provider_every_blob_counts_as_in_use(
    store, alice, tus_for, monkeypatch
):
    # given: an old holding, and no provider registered (a deployment that lost it)
    blob = hold(tus_for(alice), b"maybe a running job's input")
    BlobHolding.objects.all().delete()
    monkeypatch.setattr(blob_providers.providers, "blobs_in_use", None)

    # when
    deleted = blobs_collect_task()["blobs_deleted"]

    # then: nothing is deleted on a guess
    assert deleted == 0
    assert stored_names() == [blob.storage_name]


def test_a_blob_an_upload_is_sending_is_kept(store, alice, bob, tus_for):
    data = b"shared bytes"
    blob = hold(tus_for(alice), data)
    assert tus_for(bob).create(len(data), sha256=sha(data)).status_code == 201
    BlobHolding.objects.all().delete()
    assert blobs_collect_task()["blobs_deleted"] == 0
    assert Blob.objects.filter(pk=blob.pk).exists()


def test_expired_uploads_are_aborted_with_their_parts(store, alice, tus_for):
    # given
    tus = tus_for(alice)
    location = tus.create(100, sha256=sha(b"p" * 100))["Location"]
    assert tus.patch(location, 0, b"p" * 40).status_code == 204
    Upload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    result = blobs_collect_task()

    # then
    assert result["uploads_aborted"] == 1
    assert Upload.objects.get().status == UploadStatus.ABORTED
    assert stored_names() == []


def test_rows_of_uploads_that_ended_long_ago_are_forgotten(store, alice, tus_for, settings):
    # given a complete upload and a receiving one, both old
    tus = tus_for(alice)
    assert tus.upload(b"done").status_code == 204
    assert tus.create(10, sha256=sha(b"0123456789")).status_code == 201
    old = timezone.now() - timedelta(seconds=settings.BLOB_UPLOAD_EXPIRY_SECONDS + 1)
    Upload.objects.update(updated_at=old)

    # when
    result = blobs_collect_task()

    # then the receiving one was aborted (kept a while longer), the complete one forgotten;
    # the blob stays held
    assert (result["uploads_aborted"], result["uploads_forgotten"]) == (0, 1)
    assert list(Upload.objects.values_list("status", flat=True)) == [UploadStatus.RECEIVING]
    assert BlobHolding.objects.count() == 1


def test_the_collector_is_on_beat(settings):
    assert (
        settings.CELERY_BEAT_SCHEDULE["blobs-collect"]["task"] == "blobs.tasks.blobs_collect_task"
    )
