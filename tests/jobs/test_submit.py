"""POST /api/v1/jobs/ and POST /api/v1/quotes/: validation at the edge, the hold, the offer."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from accounts.models import IdempotencyRecord, Organisation
from config.transactions import durable_call
from jobs.models import Job, JobFile
from ledger.services import hold_place
from tests.jobs.conftest import Wire
from tests.jobs.helpers import body, submit

JOBS = "/api/v1/jobs/"
FUNDS = 5_000_000


@pytest.fixture
def box(make_host, hana):
    return make_host(hana, "box")


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


def test_submit_holds_the_cap_queues_and_offers_the_job(
    client_for, alice, box, funded, wire: Wire, committed, settings
):
    # when
    with committed():
        response = client_for(alice).post(JOBS, body(requirements=["requests>=2"]), format="json")

    # then
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    assert response.data["id"] == job.pk
    assert (response.data["status"], response.data["attempt"], response.data["host"]) == (
        "offered",
        1,
        box.pk,
    )
    assert funded.wallets[alice.pk] == FUNDS - 1_000_000
    assert funded.escrow[job.pk] == 1_000_000
    [offer] = wire.to(box.pk, "job.offer")
    attempt = job.attempts.get()
    assert offer == {
        "job_id": job.pk,
        "attempt": 1,
        "offer_expires_at": attempt.offer_expires_at.isoformat(),
        "entrypoint": "main.py",
        "files": [{"path": "main.py", "content_b64": base64.b64encode(b"print('hello')").decode()}],
        "requirements": ["requests>=2"],
        "limits": {
            "cpus": 1.0,
            "memory_mb": 1024,
            "gpus": 0,
            "timeout_seconds": 600,
            "allow_network": False,
        },
        "rates": {
            "cpu_core_hour_micros": 100_000,
            "memory_gb_hour_micros": 10_000,
            "gpu_hour_micros": 0,
        },
        "max_cost_micros": 1_000_000,
        "charged_micros": 0,
        "inputs": [],
        "disk": {"work_mb": 1024, "outputs_mb": 1024, "tmp_mb": 256, "work_exec": False},
    }
    assert (attempt.offer_expires_at - attempt.offered_at).total_seconds() == pytest.approx(
        settings.JOB_OFFER_TTL_SECONDS, abs=1
    )


def test_the_offer_is_sent_only_after_commit(
    client_for, alice, box, funded, wire: Wire, django_capture_on_commit_callbacks
):
    # when: the request's transactions commit only at the end of the capture block
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client_for(alice).post(JOBS, body(), format="json")

    # then
    assert wire.sent == []
    for callback in callbacks:
        callback()
    assert [kind for _, kind, _ in wire.sent] == ["job.offer"]


def test_several_files_with_base64_and_an_entrypoint(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(
        JOBS,
        body(
            code=None,
            entrypoint="src/run.py",
            files=[
                {"path": "src/run.py", "content": "import lib"},
                {"path": "src/lib.py", "content": ""},
                {"path": "data.bin", "content_b64": base64.b64encode(b"\x00\xff").decode()},
            ],
        ),
        format="json",
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["entrypoint"] == "src/run.py"
    stored = {f.path: bytes(f.content) for f in JobFile.objects.all()}
    assert stored == {"src/run.py": b"import lib", "src/lib.py": b"", "data.bin": b"\x00\xff"}


def test_a_zip_upload_in_multipart(client_for, alice, box, funded):
    # given
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app/main.py", "print(1)")
    buffer.seek(0)
    buffer.name = "code.zip"

    # when
    response = client_for(alice).post(
        JOBS,
        {
            "archive": buffer,
            "entrypoint": "app/main.py",
            "requirements": "requests\nrich==13.0\n",
            "placement": "auto",
            "max_cost_micros": 1_000_000,
        },
        format="multipart",
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["requirements"] == ["requests", "rich==13.0"]
    assert [f.path for f in JobFile.objects.all()] == ["app/main.py"]


def _slip_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "")
        archive.writestr("../../etc/cron.d/evil", "x")
    buffer.seek(0)
    buffer.name = "evil.zip"
    return buffer


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        (
            {"requirements": ["numpy", "--index-url https://evil.example"]},
            400,
            "invalid_requirement",
        ),
        ({"requirements": ["git+https://evil.example/x.git"]}, 400, "invalid_requirement"),
        ({"code": None, "files": [{"path": "../x.py", "content": ""}]}, 400, "invalid_path"),
        ({"code": "x" * 200_000}, 413, "code_too_large"),
        (
            {
                "code": None,
                "entrypoint": "main.py",
                "files": [
                    {"path": "main.py", "content": ""},
                    {"path": "data.txt", "content": "x" * 200_000},
                ],
            },
            413,
            "file_too_large",
        ),
        ({"entrypoint": "notes.txt"}, 400, "invalid_entrypoint"),
        ({"placement": None}, 400, "invalid"),
        ({"cpus": 0}, 400, "invalid"),
        ({"cpus": 9}, 409, "no_host_fits"),
        ({"timeout_seconds": 100_000}, 409, "no_host_fits"),
        ({"max_cost_micros": 1_833}, 400, "cap_too_low"),
    ],
)
def test_refusals_create_nothing_and_hold_nothing(
    client_for, alice, box, funded, wire: Wire, overrides, status, code
):
    # when
    response = client_for(alice).post(JOBS, body(**overrides), format="json")

    # then
    assert response.status_code == status, response.data
    assert response.data["error"]["code"] == code
    assert (Job.objects.count(), JobFile.objects.count()) == (0, 0)
    assert funded.wallets[alice.pk] == FUNDS
    assert funded.keys == []
    assert wire.sent == []


def test_a_refused_requirement_is_named_in_the_error(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(JOBS, body(requirements=["numpy", "-e ./src"]), format="json")

    # then
    assert response.status_code == 400
    assert response.data["error"]["message"] == (
        "requirement line 2 ('-e ./src') pip options (such as --index-url or -e) are not allowed"
    )
    assert response.data["error"]["fields"] == {
        "requirements": [
            "line 2: '-e ./src' pip options (such as --index-url or -e) are not allowed"
        ]
    }


def test_a_zip_slip_archive_is_refused(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(
        JOBS,
        {"archive": _slip_zip(), "placement": "auto", "max_cost_micros": 1_000_000},
        format="multipart",
    )

    # then
    assert response.status_code == 400
    assert response.data["error"]["code"] == "invalid_path"
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_a_wallet_that_cannot_cover_the_cap_gets_402_and_nothing_is_created(
    client_for, alice, box, ledger, wire: Wire
):
    # given
    ledger.fund(alice, 999_999)

    # when
    response = client_for(alice).post(JOBS, body(), format="json")

    # then
    assert response.status_code == 402
    assert response.data["error"]["code"] == "insufficient_credits"
    assert (Job.objects.count(), JobFile.objects.count()) == (0, 0)
    assert ledger.wallets[alice.pk] == 999_999
    assert wire.sent == []


def test_an_error_after_the_hold_leaves_nothing(alice, box, funded, monkeypatch):
    # given: the hold is written, then the database fails the next statement
    def held_then_failed(**kwargs):
        hold_place(**kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("jobs.billing.hold_place", held_then_failed)

    # when
    with pytest.raises(OperationalError):
        durable_call(submit, alice)

    # then: the job, its files and the hold went back together
    assert (Job.objects.count(), JobFile.objects.count()) == (0, 0)
    assert funded.wallets[alice.pk] == FUNDS
    assert funded.keys == []
    funded.check()


def test_a_failed_first_offer_fails_the_submit_and_a_retry_makes_one_job(
    client_for, alice, box, funded, monkeypatch
):
    # given: offering fails after the job was created and funded
    def broken(job_id, **kwargs):
        raise OperationalError("the database went away for a moment")

    monkeypatch.setattr("jobs.services.submit.job_offer_next", broken)
    api = client_for(alice)

    # when: the submit fails; the client retries with the same key once the database is back
    with pytest.raises(OperationalError):
        api.post(JOBS, body(), format="json", headers={"Idempotency-Key": "k1"})
    assert (Job.objects.count(), funded.keys, IdempotencyRecord.objects.count()) == (0, [], 0)
    monkeypatch.undo()
    again = api.post(JOBS, body(), format="json", headers={"Idempotency-Key": "k1"})

    # then: one job, offered, and one hold
    job = Job.objects.get()
    assert (again.status_code, again.data["id"], again.data["status"]) == (201, job.pk, "offered")
    assert funded.keys == [f"job-hold:{job.pk}"]
    assert funded.wallets[alice.pk] == FUNDS - job.max_cost_micros


def test_a_chosen_host_must_fit_and_the_cap_must_cover_a_minute_there(
    client_for, alice, make_host, hana, funded
):
    # given
    small = make_host(hana, "small", cpus=2)
    dear = make_host(hana, "dear", cpu_core_hour_micros=600_000_000)

    # when
    unfit = client_for(alice).post(JOBS, body(placement=None, host=small.pk, cpus=4), format="json")
    low = client_for(alice).post(JOBS, body(placement=None, host=dear.pk), format="json")

    # then
    assert (unfit.status_code, unfit.data["error"]["code"]) == (400, "host_unfit")
    assert unfit.data["error"]["message"] == (
        f"host #{small.pk} can't take this job: the job needs 4 CPUs, the host offers 2"
    )
    assert (low.status_code, low.data["error"]["code"]) == (400, "cap_too_low")
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_a_private_host_is_unknown_to_outsiders(client_for, alice, make_host, hana, funded):
    # given
    pool = Organisation.objects.create(name="lab")
    private = make_host(hana, "lab-box", visibility="private", organisation=pool)

    # when
    response = client_for(alice).post(JOBS, body(placement=None, host=private.pk), format="json")

    # then
    assert (response.status_code, response.data["error"]["code"]) == (400, "unknown_host")
    assert Job.objects.count() == 0


def test_auto_placement_offers_the_cheapest_fitting_host(
    client_for, alice, make_host, hana, funded, wire: Wire, committed
):
    # given
    make_host(hana, "dear", cpu_core_hour_micros=300_000)
    cheap = make_host(hana, "cheap", cpu_core_hour_micros=50_000)
    make_host(hana, "offline", cpu_core_hour_micros=1, status="offline")

    # when
    with committed():
        response = client_for(alice).post(JOBS, body(), format="json")

    # then
    assert response.data["host"] == cheap.pk
    assert response.data["cpu_core_hour_micros"] == 50_000
    assert [host for host, _, _ in wire.sent] == [cheap.pk]


def test_quote_lists_fitting_hosts_cheapest_first_and_creates_nothing(
    client_for, alice, make_host, hana, funded
):
    # given
    dear = make_host(hana, "dear", cpu_core_hour_micros=300_000)
    cheap = make_host(hana, "cheap", cpu_core_hour_micros=50_000)
    make_host(hana, "tiny", cpus=1)

    # when
    response = client_for(alice).post(
        "/api/v1/quotes/", {"cpus": 2, "memory_mb": 1024, "timeout_seconds": 1800}, format="json"
    )

    # then
    assert response.status_code == 200, response.data
    assert response.data["per_hour_micros"] == 110_000
    assert response.data["estimate_micros"] == 55_000
    assert response.data["minimum_cap_micros"] == 1_834
    assert [h["host"] for h in response.data["hosts"]] == [cheap.pk, dear.pk]
    assert response.data["hosts"][1] == {
        "host": dear.pk,
        "name": "dear",
        "rates": {
            "cpu_core_hour_micros": 300_000,
            "memory_gb_hour_micros": 10_000,
            "gpu_hour_micros": 0,
        },
        "per_hour_micros": 610_000,
        "estimate_micros": 305_000,
        "minimum_cap_micros": 10_167,
        "reliability": 0.8,
    }
    assert response.data["host_misfit"] is None
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_quote_for_a_chosen_host_that_does_not_fit_says_why(client_for, alice, make_host, hana):
    # given
    small = make_host(hana, "small", cpus=2)

    # when
    response = client_for(alice).post(
        "/api/v1/quotes/", {"cpus": 4, "host": small.pk}, format="json"
    )

    # then
    assert response.status_code == 200
    assert response.data["hosts"] == []
    assert response.data["estimate_micros"] is None
    assert response.data["host_misfit"] == "the job needs 4 CPUs, the host offers 2"


def test_an_idempotency_key_replays_the_first_job(client_for, alice, box, funded, committed):
    # given
    client = client_for(alice)
    headers = {"Idempotency-Key": "job-1"}

    # when
    with committed():
        first = client.post(JOBS, body(), format="json", headers=headers)
        again = client.post(JOBS, body(), format="json", headers=headers)
        other = client.post(JOBS, body(cpus=2), format="json", headers=headers)

    # then
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.data == first.data
    assert again["Idempotent-Replayed"] == "true"
    assert (other.status_code, other.data["error"]["code"]) == (422, "idempotency_key_reused")
    assert Job.objects.count() == 1
    assert funded.wallets[alice.pk] == FUNDS - 1_000_000


def test_an_oversized_archive_is_refused_before_it_is_read(
    client_for, alice, box, funded, settings
):
    # given
    settings.JOB_ARCHIVE_MAX_BYTES = 100
    upload = io.BytesIO(b"PK" + b"\0" * 200)
    upload.name = "big.zip"

    # when
    response = client_for(alice).post(
        JOBS,
        {"archive": upload, "placement": "auto", "max_cost_micros": 1_000_000},
        format="multipart",
    )

    # then
    assert (response.status_code, response.data["error"]["code"]) == (413, "archive_too_large")
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_a_submit_costs_the_same_queries_however_many_hosts_there_are(
    client_for, alice, make_host, hana, funded, wire
):
    # given
    client = client_for(alice)
    payload = body()

    def queries_per_submit() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.post(JOBS, payload, format="json").status_code == 201
        return len(captured.captured_queries)

    make_host(hana, "first")
    queries_per_submit()  # warm-up: the first hold creates the ledger's accounts

    # when
    few = queries_per_submit()
    for index in range(10):
        make_host(hana, f"more-{index}")
    many = queries_per_submit()

    # then: two dozen, whatever the number of hosts, six of them the ledger's hold; the hosts
    # placement chooses from are read once (the check's read is the offer's: 25 before)
    assert few == many
    assert many <= 24, many


def test_a_restricted_account_gets_403_and_nothing_is_created(
    client_for, alice, box, funded, wire: Wire, monkeypatch
):
    # given: alice owes credits from a refund (the ledger refuses her holds)
    monkeypatch.setattr("ledger.services.holds.user_is_restricted", lambda user_id: True)

    # when
    response = client_for(alice).post(JOBS, body(), format="json")

    # then
    assert (response.status_code, response.data["error"]["code"]) == (403, "account_restricted")
    assert (Job.objects.count(), JobFile.objects.count()) == (0, 0)
    assert funded.wallets[alice.pk] == FUNDS
    assert funded.keys == []
    assert wire.sent == []


def test_an_empty_body_names_every_missing_field_at_once(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(JOBS, {}, format="json")

    # then
    assert response.status_code == 400
    assert response.data["error"]["code"] == "invalid"
    assert response.data["error"]["fields"] == {
        "max_cost_micros": ["This field is required."],
        "placement": ['give a host, or placement: "auto"'],
        "code": ["give exactly one of code, files, archive or archive_sha256"],
    }
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_bad_files_and_a_bad_requirement_are_named_together(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(
        JOBS,
        body(code=None, files=[{"path": "../x.py", "content": ""}], requirements=["-e ."]),
        format="json",
    )

    # then
    assert response.status_code == 400
    error = response.data["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {
        "files": ["'../x.py' must not contain '..'"],
        "requirements": ["line 1: '-e .' pip options (such as --index-url or -e) are not allowed"],
    }
    assert error["message"] == (
        "file path '../x.py' must not contain '..'; requirement line 1 ('-e .') pip options "
        "(such as --index-url or -e) are not allowed"
    )
    assert Job.objects.count() == 0
    assert funded.wallets[alice.pk] == FUNDS


def test_nested_file_errors_are_messages_under_their_field(client_for, alice, box, funded):
    # when
    response = client_for(alice).post(
        JOBS,
        body(code=None, files=[{"path": "a.py", "content": ""}, {"content": ""}]),
        format="json",
    )

    # then
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {"files": ["item 2, path: This field is required."]}


def test_a_job_is_named_after_its_entrypoint_unless_given_a_name(client_for, alice, box, funded):
    # when
    unnamed = client_for(alice).post(
        JOBS,
        body(code=None, entrypoint="app/train.py", files=[{"path": "app/train.py", "content": ""}]),
        format="json",
    )
    named = client_for(alice).post(JOBS, body(name="resnet sweep 3"), format="json")
    too_long = client_for(alice).post(JOBS, body(name="x" * 201), format="json")

    # then
    assert (unnamed.status_code, unnamed.data["name"]) == (201, "train.py")
    assert (named.status_code, named.data["name"]) == (201, "resnet sweep 3")
    assert too_long.status_code == 400
    assert list(too_long.data["error"]["fields"]) == ["name"]
    assert sorted(Job.objects.values_list("name", flat=True)) == ["resnet sweep 3", "train.py"]
