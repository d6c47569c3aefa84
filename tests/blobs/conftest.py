"""Fixtures of the blob tests: the store (the local disk, and S3 against moto's server where
BLOB_TEST_S3_ENDPOINT names one) and a small tus client over the test client."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.storage import storages
from rest_framework.test import APIClient

from accounts.models import User
from tests.conftest import _user

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def bob(db: None) -> User:
    """Another renter."""
    return _user("bob")


def s3_settings(bucket: str) -> dict[str, Any]:
    return {
        "BACKEND": "blobs.s3.BlobS3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": os.environ["BLOB_TEST_S3_ENDPOINT"],
            "region_name": "us-east-1",
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 600,
        },
    }


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The blob store under test: each test of the S3 kind gets a fresh bucket on moto."""
    if request.param == "s3":
        import boto3

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        bucket = f"blobs-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3", endpoint_url=os.environ["BLOB_TEST_S3_ENDPOINT"], region_name="us-east-1"
        ).create_bucket(Bucket=bucket)
        settings.STORAGES = {**settings.STORAGES, "blobs": s3_settings(bucket)}
    return str(request.param)


def stored_names() -> list[str]:
    """Every object in the blob store (both kinds), sorted."""
    store: Any = storages["blobs"]
    if hasattr(store, "bucket"):
        return sorted(item.key for item in store.bucket.objects.all())
    found: list[str] = []

    def walk(folder: str) -> None:
        folders, files = store.listdir(folder)
        found.extend(f"{folder}/{name}".lstrip("/") for name in files)
        for name in folders:
            walk(f"{folder}/{name}".lstrip("/"))

    if store.exists(""):
        walk("")
    return sorted(found)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Tus:
    """A tus 1.0 client over a DRF test client (the renters' endpoint by default)."""

    def __init__(self, client: APIClient, base: str = "/api/v1/uploads/", **auth: str) -> None:
        self.client = client
        self.base = base
        self.auth = auth

    def create(self, length: int, **metadata: str) -> Any:
        pairs = ",".join(f"{key} {b64(value)}" for key, value in metadata.items())
        return self.client.post(
            self.base,
            headers={**TUS, **self.auth, "Upload-Length": str(length), "Upload-Metadata": pairs},
        )

    def patch(self, location: str, offset: int, data: bytes, **extra: str) -> Any:
        client: Any = self.client  # the test client sends bytes as they are
        return client.generic(
            "PATCH",
            location,
            data=data,
            content_type="application/offset+octet-stream",
            headers={**TUS, **self.auth, "Upload-Offset": str(offset), **extra},
        )

    def head(self, location: str) -> Any:
        return self.client.head(location, headers={**TUS, **self.auth})

    def delete(self, location: str) -> Any:
        return self.client.delete(location, headers={**TUS, **self.auth})

    def upload(self, data: bytes, *, chunk: int = 1 << 20, **metadata: str) -> Any:
        """The whole of ``data``; the last answer (the creation's if nothing was left to send)."""
        created = self.create(len(data), sha256=metadata.pop("sha256", sha(data)), **metadata)
        assert created.status_code == 201, created.content
        answer, offset = created, int(created["Upload-Offset"])
        while offset < len(data):
            answer = self.patch(created["Location"], offset, data[offset : offset + chunk])
            if answer.status_code != 204:
                return answer
            offset = int(answer["Upload-Offset"])
        return answer


@pytest.fixture
def tus_for(client_for: Callable[[User], APIClient]) -> Callable[[User], Tus]:
    return lambda user: Tus(client_for(user))
