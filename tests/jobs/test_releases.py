"""Outputs kept on the pool's store leave only when released (docs/pools.md): the state
machine, the audit trail's steps, the permission matrix of every new endpoint, the release's
upload checked against the job's digest, and logs kept off the server."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Membership, MembershipRole, Organisation, PoolLogs, User
from blobs.models import Blob, BlobHolding, Upload
from hosts.models import Host, HostStatus, HostVisibility
from jobs.audit_models import AuditKind, PoolAuditEvent
from jobs.models import JobLogChunk, JobOutput, ReleaseStatus
from jobs.services.releases import POLICY_NOTE
from jobs.tasks import jobs_reap_pass
from tests.conftest import _user
from tests.jobs.helpers import finished, say, submit
from tests.jobs.real_ledger import RealLedger
from tests.jobs.test_outputs import agent_tus, credential_for, upload

RESULT = b"patients,42\n"
SUMMARY = b"mean,3.5\n"
STORE = {
    "endpoint_url": "http://127.0.0.1:5077",
    "bucket": "st-marys-outputs",
    "prefix": "cp/",
    "region": "",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kept(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "size": len(data), "sha256": sha(data), "location": "pool"}


class Pool:
    """St Mary's: alice (a member who runs jobs), sam (a data steward), ada (an admin, no
    steward), bob (a member), mallory outside it; hana's pool host."""

    def __init__(self, make_host: Any, hana: User, alice: User, mallory: User) -> None:
        self.org = Organisation.objects.create(
            name="St Mary's", pool_output_store=STORE, pool_airlock=True
        )
        RealLedger().fund_organisation(self.org, 50_000_000)  # it pays for its pool jobs
        self.alice, self.mallory = alice, mallory
        self.sam, self.ada, self.bob = _user("sam"), _user("ada"), _user("bob")
        Membership.objects.create(user=alice, organisation=self.org)
        Membership.objects.create(user=self.sam, organisation=self.org, is_steward=True)
        Membership.objects.create(user=self.ada, organisation=self.org, role=MembershipRole.ADMIN)
        Membership.objects.create(user=self.bob, organisation=self.org)
        Membership.objects.create(user=hana, organisation=self.org, role=MembershipRole.ADMIN)
        self.host: Host = make_host(
            hana, "ward-7", visibility=HostVisibility.PRIVATE, organisation=self.org
        )

    def run(self, owner: User | None = None, outputs: list[dict[str, Any]] | None = None) -> Any:
        job = submit(owner or self.alice, host=self.host, pool_id=self.org.pk)
        say(self.host, "job.accept", job_id=job.pk, attempt=1)
        say(self.host, "job.started", job_id=job.pk, attempt=1, phase="running")
        if outputs is None:
            outputs = [kept("result.csv", RESULT), kept("summary.csv", SUMMARY)]
        say(self.host, "job.finished", **finished(job, 1, outputs=outputs, log_bytes=120))
        return job

    def output(self, job: Any, name: str = "result.csv") -> JobOutput:
        return JobOutput.objects.get(job=job, name=name)


@pytest.fixture
def pool(make_host, hana, alice, mallory, ledger, committed, wire) -> Pool:
    ledger.fund(alice, 5_000_000)
    made = Pool(make_host, hana, alice, mallory)
    ledger.fund(made.sam, 5_000_000)
    return made


def audit_kinds(org: Organisation) -> list[str]:
    """The trail's entries about outputs (it holds the jobs' own entries too)."""
    events = org.audit_events.filter(kind__startswith="output.").order_by("id")
    return list(events.values_list("kind", flat=True))


def release_path(job: Any, name: str = "result.csv") -> str:
    return f"/api/v1/jobs/{job.pk}/outputs/{name}/release/"


def decide_path(pool: Pool, output: JobOutput, decision: str) -> str:
    return f"/api/v1/organisations/{pool.org.pk}/releases/{output.pk}/{decision}/"


