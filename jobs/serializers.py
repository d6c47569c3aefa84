"""Request and response shapes of the jobs API."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api import MicrosField
from config.errors import TooLarge
from hosts.models import RATE_FIELDS
from jobs.models import (
    JOB_NAME_MAX_LENGTH,
    Job,
    JobInput,
    JobOutput,
    JobStatus,
    OutputLocation,
    ReleaseStatus,
)
from jobs.selectors import job_queue_position
from jobs.validation import JobSubmission, SubmittedFile
from marketplace.disk import DiskRequest
from marketplace.quote_apis import DiskInputSerializer, JobLimitsSerializer


class FileInputSerializer(serializers.Serializer[SubmittedFile]):
    path = serializers.CharField(max_length=255, trim_whitespace=False)
    content = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="text, UTF-8"
    )
    content_b64 = serializers.CharField(required=False, help_text="bytes, base64")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("content" in attrs) == ("content_b64" in attrs):
            raise serializers.ValidationError("give exactly one of content or content_b64")
        if "content" in attrs:
            attrs["raw"] = attrs["content"].encode()
        else:
            try:
                attrs["raw"] = base64.b64decode(attrs["content_b64"], validate=True)
            except (binascii.Error, ValueError):
                raise serializers.ValidationError({"content_b64": "not valid base64"}) from None
        return attrs


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string", "description": "requirements.txt lines"},
        ]
    }
)
class RequirementsField(serializers.Field[list[str], list[str] | str, list[str], Any]):
    """A list of lines, or one requirements.txt-style string (handy in multipart forms)."""

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):
            return data.splitlines()
        if isinstance(data, list) and all(isinstance(line, str) for line in data):
            return list(data)
        raise serializers.ValidationError("a list of requirement lines, or a string")

    def to_representation(self, value: list[str]) -> list[str]:
        return value


_INPUT_SCHEMA = {
    "type": "object",
    "required": ["path", "sha256"],
    "properties": {
        "path": {"type": "string", "description": "where it appears, under /inputs"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "url": {"type": "string", "description": "https only; absent: a blob you hold"},
        "size": {"type": "integer", "minimum": 0, "description": "bytes, with url"},
    },
    "additionalProperties": False,
}


@extend_schema_field({"type": "array", "items": _INPUT_SCHEMA})
class InputsField(serializers.Field[tuple[object, ...], Any, list[Any], Any]):
    """A list of input objects (or that list as a JSON string, for multipart forms); each is
    checked by ``jobs.inputs.inputs_check``, which names ``inputs[i].path`` and so on."""

    def to_internal_value(self, data: Any) -> tuple[object, ...]:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("not valid JSON") from None
        if not isinstance(data, list):
            raise serializers.ValidationError("a list of {path, sha256} or {path, url, sha256}")
        return tuple(data)

    def to_representation(self, value: Any) -> list[Any]:
        return list(value)


class JobCreateSerializer(JobLimitsSerializer):
    code = serializers.CharField(required=False, trim_whitespace=False, help_text="one file")
    files = FileInputSerializer(many=True, required=False)
    archive = serializers.FileField(required=False, help_text="a zip (multipart)")
    archive_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        help_text="a zip you hold (uploaded) as the job's code, with no size cap but /work's",
    )
    inputs = InputsField(required=False, default=tuple)
    disk = DiskInputSerializer(required=False)
    work_exec = serializers.BooleanField(
        required=False, help_text="allow running programs from /work (default false)"
    )
    entrypoint = serializers.CharField(required=False, max_length=255)
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=JOB_NAME_MAX_LENGTH,
        help_text="what to call the job (default: the entrypoint's file name)",
    )
    requirements = RequirementsField(required=False, default=list)
    max_cost_micros = MicrosField(min_value=1, help_text="the hard cost cap")
    host = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    placement = serializers.ChoiceField(choices=["auto", "chosen"], required=False)
    pool = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="run in this organisation's private pool (docs/pools.md)",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Every bad field at once (docs/api.md, Errors): DRF skips validate() when a field is
        # bad, so an empty body named only max_cost_micros; the checks across fields run on
        # what was sent, and their errors join the fields' own.
        try:
            attrs: dict[str, Any] = dict(super().to_internal_value(data))
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            given = data if hasattr(data, "get") else {}
            raise serializers.ValidationError({**_across_fields(given), **detail}) from None
        across = _across_fields(attrs)
        if across:
            raise serializers.ValidationError(dict(across))
        return attrs

    def submission(self) -> JobSubmission:
        data = self.validated_data
        archive = data.get("archive")
        if archive is not None and (archive.size or 0) > settings.JOB_ARCHIVE_MAX_BYTES:
            # Checked before reading it into memory; files_from_archive checks again.
            raise TooLarge(
                f"the archive is larger than {settings.JOB_ARCHIVE_MAX_BYTES} bytes",
                code="archive_too_large",
            )
        return JobSubmission(
            entrypoint=data.get("entrypoint"),
            requirements=data["requirements"],
            cpus=data["cpus"],
            memory_mb=data["memory_mb"],
            gpus=data["gpus"],
            timeout_seconds=data["timeout_seconds"],
            max_cost_micros=data["max_cost_micros"],
            host_id=data.get("host"),
            code=data.get("code"),
            files=tuple(SubmittedFile(f["path"], f["raw"]) for f in data.get("files", [])),
            archive=archive.read() if archive is not None else None,
            name=data.get("name") or None,
            inputs=data.get("inputs", ()),
            archive_sha256=data.get("archive_sha256"),
            disk=DiskRequest(**data.get("disk", {})),
            work_exec=data.get("work_exec", False),
            pool_id=data.get("pool"),
        )


def _across_fields(given: Any) -> dict[str, list[str]]:
    """The rules that involve several fields: placement against host, and one form of code."""
    problems: dict[str, list[str]] = {}
    host, placement = given.get("host"), given.get("placement")
    if host in (None, "") and placement != "auto":
        problems["placement"] = ['give a host, or placement: "auto"']
    elif host not in (None, "") and placement == "auto":
        problems["placement"] = ['a chosen host is not "auto"']
    forms = ("code", "files", "archive", "archive_sha256")
    if len([name for name in forms if given.get(name) not in (None, [])]) != 1:
        problems["code"] = ["give exactly one of code, files, archive or archive_sha256"]
    return problems


class JobInputSerializer(serializers.ModelSerializer[JobInput]):
    class Meta:
        model = JobInput
        fields = ["path", "sha256", "size", "source", "url"]
        read_only_fields = fields
        extra_kwargs = {"url": {"help_text": "the renter's URL; empty for a blob you hold"}}


class DiskOutputSerializer(serializers.Serializer[Job]):
    work_mb = serializers.IntegerField()
    outputs_mb = serializers.IntegerField()
    tmp_mb = serializers.IntegerField()


class JobSerializer(serializers.ModelSerializer[Job]):
    cpus = serializers.DecimalField(max_digits=6, decimal_places=2, coerce_to_string=False)
    cancel_requested = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField(
        help_text="A queued job's place in its queue (1 = offered next); null otherwise."
    )
    waiting_reason = serializers.SerializerMethodField(
        help_text="Why a queued job waits (what it waits for); empty otherwise."
    )
    host_isolation = serializers.SerializerMethodField(
        help_text='How the job\'s host (or chosen host) runs jobs: "docker" (isolated), "none" '
        "(without isolation: only its owner's jobs go there), or empty when not known yet."
    )
    inputs = JobInputSerializer(many=True, read_only=True)
    disk = DiskOutputSerializer(source="*", read_only=True)
    archive_sha256 = serializers.CharField(
        source="code_archive_sha256",
        read_only=True,
        help_text="the code archive's digest; empty for none",
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "status_reason",
            "queue_position",
            "waiting_reason",
            "attempt",
            "max_attempts",
            "placement",
            "requested_host",
            "host",
            "host_isolation",
            "entrypoint",
            "name",
            "requirements",
            "cpus",
            "memory_mb",
            "gpus",
            "timeout_seconds",
            "max_cost_micros",
            "cost_micros",
            *RATE_FIELDS,
            "allow_network",
            "inputs",
            "archive_sha256",
            "disk",
            "work_exec",
            "exit_code",
            "cancel_requested",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "group",
            "task_index",
            "pool",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "pool": {"help_text": "the private pool (organisation) it runs in; null: public"},
            "group": {"help_text": "the job group it is a task of (null: a job of its own)"},
            "task_index": {"help_text": "its index in that group (from 0)"},
        }

    def get_cancel_requested(self, job: Job) -> bool:
        return job.cancel_requested_at is not None

    def get_queue_position(self, job: Job) -> int | None:
        return job_queue_position(job)

    def get_waiting_reason(self, job: Job) -> str:
        return job.waiting_reason if job.status == JobStatus.QUEUED else ""

    def get_host_isolation(self, job: Job) -> Literal["docker", "none", ""]:
        host = job.host or job.requested_host
        return host.isolation if host is not None else ""  # type: ignore[return-value]


class LogPageSerializer(serializers.Serializer[object]):
    job_id = serializers.IntegerField()
    attempt = serializers.IntegerField(allow_null=True)
    offset = serializers.IntegerField(help_text="byte offset of the first byte in data")
    next_offset = serializers.IntegerField(help_text="pass this as ?offset= to read on")
    # Named like JobLog.data on the wire; DRF's metaclass moves declared fields off the class,
    # so this does not shadow Serializer.data at runtime.
    data = serializers.CharField(  # type: ignore[assignment]
        help_text="log text (a notice line first when truncated)"
    )
    truncated = serializers.BooleanField(help_text="bytes before offset were dropped")
    is_complete = serializers.BooleanField(help_text="the attempt ended and all is read")


class JobListQuery(serializers.Serializer[object]):
    status = serializers.CharField(
        required=False, help_text="only jobs in these statuses, comma-separated"
    )

    def validate_status(self, value: str) -> list[str]:
        wanted = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in wanted if item not in JobStatus.values]
        if unknown or not wanted:
            raise serializers.ValidationError(
                f"not a job status: {', '.join(unknown) or repr(value)}; "
                f"one of {', '.join(JobStatus.values)}"
            )
        return wanted


class LogQuerySerializer(serializers.Serializer[object]):
    offset = serializers.IntegerField(min_value=0, default=0)
    attempt = serializers.IntegerField(min_value=1, required=False)


class JobOutputSerializer(serializers.ModelSerializer[JobOutput]):
    attempt = serializers.IntegerField(source="attempt.number")
    location = serializers.ChoiceField(
        choices=OutputLocation.choices,
        help_text="central: downloadable; pool: kept on the pool's store until released",
    )
    release_status = serializers.ChoiceField(
        choices=ReleaseStatus.choices,
        help_text="For location pool: none, requested, approved, refused or released "
        "(downloadable only when released)",
    )
    release_note = serializers.CharField(help_text="The steward's note (or the policy's)")

    class Meta:
        model = JobOutput
        fields = [
            "name",
            "size",
            "sha256",
            "attempt",
            "uploaded_at",
            "location",
            "release_status",
            "release_note",
        ]
        read_only_fields = fields


class ReleaseDecisionInput(serializers.Serializer[object]):
    # Checked by the service after the caller's permission (a refusal reveals nothing first).
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="at most 2,000 characters; required when refusing",
    )


class ReleaseQuery(serializers.Serializer[object]):
    status = serializers.ChoiceField(
        choices=[status for status in ReleaseStatus.values if status != ReleaseStatus.NONE],
        required=False,
    )


class ReleaseOutput(serializers.ModelSerializer[JobOutput]):
    """An output of a pool job on its way out, as the pool's stewards see it."""

    job_id = serializers.IntegerField()
    attempt = serializers.IntegerField(source="attempt.number")
    status = serializers.ChoiceField(source="release_status", choices=ReleaseStatus.choices)
    owner = serializers.CharField(source="job.owner.username")
    requested_by = serializers.CharField(
        source="release_requested_by.username", allow_null=True, default=None
    )
    requested_at = serializers.DateTimeField(source="release_requested_at", allow_null=True)
    decided_by = serializers.CharField(
        source="release_decided_by.username", allow_null=True, default=None
    )
    decided_at = serializers.DateTimeField(source="release_decided_at", allow_null=True)
    note = serializers.CharField(source="release_note")

    class Meta:
        model = JobOutput
        fields = [
            "id",
            "job_id",
            "attempt",
            "name",
            "size",
            "sha256",
            "status",
            "owner",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "note",
            "released_at",
        ]
        read_only_fields = fields


