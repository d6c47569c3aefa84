"""Jobs that reference blobs (issue 13): inputs, a code archive in the store, disk limits.

Every refusal is a 4xx naming its field, and leaves nothing: no job, no input rows, no ledger
rows, no offer, no holding touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from blobs.models import Blob, BlobHolding, blob_storage_name
from blobs.providers import providers
from blobs.store import blob_store
from blobs.tokens import blob_token_check
from hosts.models import Host
from jobs.models import InputSource, Job, JobFile, JobInput, JobStatus
from jobs.selectors import blobs_in_use
from tests.jobs.conftest import Wire
from tests.jobs.helpers import body, submit

JOBS = "/api/v1/jobs/"
FUNDS = 5_000_000
LONG_AGO = timezone.now() - timedelta(days=3)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hold(user, data: bytes, name: str = "") -> BlobHolding:
    """A blob in the store with its bytes, held by ``user`` (as an upload would leave it)."""
    digest = sha(data)
    blob, created = Blob.objects.get_or_create(sha256=digest, defaults={"size": len(data)})
    if created:
        blob_store().save(blob_storage_name(digest), ContentFile(data))
    holding = BlobHolding.objects.create(user=user, blob=blob, origin="upload", name=name)
    BlobHolding.objects.filter(pk=holding.pk).update(last_used_at=LONG_AGO)
    return holding


def zipped(members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in members.items():
            archive.writestr(path, content)
        for path in links:
            info = zipfile.ZipInfo(path)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def store(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def box(make_host, hana):
    return make_host(hana, "box")


@pytest.fixture
def funded(alice, ledger):
    ledger.fund(alice, FUNDS)
    return ledger


def assert_nothing_moved(funded, alice, wire: Wire) -> None:
    assert (Job.objects.count(), JobFile.objects.count(), JobInput.objects.count()) == (0, 0, 0)
    assert funded.wallets[alice.pk] == FUNDS
    assert funded.keys == []
    assert wire.sent == []
    assert not BlobHolding.objects.exclude(last_used_at=LONG_AGO).exists()


# --- accepted -------------------------------------------------------------------------------


def test_inputs_are_stored_offered_with_fresh_fetch_urls_and_touch_the_holdings(
    client_for, alice, box, funded, wire: Wire, committed
):
    # given
    data = hold(alice, b"a,b\n1,2\n", name="data.csv")
    remote = sha(b"remote")
    inputs = [
        {"path": "data/table.csv", "sha256": data.blob.sha256},
        {"path": "weights.bin", "url": "https://example.com/w.bin", "sha256": remote, "size": 6},
    ]

    # when
    with committed():
        response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    assert response.data["inputs"] == [
        {
            "path": "data/table.csv",
            "sha256": data.blob.sha256,
            "size": 8,
            "source": "store",
            "url": "",
        },
        {
            "path": "weights.bin",
            "sha256": remote,
            "size": 6,
            "source": "url",
            "url": "https://example.com/w.bin",
        },
    ]
    assert response.data["disk"] == {"work_mb": 1024, "outputs_mb": 1024, "tmp_mb": 256}
    assert (response.data["archive_sha256"], response.data["work_exec"]) == ("", False)
    assert job.inputs_bytes == 14
    assert list(job.inputs.values_list("path", "source", "blob_id").order_by("path")) == [
        ("data/table.csv", InputSource.STORE, data.blob_id),
        ("weights.bin", InputSource.URL, None),
    ]
    data.refresh_from_db()
    assert data.last_used_at > LONG_AGO
    [offer] = wire.to(box.pk, "job.offer")
    store_ref, url_ref = offer["inputs"]
    attempt = job.attempts.get()
    assert store_ref["url"].startswith("/api/v1/blobs/fetch/")
    grant = blob_token_check(store_ref["url"].rsplit("/", 1)[1], purpose="fetch")
    assert (grant.sha256, grant.scope) == (data.blob.sha256, f"attempt:{attempt.pk}")
    assert {k: v for k, v in store_ref.items() if k != "url"} == {
        "path": "data/table.csv",
        "sha256": data.blob.sha256,
        "size": 8,
        "source": "store",
    }
    assert url_ref == {
        "path": "weights.bin",
        "sha256": remote,
        "size": 6,
        "source": "url",
        "url": "https://example.com/w.bin",
    }
    assert offer["disk"] == {"work_mb": 1024, "outputs_mb": 1024, "tmp_mb": 256, "work_exec": False}
    assert "code_archive" not in offer


def test_the_job_detail_and_list_show_inputs_and_disk(client_for, alice, box, funded):
    # given
    data = hold(alice, b"xyz")
    job = submit(
        alice,
        inputs=({"path": "x", "sha256": data.blob.sha256},),
        work_exec=True,
    )

    # when
    detail = client_for(alice).get(f"{JOBS}{job.pk}/")
    listing = client_for(alice).get(JOBS)

    # then
    expected = [{"path": "x", "sha256": data.blob.sha256, "size": 3, "source": "store", "url": ""}]
    assert detail.data["inputs"] == expected
    assert listing.data["results"][0]["inputs"] == expected
    assert detail.data["work_exec"] is True


def test_a_url_input_without_a_size_is_offered_without_one(alice, box, funded, wire, committed):
    # given
    remote = sha(b"remote")

    # when
    with committed():
        job = submit(alice, inputs=({"path": "r", "url": "https://8.8.8.8/r", "sha256": remote},))

    # then
    assert (job.inputs_bytes, job.inputs.get().size) == (0, None)
    [offer] = wire.to(box.pk, "job.offer")
    assert offer["inputs"] == [
        {"path": "r", "sha256": remote, "source": "url", "url": "https://8.8.8.8/r"}
    ]


def test_disk_and_work_exec_reach_the_job_and_the_offer(client_for, alice, box, funded, wire):
    # when
    with_disk = body(disk={"work_mb": 4096, "outputs_mb": 10, "tmp_mb": 1}, work_exec=True)
    response = client_for(alice).post(JOBS, with_disk, format="json")

    # then
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    assert (job.work_mb, job.outputs_mb, job.tmp_mb, job.work_exec) == (4096, 10, 1, True)
    assert response.data["disk"] == {"work_mb": 4096, "outputs_mb": 10, "tmp_mb": 1}


# --- refused inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/data",
        "ftp://example.com/data",
        "https://user:secret@example.com/data",
        "https://user@example.com/data",
        "https://127.0.0.1/data",
        "https://127.0.0.1:8443/data",
        "https://10.1.2.3/data",
        "https://192.168.0.1/data",
        "https://172.16.5.4/data",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/data",
        "https://[::ffff:127.0.0.1]/data",
        "https://[fe80::1%25eth0]/data",
        "https://[fc00::1]/data",
        "https://224.0.0.1/data",
        "https://0.0.0.0/data",
        "https://240.0.0.1/data",
        "https://localhost/data",
        "https://LOCALHOST./data",
        "https://api.localhost/data",
        "https://2130706433/data",
        "https://127.1/data",
        "https://0x7f000001/data",
        "https://example.com:99999/data",
        "https://example.com/" + "a" * 4100,
        "https:///data",
        "https://exa mple.com/",
    ],
)
def test_a_url_input_that_is_not_public_https_is_refused(client_for, alice, box, funded, wire, url):
    # when
    inputs = [{"path": "in", "url": url, "sha256": sha(b"x")}]
    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == "invalid_url"
    assert list(response.data["error"]["fields"]) == ["inputs[0].url"]
    assert_nothing_moved(funded, alice, wire)


@pytest.mark.parametrize(
    "url", ["https://example.com/data?x=1", "https://8.8.8.8/d", "https://[2606:4700::1]/d"]
)
def test_a_public_https_url_is_accepted(alice, box, funded, url):
    job = submit(alice, inputs=({"path": "in", "url": url, "sha256": sha(b"x")},))

    assert job.inputs.get().url == url


def test_a_blob_nobody_holds_and_a_blob_someone_else_holds_get_the_same_refusal(
    client_for, alice, mallory, box, funded, wire
):
    # given: mallory holds one blob; nobody holds the other
    theirs = hold(mallory, b"mallory's secret data")
    inputs = [
        {"path": "a", "sha256": theirs.blob.sha256},
        {"path": "b", "sha256": sha(b"nobody has this")},
    ]

    # when
    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == "invalid"
    fields = response.data["error"]["fields"]
    assert fields == {
        "inputs[0].sha256": ["you hold no blob with this sha256: upload it first"],
        "inputs[1].sha256": ["you hold no blob with this sha256: upload it first"],
    }
    assert_nothing_moved(funded, alice, wire)
    assert BlobHolding.objects.filter(user=alice).count() == 0


def test_one_unknown_blob_keeps_its_own_code(client_for, alice, box, funded, wire):
    inputs = [{"path": "a", "sha256": sha(b"nobody")}]

    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    assert response.status_code == 400
    assert response.data["error"]["code"] == "unknown_blob"
    assert_nothing_moved(funded, alice, wire)


@pytest.mark.parametrize(
    ("item", "field", "code"),
    [
        ({"path": "../escape", "sha256": "0" * 64}, "inputs[0].path", "invalid_path"),
        ({"path": "a/../../b", "sha256": "0" * 64}, "inputs[0].path", "invalid_path"),
        ({"path": "/etc/passwd", "sha256": "0" * 64}, "inputs[0].path", "invalid_path"),
        ({"path": "", "sha256": "0" * 64}, "inputs[0].path", "invalid_path"),
        ({"path": "a\\b", "sha256": "0" * 64}, "inputs[0].path", "invalid_path"),
        ({"sha256": "0" * 64}, "inputs[0].path", "invalid"),
        ({"path": "a", "sha256": "A" * 64}, "inputs[0].sha256", "invalid"),
        ({"path": "a", "sha256": "0" * 63}, "inputs[0].sha256", "invalid"),
        ({"path": "a"}, "inputs[0].sha256", "invalid"),
        ({"path": "a", "sha256": "0" * 64, "size": 5}, "inputs[0].size", "invalid"),
        (
            {"path": "a", "sha256": "0" * 64, "url": "https://example.com/", "size": -1},
            "inputs[0].size",
            "invalid",
        ),
        (
            {"path": "a", "sha256": "0" * 64, "url": "https://example.com/", "size": True},
            "inputs[0].size",
            "invalid",
        ),
        ({"path": "a", "sha256": "0" * 64, "url": 5}, "inputs[0].url", "invalid_url"),
        ({"path": "a", "sha256": "0" * 64, "mode": "rw"}, "inputs[0]", "invalid"),
        ("a-string", "inputs[0]", "invalid"),
    ],
)
def test_a_malformed_input_is_refused_by_its_field(
    client_for, alice, box, funded, wire, item, field, code
):
    response = client_for(alice).post(JOBS, body(inputs=[item]), format="json")

    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == code
    assert list(response.data["error"]["fields"]) == [field]
    assert_nothing_moved(funded, alice, wire)


def test_inputs_that_are_not_a_list_are_refused(client_for, alice, box, funded, wire):
    response = client_for(alice).post(JOBS, body(inputs={"path": "a"}), format="json")

    assert response.status_code == 400
    assert "inputs" in response.data["error"]["fields"]
    assert_nothing_moved(funded, alice, wire)


def test_a_path_given_twice_is_refused(client_for, alice, box, funded, wire):
    data = hold(alice, b"one")
    inputs = [
        {"path": "d/x", "sha256": data.blob.sha256},
        {"path": "d/./x", "sha256": data.blob.sha256},
    ]

    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    assert response.status_code == 400
    assert response.data["error"]["code"] == "duplicate_path"
    assert response.data["error"]["fields"] == {"inputs[1].path": ["d/x is given twice"]}
    assert_nothing_moved(funded, alice, wire)


def test_every_bad_input_and_field_is_named_at_once(client_for, alice, box, funded, wire):
    inputs = [
        {"path": "../x", "sha256": "0" * 64},
        {"path": "b", "sha256": "0" * 64, "url": "http://example.com/"},
        {"path": "c", "sha256": "nope"},
    ]

    response = client_for(alice).post(
        JOBS, body(inputs=inputs, requirements=["-e ."]), format="json"
    )

    assert response.status_code == 400
    assert response.data["error"]["code"] == "invalid"
    assert sorted(response.data["error"]["fields"]) == [
        "inputs[0].path",
        "inputs[1].url",
        "inputs[2].sha256",
        "requirements",
    ]
    assert_nothing_moved(funded, alice, wire)


def test_too_many_inputs_are_refused(client_for, alice, box, funded, wire, settings):
    settings.JOB_INPUTS_MAX_COUNT = 2
    inputs = [
        {"path": f"f{i}", "url": "https://example.com/", "sha256": "0" * 64} for i in range(3)
    ]

    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    assert response.status_code == 400
    assert response.data["error"]["code"] == "too_many_inputs"
    assert response.data["error"]["fields"] == {"inputs": ["at most 2 inputs"]}
    assert_nothing_moved(funded, alice, wire)


def test_inputs_over_the_byte_cap_are_refused(client_for, alice, box, funded, wire, settings):
    # given: 10 bytes in the store and 91 stated for a URL: 101 > 100
    settings.JOB_INPUTS_MAX_BYTES = 100
    data = hold(alice, b"0123456789")
    inputs = [
        {"path": "a", "sha256": data.blob.sha256},
        {"path": "b", "url": "https://example.com/b", "sha256": "0" * 64, "size": 91},
    ]

    # when
    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 413
    assert response.data["error"]["code"] == "inputs_too_large"
    assert response.data["error"]["fields"] == {"inputs": ["more than 100 bytes in all"]}
    assert_nothing_moved(funded, alice, wire)


def test_inputs_at_the_byte_cap_are_accepted(alice, box, funded, settings):
    settings.JOB_INPUTS_MAX_BYTES = 100
    data = hold(alice, b"0123456789")
    inputs = (
        {"path": "a", "sha256": data.blob.sha256},
        {"path": "b", "url": "https://example.com/b", "sha256": "0" * 64, "size": 90},
    )

    assert submit(alice, inputs=inputs).inputs_bytes == 100


def test_inputs_that_would_not_fit_one_offer_message_are_refused(
    client_for, alice, box, funded, wire
):
    # given: 1000 held blobs under long paths (the count cap allows them; one message doesn't)
    blobs = Blob.objects.bulk_create(Blob(sha256=sha(str(i).encode()), size=1) for i in range(1000))
    BlobHolding.objects.bulk_create(
        BlobHolding(user=alice, blob=b, origin="upload", last_used_at=LONG_AGO) for b in blobs
    )
    BlobHolding.objects.update(last_used_at=LONG_AGO)
    inputs = [{"path": f"{i:04d}/" + "p" * 240, "sha256": b.sha256} for i, b in enumerate(blobs)]

    # when
    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 413, response.data
    assert response.data["error"]["code"] == "offer_too_large"
    assert list(response.data["error"]["fields"]) == ["inputs"]
    assert_nothing_moved(funded, alice, wire)


# --- disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disk", "fields"),
    [
        ({"work_mb": 0}, ["disk.work_mb"]),
        ({"outputs_mb": -1, "tmp_mb": 10**9}, ["disk.outputs_mb", "disk.tmp_mb"]),
    ],
)
def test_disk_sizes_out_of_range_are_refused(client_for, alice, box, funded, wire, disk, fields):
    response = client_for(alice).post(JOBS, body(disk=disk), format="json")

    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == "invalid_disk"
    assert list(response.data["error"]["fields"]) == fields
    assert_nothing_moved(funded, alice, wire)


def test_a_disk_size_that_is_not_a_number_is_refused(client_for, alice, box, funded, wire):
    response = client_for(alice).post(JOBS, body(disk={"work_mb": "lots"}), format="json")

    assert response.status_code == 400
    assert list(response.data["error"]["fields"]) == ["disk"]
    assert_nothing_moved(funded, alice, wire)


def test_a_chosen_host_that_allows_less_disk_is_unfit(
    client_for, alice, make_host, hana, funded, wire
):
    # given: 2304 MB of default file systems + 2 MiB of input > 2305
    small = make_host(hana, "small", job_disk_mb=2305)
    data = hold(alice, b"x" * (1024 * 1024 + 1))
    inputs = [{"path": "big", "sha256": data.blob.sha256}]

    # when
    response = client_for(alice).post(
        JOBS, body(placement=None, host=small.pk, inputs=inputs), format="json"
    )

    # then
    assert response.status_code == 400
    assert response.data["error"]["code"] == "host_unfit"
    assert response.data["error"]["fields"] == {
        "host": ["the job needs 2306 MB of disk; the host allows 2305"]
    }
    assert_nothing_moved(funded, alice, wire)


def test_a_host_that_never_said_its_job_disk_is_judged_on_its_free_disk(
    client_for, alice, make_host, hana, funded, wire
):
    # given: an older agent: no job_disk_mb, 2000 MB free
    make_host(hana, "old", disk_free_mb=2000)

    # when
    response = client_for(alice).post(JOBS, body(), format="json")

    # then
    assert response.status_code == 409
    assert response.data["error"]["code"] == "no_host_fits"
    assert_nothing_moved(funded, alice, wire)


def test_auto_placement_skips_the_host_without_room_for_the_disk(
    alice, make_host, hana, funded, wire, committed
):
    # given: the cheaper host allows 1000 MB per job, the dearer one enough
    cheap = make_host(hana, "cheap", job_disk_mb=1000, cpu_core_hour_micros=1)
    roomy = make_host(hana, "roomy", job_disk_mb=5000)

    # when
    with committed():
        job = submit(alice)

    # then
    assert job.host_id == roomy.pk
    assert (len(wire.to(roomy.pk, "job.offer")), wire.to(cheap.pk)) == (1, [])


def test_a_quote_leaves_out_the_hosts_without_room_for_its_disk_and_inputs(
    client_for, alice, make_host, hana, funded, wire
):
    # given: 100 + 10 + 1 MB of file systems + 2 MiB of inputs = 113 MB
    small = make_host(hana, "small", job_disk_mb=112, cpu_core_hour_micros=1)
    roomy = make_host(hana, "roomy", job_disk_mb=113)
    disk = {"work_mb": 100, "outputs_mb": 10, "tmp_mb": 1}

    # when
    quoted = client_for(alice).post(
        "/api/v1/quotes/", {"disk": disk, "inputs_bytes": 2 * 1024 * 1024 - 1}, format="json"
    )
    chosen = client_for(alice).post(
        "/api/v1/quotes/",
        {"disk": disk, "inputs_bytes": 2 * 1024 * 1024, "host": small.pk},
        format="json",
    )

    # then: the same fit as the submit's
    assert quoted.status_code == 200, quoted.data
    assert [h["host"] for h in quoted.data["hosts"]] == [roomy.pk]
    assert chosen.data["host_misfit"] == "the job needs 113 MB of disk; the host allows 112"
    assert_nothing_moved(funded, alice, wire)


def test_a_quote_without_disk_counts_the_submits_defaults(client_for, alice, make_host, hana):
    # given: the defaults are 1024 + 1024 + 256 MB
    make_host(hana, "tight", job_disk_mb=2303)
    fits = make_host(hana, "fits", job_disk_mb=2304)

    # when
    response = client_for(alice).post("/api/v1/quotes/", {}, format="json")

    # then
    assert [h["host"] for h in response.data["hosts"]] == [fits.pk]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"disk": {"work_mb": 0}}, "disk.work_mb"),
        ({"inputs_bytes": -1}, "inputs_bytes"),
        ({"inputs_bytes": 5 * 1024**3 + 1}, "inputs_bytes"),
    ],
)
def test_a_quote_with_bad_disk_or_inputs_bytes_is_refused(
    client_for, alice, box, request_body, field
):
    response = client_for(alice).post("/api/v1/quotes/", request_body, format="json")

    assert response.status_code == 400
    assert list(response.data["error"]["fields"]) == [field]


# --- the code archive -----------------------------------------------------------------------


def test_a_held_zip_is_the_jobs_code_and_travels_as_code_archive(
    client_for, alice, box, funded, wire, committed
):
    # given
    archive = hold(alice, zipped({"main.py": b"print(1)", "lib/util.py": b"x = 1"}))

    # when
    with committed():
        response = client_for(alice).post(
            JOBS,
            body(code=None, archive_sha256=archive.blob.sha256, entrypoint="main.py"),
            format="json",
        )

    # then
    assert response.status_code == 201, response.data
    job = Job.objects.get()
    assert (job.entrypoint, job.files.count()) == ("main.py", 0)
    assert (job.code_archive_id, response.data["archive_sha256"]) == (
        archive.blob_id,
        archive.blob.sha256,
    )
    assert job.inputs_bytes == archive.blob.size
    archive.refresh_from_db()
    assert archive.last_used_at > LONG_AGO
    [offer] = wire.to(box.pk, "job.offer")
    ref = offer["code_archive"]
    grant = blob_token_check(ref["url"].rsplit("/", 1)[1], purpose="fetch")
    assert (grant.sha256, grant.scope) == (archive.blob.sha256, f"attempt:{job.attempts.get().pk}")
    assert {k: v for k, v in ref.items() if k != "url"} == {
        "path": "code.zip",
        "sha256": archive.blob.sha256,
        "size": archive.blob.size,
        "source": "store",
    }
    assert (offer["files"], offer["entrypoint"]) == ([], "main.py")


def test_a_zip_of_one_file_needs_no_entrypoint(alice, box, funded):
    archive = hold(alice, zipped({"run.py": b"print(1)"}))

    job = submit(alice, code=None, archive_sha256=archive.blob.sha256)

    assert job.entrypoint == "run.py"


@pytest.mark.parametrize(
    ("members", "links", "overrides", "status", "code", "field"),
    [
        ({"main.py": b""}, ("evil",), {}, 400, "bad_archive", "archive_sha256"),
        ({"../main.py": b""}, (), {}, 400, "invalid_path", "archive_sha256"),
        (
            {"main.py": b"", "x.py": b""},
            (),
            {"entrypoint": "gone.py"},
            400,
            "invalid_entrypoint",
            "entrypoint",
        ),
        (
            {"main.py": b"", "x.py": b""},
            (),
            {"entrypoint": None},
            400,
            "entrypoint_required",
            "entrypoint",
        ),
        (
            {"main.py": b"", "zeros.bin": b"\0" * (2 * 1024 * 1024)},
            (),
            {"disk": {"work_mb": 1}},
            413,
            "archive_too_large",
            "archive_sha256",
        ),
    ],
)
def test_a_bad_code_archive_is_refused(
    client_for, alice, box, funded, wire, members, links, overrides, status, code, field
):
    # given
    archive = hold(alice, zipped(members, links=links))
    values = {"code": None, "archive_sha256": archive.blob.sha256, "entrypoint": "main.py"}

    # when
    response = client_for(alice).post(JOBS, body(**{**values, **overrides}), format="json")

    # then
    assert response.status_code == status, response.data
    assert response.data["error"]["code"] == code
    assert field in response.data["error"]["fields"]
    assert_nothing_moved(funded, alice, wire)


def test_bytes_that_are_not_a_zip_are_refused(client_for, alice, box, funded, wire):
    archive = hold(alice, b"just some text, no zip here")

    response = client_for(alice).post(
        JOBS, body(code=None, archive_sha256=archive.blob.sha256), format="json"
    )

    assert response.status_code == 400
    assert response.data["error"]["code"] == "bad_archive"
    assert response.data["error"]["fields"] == {"archive_sha256": ["is not a zip file"]}
    assert_nothing_moved(funded, alice, wire)


def test_someone_elses_archive_is_unknown(client_for, alice, mallory, box, funded, wire):
    theirs = hold(mallory, zipped({"main.py": b"print('mine')"}))

    response = client_for(alice).post(
        JOBS, body(code=None, archive_sha256=theirs.blob.sha256), format="json"
    )

    assert response.status_code == 400
    assert response.data["error"]["code"] == "unknown_blob"
    assert list(response.data["error"]["fields"]) == ["archive_sha256"]
    assert_nothing_moved(funded, alice, wire)


@pytest.mark.parametrize(
    "overrides",
    [
        {"archive_sha256": "0" * 64},
        {"code": None, "archive_sha256": "NOT-A-DIGEST"},
    ],
)
def test_an_archive_digest_with_code_or_malformed_is_refused(
    client_for, alice, box, funded, wire, overrides
):
    response = client_for(alice).post(JOBS, body(**overrides), format="json")

    assert response.status_code == 400
    assert_nothing_moved(funded, alice, wire)


# --- the collector's provider slot ----------------------------------------------------------


def test_blobs_in_use_are_those_an_unfinished_job_reads(alice, box, funded):
    # given: one job reads an input and an archive; another, finished, read a third blob
    data = hold(alice, b"input")
    archive = hold(alice, zipped({"main.py": b""}))
    old = hold(alice, b"old input")
    done = submit(alice, inputs=({"path": "o", "sha256": old.blob.sha256},))
    Job.objects.filter(pk=done.pk).update(status=JobStatus.SUCCEEDED)
    submit(
        alice,
        code=None,
        archive_sha256=archive.blob.sha256,
        inputs=({"path": "d", "sha256": data.blob.sha256},),
    )
    unused = hold(alice, b"never used")
    ids = [data.blob_id, archive.blob_id, old.blob_id, unused.blob_id]

    # when / then
    assert blobs_in_use(ids) == {data.blob_id, archive.blob_id}
    assert providers.blobs_in_use is blobs_in_use


def test_a_blob_gone_from_the_table_leaves_the_finished_jobs_record(alice, box, funded):
    # given
    data = hold(alice, b"input")
    job = submit(alice, inputs=({"path": "d", "sha256": data.blob.sha256},))
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)

    # when: the collector removes the holding and the blob
    BlobHolding.objects.all().delete()
    Blob.objects.all().delete()

    # then
    row = JobInput.objects.get()
    assert (row.blob_id, row.sha256, row.size) == (None, data.blob.sha256, 5)


def test_a_holding_dropped_between_the_check_and_the_write_refuses_the_submit(
    client_for, alice, box, funded, wire, monkeypatch
):
    # given: the collector drops alice's holding right after the submit looked it up
    from blobs.selectors import blobs_held

    data = hold(alice, b"about to go")

    def then_collected(user, sha256s):
        found = blobs_held(user, sha256s)
        BlobHolding.objects.filter(pk=data.pk).delete()
        return found

    monkeypatch.setattr("jobs.services.submit.blobs_held", then_collected)

    # when
    inputs = [{"path": "d", "sha256": data.blob.sha256}]
    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    # then
    assert response.status_code == 400, response.data
    assert response.data["error"]["code"] == "unknown_blob"
    assert_nothing_moved(funded, alice, wire)


def test_a_queued_job_no_host_has_the_disk_for_says_so(alice, make_host, hana, funded):
    # given: a queued job; then the only host's agent lowers its allowance below the job's need
    from jobs.services.dispatch import job_offer_next

    host = make_host(hana, "box")
    job = submit(alice)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, attempt=0)
    job.attempts.all().delete()
    Host.objects.filter(pk=host.pk).update(job_disk_mb=100)

    # when
    job_offer_next(job.pk)

    # then
    job.refresh_from_db()
    assert (job.status, job.waiting_reason) == (
        "queued",
        "waiting for a host that allows 2304 MB of disk a job",
    )


def test_inputs_may_come_as_a_json_string_in_a_multipart_form(client_for, alice, box, funded):
    # given
    data = hold(alice, b"form data")
    buffer = io.BytesIO(zipped({"main.py": b"print(1)"}))
    buffer.name = "code.zip"

    # when
    response = client_for(alice).post(
        JOBS,
        {
            "archive": buffer,
            "inputs": json.dumps([{"path": "f", "sha256": data.blob.sha256}]),
            "placement": "auto",
            "max_cost_micros": 1_000_000,
        },
        format="multipart",
    )

    # then
    assert response.status_code == 201, response.data
    assert [(i["path"], i["source"]) for i in response.data["inputs"]] == [("f", "store")]


def test_a_multipart_form_takes_disk_and_work_exec_as_fields(client_for, alice, box, funded):
    # given: a script's form (curl -F), with the disk as dotted fields
    buffer = io.BytesIO(zipped({"main.py": b"print(1)"}))
    buffer.name = "code.zip"

    # when
    response = client_for(alice).post(
        JOBS,
        {
            "archive": buffer,
            "disk.work_mb": "2048",
            "disk.tmp_mb": "64",
            "work_exec": "true",
            "placement": "auto",
            "max_cost_micros": 1_000_000,
        },
        format="multipart",
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["disk"] == {"work_mb": 2048, "outputs_mb": 1024, "tmp_mb": 64}
    assert Job.objects.get().work_exec is True


def test_a_multipart_form_may_name_a_held_zip(client_for, alice, box, funded):
    # given
    archive = hold(alice, zipped({"main.py": b"print(1)"}))

    # when
    response = client_for(alice).post(
        JOBS,
        {
            "archive_sha256": archive.blob.sha256,
            "entrypoint": "main.py",
            "placement": "auto",
            "max_cost_micros": 1_000_000,
        },
        format="multipart",
    )

    # then
    assert response.status_code == 201, response.data
    assert response.data["archive_sha256"] == archive.blob.sha256


def test_a_bad_disk_field_in_a_multipart_form_is_refused(client_for, alice, box, funded, wire):
    buffer = io.BytesIO(zipped({"main.py": b"print(1)"}))
    buffer.name = "code.zip"

    response = client_for(alice).post(
        JOBS,
        {"archive": buffer, "disk.work_mb": "0", "placement": "auto", "max_cost_micros": 10},
        format="multipart",
    )

    assert response.status_code == 400
    assert list(response.data["error"]["fields"]) == ["disk.work_mb"]
    assert_nothing_moved(funded, alice, wire)


def test_an_input_under_another_inputs_file_is_refused(client_for, alice, box, funded, wire):
    inputs = [
        {"path": "data/x/y.csv", "url": "https://example.com/y", "sha256": "0" * 64},
        {"path": "data/x", "url": "https://example.com/x", "sha256": "1" * 64},
        {"path": "data/z", "url": "https://example.com/z", "sha256": "2" * 64},
    ]

    response = client_for(alice).post(JOBS, body(inputs=inputs), format="json")

    assert response.status_code == 400
    assert response.data["error"]["code"] == "invalid_path"
    assert response.data["error"]["fields"] == {
        "inputs[0].path": ["is inside data/x, another input's file"]
    }
    assert_nothing_moved(funded, alice, wire)


def test_the_code_archive_may_also_be_an_input(alice, box, funded):
    archive = hold(alice, zipped({"main.py": b"print(1)"}))

    job = submit(
        alice,
        code=None,
        archive_sha256=archive.blob.sha256,
        inputs=({"path": "source.zip", "sha256": archive.blob.sha256},),
    )

    assert (job.code_archive_id, job.inputs.get().blob_id) == (archive.blob_id, archive.blob_id)