def snapshot(output: JobOutput) -> tuple[Any, ...]:
    output.refresh_from_db()
    return (
        output.release_status,
        output.release_decided_by_id,
        output.release_note,
        output.release_host_id,
        PoolAuditEvent.objects.count(),
        Upload.objects.count(),
    )


# --- kept on the pool's store ---------------------------------------------------------------


def test_a_pool_jobs_outputs_are_recorded_as_kept_and_audited_but_not_downloadable(
    pool, client_for
):
    # when
    with_job = pool.run()

    # then
    output = pool.output(with_job)
    assert (output.location, output.store_key, output.blob_id) == (
        "pool",
        f"cp/jobs/{with_job.pk}/1/outputs/result.csv",
        None,
    )
    assert audit_kinds(pool.org) == ["output.kept", "output.kept"]
    event = pool.org.audit_events.filter(kind="output.kept").order_by("id").first()
    assert (event.job_id, event.host_id, event.detail["sha256"]) == (
        with_job.pk,
        pool.host.pk,
        sha(RESULT),
    )
    owner = client_for(pool.alice)
    listing = owner.get(f"/api/v1/jobs/{with_job.pk}/outputs/").json()["results"]
    assert [(o["name"], o["location"], o["release_status"]) for o in listing] == [
        ("result.csv", "pool", "none"),
        ("summary.csv", "pool", "none"),
    ]
    download = owner.get(f"/api/v1/jobs/{with_job.pk}/outputs/result.csv")
    assert download.status_code == 409
    assert download.json()["error"]["code"] == "output_not_released"
    assert download.json()["error"]["fields"] == {"release_status": ["none"]}


def test_a_pool_job_output_declared_central_or_an_upload_to_the_central_store_is_refused(pool, api):
    # given an agent that says it uploaded one output centrally
    job = pool.run(
        outputs=[kept("result.csv", RESULT), {**kept("leak.csv", RESULT)} | {"location": "central"}]
    )

    # when it uploads the bytes to the central store anyway
    response = upload(api, job, credential_for(pool.host), name="leak.csv", content=RESULT)

    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "output_kept_on_pool_store"
    assert list(JobOutput.objects.values_list("name", flat=True)) == ["result.csv"]
    assert (Upload.objects.count(), Blob.objects.count(), BlobHolding.objects.count()) == (0, 0, 0)


# --- the renter's request ---------------------------------------------------------------


def test_with_the_airlock_a_request_waits_for_a_steward_and_a_repeat_changes_nothing(
    pool, client_for, wire
):
    job = pool.run()
    owner = client_for(pool.alice)

    first = owner.post(release_path(job))
    second = owner.post(release_path(job))

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["release_status"] == "requested"
    output = pool.output(job)
    assert (output.release_requested_by, output.release_decided_by) == (pool.alice, None)
    assert audit_kinds(pool.org)[2:] == ["output.release_requested"]
    assert wire.to(pool.host.pk, "output.release") == []
    download = owner.get(f"/api/v1/jobs/{job.pk}/outputs/result.csv")
    assert download.json()["error"]["fields"] == {"release_status": ["requested"]}


def test_without_the_airlock_a_request_is_approved_by_policy_and_sent_to_a_pool_host(
    pool, client_for, wire, committed
):
    # given
    Organisation.objects.filter(pk=pool.org.pk).update(pool_airlock=False)
    job = pool.run()

    # when
    with committed():
        response = client_for(pool.alice).post(release_path(job))

    # then
    assert response.status_code == 200, response.content
    output = pool.output(job)
    assert (output.release_status, output.release_decided_by, output.release_note) == (
        "approved",
        None,
        POLICY_NOTE,
    )
    assert output.release_host_id == pool.host.pk
    event = pool.org.audit_events.filter(kind__startswith="output.").order_by("-id").first()
    assert (event.kind, event.actor, event.detail["note"]) == (
        "output.release_approved",
        pool.alice,
        POLICY_NOTE,
    )
    [sent] = wire.to(pool.host.pk, "output.release")
    assert sent == {
        "release_id": output.pk,
        "job_id": job.pk,
        "attempt": 1,
        "name": "result.csv",
        "size": len(RESULT),
        "sha256": sha(RESULT),
        "pool_id": pool.org.pk,
        "store": STORE,
        "key": f"cp/jobs/{job.pk}/1/outputs/result.csv",
    }