class UsageLineOutput(serializers.Serializer[object]):
    resource = serializers.ChoiceField(choices=["cpu", "memory", "gpu"])
    quantity = serializers.CharField(
        help_text="Exact decimal: CPU time used; memory and GPUs reserved for the wall time."
    )
    unit = serializers.ChoiceField(choices=["core-second", "GB-second", "GPU-second"])
    rate_micros_per_hour = serializers.IntegerField(help_text="Per core-hour, GB-hour, GPU-hour.")


class AttemptReceiptOutput(serializers.Serializer[object]):
    attempt = serializers.IntegerField()
    host_id = serializers.IntegerField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    wall_seconds = serializers.CharField()
    memory_peak_mb = serializers.IntegerField()
    usage = UsageLineOutput(many=True)
    usage_cost_micros = serializers.IntegerField(
        help_text="What the reported usage costs at the rates, before the cap."
    )
    gross_micros = serializers.IntegerField(help_text="Charged from the hold.")
    fee_micros = serializers.IntegerField(help_text="Of the gross: the platform fee.")
    host_net_micros = serializers.IntegerField(help_text="Of the gross: the host's earnings.")
    reversed_micros = serializers.IntegerField(help_text="Gross given back (a lost attempt).")
    reversed_fee_micros = serializers.IntegerField()
    charged_micros = serializers.IntegerField(help_text="gross - reversed: what you pay.")


