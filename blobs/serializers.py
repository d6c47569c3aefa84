from __future__ import annotations

from typing import Any

from rest_framework import serializers

from blobs.models import BlobHolding, Upload


class HoldingSerializer(serializers.ModelSerializer[BlobHolding]):
    sha256 = serializers.CharField(source="blob.sha256")
    size = serializers.IntegerField(source="blob.size")

    class Meta:
        model = BlobHolding
        fields = ["sha256", "size", "name", "origin", "created_at", "last_used_at"]


class QuotaSerializer(serializers.Serializer[Any]):
    used_bytes = serializers.IntegerField()
    limit_bytes = serializers.IntegerField()
    uploading_bytes = serializers.IntegerField()


class UploadSerializer(serializers.ModelSerializer[Upload]):
    class Meta:
        model = Upload
        fields = ["id", "offset", "length", "sha256", "status"]