def test_only_the_owner_asks_and_only_for_an_output_kept_on_the_pool(
    pool, client_for, api, alice, make_host, hana
):
    job = pool.run()
    before = snapshot(pool.output(job))
    for user in (pool.sam, pool.ada, pool.bob, pool.mallory):
        response = client_for(user).post(release_path(job))
        assert response.status_code == 404, user
    assert api.post(release_path(job)).status_code in (401, 403)
    assert client_for(alice).post(release_path(job, "nope.csv")).status_code == 404
    assert snapshot(pool.output(job)) == before
    # a public job's output lives on the central store: nothing to release
    public = submit(alice, host=make_host(hana, "public"))
    JobOutput.objects.create(
        job=public,
        attempt=public.attempts.get(),
        name="a.txt",
        size=1,
        sha256="a" * 64,
        uploaded_at=timezone.now(),
    )
    refused = client_for(alice).post(release_path(public, "a.txt"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "output_not_kept")


# --- the stewards -------------------------------------------------------------------------


def test_the_releases_list_is_for_stewards_and_admins(pool, client_for, api):
    job = pool.run()
    client_for(pool.alice).post(release_path(job))
    path = f"/api/v1/organisations/{pool.org.pk}/releases/?status=requested"

    answers = {
        name: client_for(user).get(path).status_code
        for name, user in [
            ("steward", pool.sam),
            ("admin", pool.ada),
            ("member", pool.bob),
            ("owner", pool.alice),
            ("outsider", pool.mallory),
        ]
    }
    answers["anonymous"] = api.get(path).status_code

    assert answers == {
        "steward": 200,
        "admin": 200,
        "member": 403,
        "owner": 403,
        "outsider": 404,
        "anonymous": 401,
    }
    [row] = client_for(pool.sam).get(path).json()["results"]
    assert (row["id"], row["name"], row["status"], row["owner"], row["requested_by"]) == (
        pool.output(job).pk,
        "result.csv",
        "requested",
        "alice",
        "alice",
    )
    assert client_for(pool.sam).get(f"{path[:-9]}approved").json()["count"] == 0
    bad = client_for(pool.sam).get(f"{path[:-9]}nonsense")
    assert (bad.status_code, list(bad.json()["error"]["fields"])) == (400, ["status"])


def test_only_a_steward_who_is_not_the_owner_decides_and_each_refusal_changes_nothing(
    pool, client_for, api, wire
):
    # given a request of alice's and one of sam's own job
    job = pool.run()
    client_for(pool.alice).post(release_path(job))
    output = pool.output(job)
    own_job = pool.run(owner=pool.sam)
    client_for(pool.sam).post(release_path(own_job))
    own = pool.output(own_job)
    before, own_before = snapshot(output), snapshot(own)

    # when everyone but a steward tries, and sam on his own job's output
    answers = {}
    for name, user in [("admin", pool.ada), ("member", pool.bob), ("owner", pool.alice)]:
        answers[name] = client_for(user).post(decide_path(pool, output, "approve"), {})
    answers["outsider"] = client_for(pool.mallory).post(decide_path(pool, output, "approve"), {})
    answers["anonymous"] = api.post(decide_path(pool, output, "approve"), {})
    answers["own"] = client_for(pool.sam).post(decide_path(pool, own, "approve"), {})

    # then
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "admin": 403,
        "member": 403,
        "owner": 403,
        "outsider": 404,
        "anonymous": 401,
        "own": 403,
    }
    assert answers["own"].json()["error"]["code"] == "own_output"
    assert (snapshot(output), snapshot(own)) == (before, own_before)
    assert wire.to(pool.host.pk, "output.release") == []