class ReceiptTotalsOutput(serializers.Serializer[object]):
    gross_micros = serializers.IntegerField()
    fee_micros = serializers.IntegerField()
    host_net_micros = serializers.IntegerField()
    reversed_micros = serializers.IntegerField()
    charged_micros = serializers.IntegerField()


class PaidByOutput(serializers.Serializer[object]):
    wallet = serializers.ChoiceField(choices=["user", "organisation"])
    organisation = serializers.IntegerField(allow_null=True)
    organisation_name = serializers.CharField(allow_null=True)


class ReceiptOutput(serializers.Serializer[object]):
    job_id = serializers.IntegerField()
    job_name = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    is_settled = serializers.BooleanField(help_text="The rest of the hold went back to the wallet.")
    max_cost_micros = serializers.IntegerField()
    attempts = AttemptReceiptOutput(many=True)
    totals = ReceiptTotalsOutput()
    hold_micros = serializers.IntegerField(help_text="Taken from the wallet at submit.")
    refund_micros = serializers.IntegerField(help_text="Returned to the wallet at the end.")
    held_micros = serializers.IntegerField(help_text="Still held (a job not settled yet).")
    spent_by = serializers.CharField(help_text="The username of the job's owner: who spent.")
    paid_by = PaidByOutput(
        help_text="The wallet the hold came from and the rest went back to: the owner's, or "
        "for a pool job the organisation's (docs/pools.md)."
    )


