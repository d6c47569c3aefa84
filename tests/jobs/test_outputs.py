"""Outputs: the agent uploads with its host credential; only the owner lists and downloads."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.tokens import secret_issue
from hosts.models import HostCredential
from jobs.models import JobOutput
from tests.jobs.helpers import finished, say, submit

CONTENT = b"result,42\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def credential_for(host) -> str:
    issued = secret_issue("cph")
    HostCredential.objects.create(host=host, prefix=issued.prefix, digest=issued.digest)
    return issued.plaintext


@pytest.fixture
def ran(alice, make_host, hana, ledger, committed):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "a")
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )
    return job, host


def upload(api, job, secret, *, attempt=1, name="out/result.csv", content=CONTENT):
    return api.post(
        f"/api/v1/agent/jobs/{job.pk}/attempts/{attempt}/outputs/",
        {"name": name, "file": SimpleUploadedFile("f", content)},
        format="multipart",
        headers={"Authorization": f"Bearer {secret}"} if secret else {},
    )


def test_the_agent_uploads_a_declared_output_and_the_owner_downloads_it(
    ran, api, client_for, alice
):
    # given
    job, host = ran

    # when
    response = upload(api, job, credential_for(host))

    # then
    assert response.status_code == 201, response.data
    assert response.data["name"] == "out/result.csv"
    owner = client_for(alice)
    listing = owner.get(f"/api/v1/jobs/{job.pk}/outputs/")
    assert [(o["name"], o["size"], o["sha256"], o["attempt"]) for o in listing.data["results"]] == [
        ("out/result.csv", len(CONTENT), SHA, 1)
    ]
    download = owner.get(f"/api/v1/jobs/{job.pk}/outputs/out/result.csv")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == CONTENT
    assert download["Content-Disposition"] == 'attachment; filename="result.csv"'


def test_a_repeated_upload_is_a_no_op(ran, api):
    job, host = ran
    secret = credential_for(host)
    first, second = upload(api, job, secret), upload(api, job, secret)
    assert (first.status_code, second.status_code) == (201, 201)
    assert JobOutput.objects.count() == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"tampered\n"}, 400, "output_mismatch"),
        ({"name": "../../etc/passwd"}, 400, "invalid_path"),
        ({"attempt": 2}, 404, "not_found"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(ran, api, kwargs, status, code):
    job, host = ran
    response = upload(api, job, credential_for(host), **kwargs)
    assert (response.status_code, response.data["error"]["code"]) == (status, code)
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_an_output_over_the_cap_is_413(ran, api, settings):
    settings.JOB_OUTPUT_MAX_BYTES = 5
    job, host = ran
    response = upload(api, job, credential_for(host))
    assert (response.status_code, response.data["error"]["code"]) == (413, "too_large")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_another_host_cannot_upload_for_this_attempt(ran, api, make_host, hana):
    # given
    job, _ = ran
    other = make_host(hana, "b")

    # when
    response = upload(api, job, credential_for(other))

    # then
    assert (response.status_code, response.data["error"]["code"]) == (404, "not_found")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


@pytest.mark.parametrize("secret", [None, "cph_not-a-real-credential-at-all-000000000000000"])
def test_uploads_need_a_valid_host_credential(ran, api, secret):
    job, _ = ran
    response = upload(api, job, secret)
    assert response.status_code == 401
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_a_revoked_credential_is_refused(ran, api):
    job, host = ran
    secret = credential_for(host)
    HostCredential.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert upload(api, job, secret).status_code == 401


def test_a_person_token_cannot_upload(ran, client_for, alice):
    job, _ = ran
    response = client_for(alice).post(
        f"/api/v1/agent/jobs/{job.pk}/attempts/1/outputs/",
        {"name": "x", "file": SimpleUploadedFile("f", b"x")},
        format="multipart",
    )
    assert response.status_code == 403
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0


def test_an_undeclared_output_is_refused_and_stores_nothing(ran, api):
    # given job.finished declared only out/result.csv
    job, host = ran

    # when the host uploads another file
    response = upload(api, job, credential_for(host), name="out/extra.csv")

    # then
    assert (response.status_code, response.data["error"]["code"]) == (400, "undeclared_output")
    assert response.data["error"]["fields"] == {"name": ["Not declared in job.finished."]}
    assert list(JobOutput.objects.values_list("name", "uploaded_at")) == [("out/result.csv", None)]


def test_a_live_upload_that_job_finished_does_not_declare_is_discarded(
    alice, make_host, hana, ledger, committed, api
):
    # given a running attempt uploads two files (the agent uploads, then sends job.finished)
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "live")
    secret = credential_for(host)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    kept = upload(api, job, secret)
    extra = upload(api, job, secret, name="out/extra.csv", content=b"smuggled")
    stored_extra = JobOutput.objects.get(name="out/extra.csv").file.name

    # when job.finished declares only the first
    with committed():
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )
    late_extra = upload(api, job, secret, name="out/extra.csv", content=b"smuggled")

    # then the renter sees only the declared one; the other file is gone
    assert (kept.status_code, extra.status_code) == (201, 201)
    assert (late_extra.status_code, late_extra.data["error"]["code"]) == (400, "undeclared_output")
    assert list(JobOutput.objects.values_list("name", flat=True)) == ["out/result.csv"]
    assert not default_storage.exists(stored_extra)


def test_a_live_upload_declared_with_other_content_is_replaced_by_the_declaration(
    alice, make_host, hana, ledger, committed, api
):
    ledger.fund(alice, 5_000_000)
    host = make_host(hana, "live")
    secret = credential_for(host)
    with committed():
        job = submit(alice)
        say(host, "job.accept", job_id=job.pk, attempt=1)
        say(host, "job.started", job_id=job.pk, attempt=1, phase="running")
    assert upload(api, job, secret, content=b"something else").status_code == 201

    with committed():
        say(
            host,
            "job.finished",
            **finished(
                job, 1, outputs=[{"name": "out/result.csv", "size": len(CONTENT), "sha256": SHA}]
            ),
        )

    output = JobOutput.objects.get()
    assert (output.size, output.sha256, output.uploaded_at) == (len(CONTENT), SHA, None)
    assert upload(api, job, secret).status_code == 201


def test_a_late_upload_is_refused_and_stores_nothing(ran, api, settings):
    # given the attempt finished just over JOB_LATE_UPLOAD_SECONDS ago
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = ran
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=61)
    attempt.save(update_fields=["finished_at"])

    # when
    response = upload(api, job, credential_for(host))

    # then
    assert (response.status_code, response.data["error"]["code"]) == (409, "upload_window_closed")
    assert JobOutput.objects.filter(uploaded_at__isnull=False).count() == 0
    assert (
        not default_storage.exists("job-outputs") or default_storage.listdir("job-outputs")[1] == []
    )


def test_an_upload_inside_the_window_is_taken(ran, api, settings):
    settings.JOB_LATE_UPLOAD_SECONDS = 60
    job, host = ran
    attempt = job.attempts.get(number=1)
    attempt.finished_at = timezone.now() - timedelta(seconds=50)
    attempt.save(update_fields=["finished_at"])

    response = upload(api, job, credential_for(host))

    assert response.status_code == 201
    assert JobOutput.objects.get().uploaded_at is not None