def test_a_steward_refuses_with_a_note_and_the_output_is_never_released(pool, client_for):
    job = pool.run()
    client_for(pool.alice).post(release_path(job))
    output = pool.output(job)
    steward = client_for(pool.sam)
    before = snapshot(output)

    no_note = steward.post(decide_path(pool, output, "refuse"), {"note": "  "}, format="json")
    too_long = steward.post(decide_path(pool, output, "refuse"), {"note": "x" * 2001})
    assert (no_note.status_code, list(no_note.json()["error"]["fields"])) == (400, ["note"])
    assert (too_long.status_code, list(too_long.json()["error"]["fields"])) == (400, ["note"])
    assert snapshot(output) == before

    refused = steward.post(
        decide_path(pool, output, "refuse"), {"note": "row-level data"}, format="json"
    )

    assert refused.status_code == 200, refused.content
    assert (refused.json()["status"], refused.json()["decided_by"]) == ("refused", "sam")
    event = pool.org.audit_events.filter(kind__startswith="output.").order_by("-id").first()
    assert (event.kind, event.actor, event.detail["note"]) == (
        "output.release_refused",
        pool.sam,
        "row-level data",
    )
    owner = client_for(pool.alice)
    assert owner.get(f"/api/v1/jobs/{job.pk}/outputs/result.csv").json()["error"]["fields"] == {
        "release_status": ["refused"]
    }
    again = owner.post(release_path(job))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "release_refused")
    late = steward.post(decide_path(pool, output, "approve"), {})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "release_not_requested")
    assert audit_kinds(pool.org).count("output.release_refused") == 1


# --- carrying the bytes -------------------------------------------------------------------


def approved(pool: Pool, client_for: Any, committed: Any, name: str = "result.csv") -> Any:
    job = pool.run()
    client_for(pool.alice).post(release_path(job, name))
    with committed():
        answer = client_for(pool.sam).post(
            decide_path(pool, pool.output(job, name), "approve"), {"note": "aggregate only"}
        )
    assert answer.status_code == 200, answer.content
    return job


def release_upload(api: Any, secret: str, output: JobOutput, data: bytes, **metadata: str) -> Any:
    tus = agent_tus(api, secret)
    created = tus.create(
        len(data),
        release=str(output.pk),
        name=metadata.get("name", output.name),
        sha256=metadata.get("sha256", output.sha256),
    )
    if created.status_code != 201 or created["Upload-Offset"] == str(len(data)):
        return created
    return tus.patch(created["Location"], 0, data)


def test_an_approved_output_carried_by_its_pool_host_is_released_and_downloadable(
    pool, client_for, committed, api, wire
):
    # given
    job = approved(pool, client_for, committed)
    output = pool.output(job)
    [sent] = wire.to(pool.host.pk, "output.release")
    assert sent["release_id"] == output.pk

    # when the host uploads the bytes it read from the pool's store
    answer = release_upload(api, credential_for(pool.host), output, RESULT)

    # then
    assert answer.status_code == 204, answer.content
    output.refresh_from_db()
    assert (output.release_status, output.blob.sha256) == ("released", sha(RESULT))
    assert BlobHolding.objects.get().user == pool.alice
    download = client_for(pool.alice).get(f"/api/v1/jobs/{job.pk}/outputs/result.csv")
    assert (download.status_code, b"".join(download.streaming_content)) == (200, RESULT)
    event = pool.org.audit_events.filter(kind__startswith="output.").order_by("-id").first()
    assert (event.kind, event.actor, event.host_id) == ("output.released", None, pool.host.pk)
    # the other output was never asked for: still not downloadable
    other = client_for(pool.alice).get(f"/api/v1/jobs/{job.pk}/outputs/summary.csv")
    assert other.status_code == 409


