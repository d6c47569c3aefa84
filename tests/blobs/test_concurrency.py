"""Uploads racing on PostgreSQL with real threads: the digest lock and the quota's row lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from blobs.models import Blob, BlobHolding, UploadStatus
from blobs.services.uploads import upload_create, upload_locked, upload_receive
from config.errors import TooLarge
from config.transactions import durable_call
from tests.blobs.conftest import sha, stored_names

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DATA = b"the same bytes, sent by two users at once " * 2000
DIGEST = sha(DATA)


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        taken, self.data = self.data[:size], self.data[size:]
        return taken


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; their results or exceptions, in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def last_patch(user_id: int, data: bytes) -> Callable[[], str]:
    upload = durable_call(upload_create, user_id=user_id, sha256=DIGEST, length=len(DATA))

    def send() -> str:
        def receive() -> str:
            locked = upload_locked(upload.pk, user_id=user_id, scope=None)
            return upload_receive(locked, offset=0, body=Body(data), length=len(data)).status

        return durable_call(receive)

    return send


def test_two_users_completing_one_digest_at_once_store_it_once(alice, bob, mallory):
    # given three uploads of one digest: two with the bytes, one with other bytes
    calls = [
        last_patch(alice.pk, DATA),
        last_patch(bob.pk, DATA),
        last_patch(mallory.pk, b"X" * len(DATA)),
    ]

    # when all three complete at the same moment
    statuses = race(*calls)

    # then one object with the right bytes, held by the two who sent them
    assert statuses == [UploadStatus.COMPLETE, UploadStatus.COMPLETE, UploadStatus.FAILED]
    blob = Blob.objects.get()
    assert blob.sha256 == DIGEST
    assert sorted(BlobHolding.objects.values_list("user__username", flat=True)) == ["alice", "bob"]
    assert blob.storage_name in stored_names()
    from django.core.files.storage import storages

    with storages["blobs"].open(blob.storage_name, "rb") as handle:
        assert sha(handle.read()) == DIGEST


def test_creations_at_once_never_pass_the_quota_together(alice, settings):
    # given room for one upload of 600 bytes, not two
    settings.BLOB_QUOTA_BYTES = 1000

    def create(index: int) -> Callable[[], Any]:
        return lambda: durable_call(
            upload_create, user_id=alice.pk, sha256=sha(bytes([index]) * 600), length=600
        )

    # when four creations race
    results = race(*(create(i) for i in range(4)))

    # then exactly one got through
    refused = [r for r in results if isinstance(r, TooLarge)]
    assert (len(refused), len(results) - len(refused)) == (3, 1)
    assert {r.code for r in refused} == {"quota_exceeded"}