class UsageSampleOutput(serializers.Serializer[object]):
    at = serializers.DateTimeField(help_text="when the server accepted the report")
    cpu_seconds = serializers.DecimalField(
        max_digits=14, decimal_places=3, coerce_to_string=False, help_text="cumulative"
    )
    wall_seconds = serializers.DecimalField(
        max_digits=14, decimal_places=3, coerce_to_string=False, help_text="cumulative"
    )
    memory_current_mb = serializers.IntegerField()
    memory_peak_mb = serializers.IntegerField()
    cost_micros = serializers.IntegerField(
        help_text="What the attempt's usage so far costs at its rates (at most the job's cap)."
    )


class AttemptUsageOutput(serializers.Serializer[object]):
    attempt = serializers.IntegerField()
    host_id = serializers.IntegerField()
    host_name = serializers.CharField()
    status = serializers.CharField()
    report_count = serializers.IntegerField(help_text="reports stored; samples may be fewer")
    samples = UsageSampleOutput(many=True)


class TimelineEventOutput(serializers.Serializer[object]):
    at = serializers.DateTimeField()
    status = serializers.CharField(help_text="a job status, or an attempt's end (lost …)")
    attempt = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


class UsageHistoryOutput(serializers.Serializer[object]):
    job_id = serializers.IntegerField()
    attempts = AttemptUsageOutput(many=True)
    timeline = TimelineEventOutput(many=True)