def test_bytes_other_than_the_jobs_leave_the_output_unreleased(pool, client_for, committed, api):
    job = approved(pool, client_for, committed)
    output = pool.output(job)
    secret = credential_for(pool.host)
    forged = b"patients,43\n"  # the same length, other bytes

    lying_metadata = release_upload(api, secret, output, forged, sha256=sha(forged))
    lying_bytes = release_upload(api, secret, output, forged)

    assert (lying_metadata.status_code, lying_metadata.json()["error"]["code"]) == (
        400,
        "output_mismatch",
    )
    assert (lying_bytes.status_code, lying_bytes.json()["error"]["code"]) == (
        400,
        "digest_mismatch",
    )
    output.refresh_from_db()
    assert (output.release_status, output.blob_id) == ("approved", None)
    assert (Blob.objects.count(), BlobHolding.objects.count()) == (0, 0)
    assert "output.released" not in audit_kinds(pool.org)
    download = client_for(pool.alice).get(f"/api/v1/jobs/{job.pk}/outputs/result.csv")
    assert download.json()["error"]["fields"] == {"release_status": ["approved"]}


def test_only_the_host_the_release_was_sent_to_may_carry_it(
    pool, client_for, committed, api, make_host, hana
):
    job = approved(pool, client_for, committed)
    output = pool.output(job)
    stranger = make_host(hana, "public-box")
    other_pool_host = make_host(
        hana, "ward-8", visibility=HostVisibility.PRIVATE, organisation=pool.org
    )

    for host in (stranger, other_pool_host):
        answer = release_upload(api, credential_for(host), output, RESULT)
        assert answer.status_code == 404, host.name

    output.refresh_from_db()
    assert (output.release_status, Upload.objects.count()) == ("approved", 0)


def test_with_no_pool_host_online_an_approved_release_waits_and_the_reaper_sends_it_later(
    pool, client_for, committed, wire, settings
):
    # given the pool's host went offline before the approval
    job = pool.run()
    client_for(pool.alice).post(release_path(job))
    Host.objects.filter(pk=pool.host.pk).update(status=HostStatus.OFFLINE)
    with committed():
        client_for(pool.sam).post(decide_path(pool, pool.output(job), "approve"), {})
    output = pool.output(job)
    assert (output.release_status, output.release_sent_at) == ("approved", None)
    with committed():
        assert jobs_reap_pass().releases_sent == 0
    assert wire.to(pool.host.pk, "output.release") == []

    # when it is back, and later still nothing came
    Host.objects.filter(pk=pool.host.pk).update(status=HostStatus.ONLINE)
    with committed():
        first = jobs_reap_pass().releases_sent
    with committed():
        too_soon = jobs_reap_pass().releases_sent
    JobOutput.objects.filter(pk=output.pk).update(
        release_sent_at=timezone.now() - timedelta(seconds=settings.JOB_RELEASE_RESEND_SECONDS + 1)
    )
    with committed():
        again = jobs_reap_pass().releases_sent

    # then
    assert (first, too_soon, again) == (1, 0, 1)
    assert len(wire.to(pool.host.pk, "output.release")) == 2


def test_the_reaper_asks_the_next_pool_host_in_turn(
    pool, client_for, committed, wire, settings, make_host, hana
):
    second = make_host(hana, "ward-8", visibility=HostVisibility.PRIVATE, organisation=pool.org)
    job = approved(pool, client_for, committed)
    output = pool.output(job)
    assert output.release_host_id == pool.host.pk  # the host that ran it first
    JobOutput.objects.filter(pk=output.pk).update(
        release_sent_at=timezone.now() - timedelta(seconds=settings.JOB_RELEASE_RESEND_SECONDS + 1)
    )

    with committed():
        jobs_reap_pass()

    output.refresh_from_db()
    assert output.release_host_id == second.pk
    assert len(wire.to(second.pk, "output.release")) == 1


# --- logs kept off the server -------------------------------------------------------------


@pytest.mark.parametrize("mode", [PoolLogs.STORE, PoolLogs.REDACTED])
def test_a_pool_that_keeps_its_logs_gets_no_log_bytes_and_the_renter_is_told_why(
    pool, client_for, mode
):
    # given
    Organisation.objects.filter(pk=pool.org.pk).update(pool_logs=mode)
    job = submit(pool.alice, host=pool.host, pool_id=pool.org.pk)
    say(pool.host, "job.accept", job_id=job.pk, attempt=1)
    say(pool.host, "job.started", job_id=job.pk, attempt=1, phase="running")

    # when an agent sends log bytes anyway, then finishes declaring the log's size
    replies = say(pool.host, "job.log", job_id=job.pk, attempt=1, offset=0, data="secret\n")
    say(pool.host, "job.finished", **finished(job, 1, log_bytes=7))

    # then
    assert [(kind, data["code"]) for kind, data in replies] == [("error", "log_not_kept")]
    assert JobLogChunk.objects.filter(attempt__job=job).count() == 0
    answer = client_for(pool.alice).get(f"/api/v1/jobs/{job.pk}/logs/")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert (error["code"], error["fields"]) == ("log_not_kept", {"logs": [str(mode)]})
    assert "7 bytes" in error["message"]


def test_the_release_state_machine_allows_only_its_steps(pool):
    from config.errors import Conflict
    from jobs.services.releases import _release_step

    job = pool.run()
    output = pool.output(job)
    for target in (ReleaseStatus.REFUSED, ReleaseStatus.RELEASED, ReleaseStatus.NONE):
        with pytest.raises(Conflict):
            _release_step(output, target, actor=None, now=timezone.now())
    assert (pool.output(job).release_status, audit_kinds(pool.org).count("output.kept")) == (
        "none",
        2,
    )
    assert AuditKind.OUTPUT_RELEASED not in audit_kinds(pool.org)


def test_an_airlock_pool_without_a_store_holds_central_outputs_until_a_steward_approves(
    pool, client_for, committed, api, wire
):
    # given: the pool has the airlock but keeps no store; the agent uploads as for any job
    Organisation.objects.filter(pk=pool.org.pk).update(pool_output_store={})
    central = [{"name": "result.csv", "size": len(RESULT), "sha256": sha(RESULT)}]
    job = pool.run(outputs=central)
    sent = upload(api, job, credential_for(pool.host), name="result.csv", content=RESULT)
    assert sent.status_code == 204, sent.content
    owner = client_for(pool.alice)
    held = owner.get(f"/api/v1/jobs/{job.pk}/outputs/result.csv")
    assert (held.status_code, held.json()["error"]["fields"]) == (
        409,
        {"release_status": ["none"]},
    )

    # when
    owner.post(release_path(job))
    with committed():
        approval = client_for(pool.sam).post(decide_path(pool, pool.output(job), "approve"), {})

    # then: released at once, nothing to carry
    assert (approval.status_code, approval.json()["status"]) == (200, "released")
    assert wire.to(pool.host.pk, "output.release") == []
    download = owner.get(f"/api/v1/jobs/{job.pk}/outputs/result.csv")
    assert (download.status_code, b"".join(download.streaming_content)) == (200, RESULT)
    assert audit_kinds(pool.org) == [
        "output.release_requested",
        "output.release_approved",
        "output.released",
    ]


def test_a_host_that_left_the_pool_no_longer_carries_its_release(pool, client_for, committed, api):
    job = approved(pool, client_for, committed)
    output = pool.output(job)
    Host.objects.filter(pk=pool.host.pk).update(organisation=None, visibility=HostVisibility.PUBLIC)

    answer = release_upload(api, credential_for(pool.host), output, RESULT)

    assert answer.status_code == 404
    output.refresh_from_db()
    assert (output.release_status, output.blob_id, Upload.objects.count()) == ("approved", None, 0)
