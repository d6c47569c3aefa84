"""``Client.run`` builds the submit the API takes (files, inputs by sha256 after their upload,
the cap in micro-credits, placement), and the ``Job`` handle reads, follows and downloads."""

from __future__ import annotations

import hashlib
import io
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from communipute import ConnectionFailed, JobWaitTimeout
from communipute.money import credits_to_micros, micros_text
from tests.client.fakes import FakeServer, job_json


@pytest.fixture
def server() -> FakeServer:
    server = FakeServer()
    server.route("POST", "/api/v1/jobs/", httpx.Response(201, json=job_json()))
    return server


def submitted(server: FakeServer) -> Any:
    [body] = server.sent("POST", "/api/v1/jobs/")
    return body


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("print(open('/inputs/data.csv').read())\n")
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "maths.py").write_text("def twice(x): return 2 * x\n")
    (tmp_path / "helpers" / "__pycache__").mkdir()
    (tmp_path / "helpers" / "__pycache__" / "maths.pyc").write_bytes(b"\0")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "one.txt").write_text("1")
    (tmp_path / "set" / "deep").mkdir()
    (tmp_path / "set" / "deep" / "two.txt").write_text("2")
    return tmp_path


def test_run_sends_the_script_its_files_and_its_inputs_by_digest(server, project) -> None:
    # when
    job = server.client().run(
        project / "train.py",
        requirements="numpy==2.1\n# a comment\n",
        files=[project / "helpers"],
        inputs=[
            project / "data.csv",
            (project / "set", "sets/a"),
            {"path": "x", "sha256": "f" * 64},
        ],
        cpus="0.5",
        memory_mb=1024,
        max_cost="2.5",
        name="training",
    )

    # then: the handle, and a body with every file and input where it belongs
    assert (job.id, job.status) == (7, "queued")
    body = submitted(server)
    assert body["entrypoint"] == "train.py"
    assert [f["path"] for f in body["files"]] == [
        "train.py",
        "helpers/__init__.py",
        "helpers/maths.py",
    ]
    assert body["requirements"] == ["numpy==2.1", "# a comment"]
    digest = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in [("csv", b"a,b\n1,2\n"), ("1", b"1"), ("2", b"2")]
    }
    assert body["inputs"] == [
        {"path": "data.csv", "sha256": digest["csv"]},
        {"path": "sets/a/one.txt", "sha256": digest["1"]},
        {"path": "sets/a/deep/two.txt", "sha256": digest["2"]},
        {"path": "x", "sha256": "f" * 64},
    ]
    assert (body["cpus"], body["memory_mb"], body["max_cost_micros"]) == (0.5, 1024, 2_500_000)
    assert (body["placement"], body["name"]) == ("auto", "training")
    assert not {"host", "gpus", "timeout_seconds"} & set(body)  # the server's defaults
    # each local input went up (three different digests), before the submit
    assert len(server.calls("POST", "/api/v1/uploads/")) == 3
    assert server.calls("POST")[-1] == "POST /api/v1/jobs/"


def test_run_on_a_chosen_host_with_the_cap_in_micros(server, project) -> None:
    server.client().run(project / "train.py", max_cost_micros=1234, host=5, gpus=1)

    body = submitted(server)
    assert (body["host"], body["max_cost_micros"], body["gpus"]) == (5, 1234, 1)
    assert "placement" not in body


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, "max_cost"),
        ({"max_cost": 1, "max_cost_micros": 1}, "max_cost"),
        ({"max_cost": "0.0000001"}, "whole number of micro-credits"),
        ({"max_cost": 0}, "out of range"),
        ({"max_cost": "lots"}, "not a number"),
    ],
)
def test_a_bad_cap_is_refused_before_anything_is_sent(server, project, kwargs, error) -> None:
    with pytest.raises(ValueError, match=error):
        server.client().run(project / "train.py", **kwargs)
    assert server.log == []


def test_a_missing_script_or_input_is_refused_before_anything_is_sent(server, project) -> None:
    with pytest.raises(FileNotFoundError):
        server.client().run(project / "nope.py", max_cost=1)
    with pytest.raises(FileNotFoundError):
        server.client().run(project / "train.py", inputs=[project / "nope.csv"], max_cost=1)
    with pytest.raises(ValueError, match="relative path"):
        server.client().run(
            project / "train.py", inputs=[(project / "data.csv", "../x")], max_cost=1
        )
    # the code archive is not uploaded for a job whose input is missing
    with pytest.raises(FileNotFoundError):
        server.client().run(
            "maths.py", archive=project / "helpers", inputs=[project / "nope"], max_cost=1
        )
    with pytest.raises(TypeError, match="memory_mb"):
        server.client().run("maths.py", archive=project / "helpers", memory_mb=1.5, max_cost=1)
    assert server.log == []


def test_an_archive_folder_is_zipped_the_same_way_every_time_and_sent_by_digest(
    server, project
) -> None:
    # when: the same folder twice
    client = server.client()
    client.run(project / "helpers" / "maths.py", archive=project / "helpers", max_cost=1)
    client.run(project / "helpers" / "maths.py", archive=project / "helpers", max_cost=1)

    # then: one zip uploaded (the second answered complete at once), named by its digest
    bodies = server.sent("POST", "/api/v1/jobs/")
    assert bodies[0] == bodies[1]
    assert bodies[0]["entrypoint"] == "maths.py"
    [blob] = server.blobs.values()
    assert hashlib.sha256(blob).hexdigest() == bodies[0]["archive_sha256"]
    assert len(server.calls("PATCH")) == 1
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert names == ["__init__.py", "maths.py"]


def test_money_is_exact_in_both_directions() -> None:
    assert credits_to_micros(Decimal("1.000001")) == 1_000_001
    assert credits_to_micros(0.1) == 100_000
    assert credits_to_micros(3) == 3_000_000
    with pytest.raises(TypeError):
        credits_to_micros(True)
    assert (micros_text(1_500_000), micros_text(7), micros_text(2_000_000)) == (
        "1.5",
        "0.000007",
        "2",
    )


def test_jobs_filters_by_status_and_follows_pages(server) -> None:
    page_two = {"count": 3, "next": None, "previous": None, "results": [job_json(1)]}
    page_one = {
        "count": 3,
        "next": "http://cp.test/api/v1/jobs/?page=2&status=running",
        "previous": None,
        "results": [job_json(3), job_json(2)],
    }
    server.route("GET", "/api/v1/jobs/", [page_one, page_two])

    jobs = server.client().jobs(status=["running", "queued"], limit=10)

    assert [job.id for job in jobs] == [3, 2, 1]
    first, second = (path for _, path, _ in server.log)
    assert first == second == "/api/v1/jobs/"
    assert server.queries == ["page_size=10&status=running%2Cqueued", "page=2&status=running"]


def test_logs_follow_the_job_onto_its_next_attempt_until_it_finished(server) -> None:
    # given: attempt 1 prints, is lost; attempt 2 prints and the job succeeds
    def page(attempt, offset, data, complete, next_offset=None):
        return {
            "job_id": 7,
            "attempt": attempt,
            "offset": offset,
            "next_offset": offset + len(data) if next_offset is None else next_offset,
            "data": data,
            "truncated": False,
            "is_complete": complete,
        }

    server.route(
        "GET",
        "/api/v1/jobs/7/logs/",
        [
            page(1, 0, "one\n", False),
            page(1, 4, "", False),
            page(1, 4, "", False),
            page(2, 0, "two\n", False),
            page(2, 4, "three\n", True),
        ],
    )
    server.route(
        "GET",
        "/api/v1/jobs/7/",
        [
            job_json(status="running", attempt=1),
            job_json(status="running", attempt=1),
            job_json(status="queued", attempt=2),
            job_json(status="succeeded", attempt=2, exit_code=0),
        ],
    )
    client = server.client()
    job = client.job(7)

    # when
    text = "".join(job.logs(follow=True))

    # then: both attempts' logs, a line between them, and it stopped when the job was done
    assert text == "one\n\n[communipute: the job runs again, attempt 2]\ntwo\nthree\n"
    reads = [query for query in server.queries if "offset" in query]
    assert reads == [
        "offset=0",
        "offset=4&attempt=1",
        "offset=4&attempt=1",
        "offset=0&attempt=2",
        "offset=4&attempt=2",
    ]


def test_logs_without_follow_read_what_is_stored_and_stop(server) -> None:
    server.route(
        "GET",
        "/api/v1/jobs/7/logs/",
        [
            {
                "job_id": 7,
                "attempt": 1,
                "offset": 0,
                "next_offset": 3,
                "data": "ab\n",
                "truncated": False,
                "is_complete": False,
            },
            {
                "job_id": 7,
                "attempt": 1,
                "offset": 3,
                "next_offset": 3,
                "data": "",
                "truncated": False,
                "is_complete": False,
            },
        ],
    )
    server.route("GET", "/api/v1/jobs/7/", job_json(status="running", attempt=1))

    assert list(server.client().job(7).logs(follow=False)) == ["ab\n"]


def test_wait_returns_the_final_job_or_raises_on_timeout(server) -> None:
    server.route(
        "GET",
        "/api/v1/jobs/7/",
        [
            job_json(status="queued"),
            job_json(status="running"),
            job_json(status="failed", exit_code=3),
        ],
    )
    client = server.client()

    final = client.job(7).wait()

    assert (final.status, final.exit_code, final.is_finished) == ("failed", 3, True)

    server.route("GET", "/api/v1/jobs/8/", job_json(8, status="running"))
    with pytest.raises(JobWaitTimeout) as raised:
        client.job(8).wait(timeout=0)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.job.status == "running"


def test_a_download_cut_midway_goes_on_with_range_and_is_checked(server, tmp_path) -> None:
    # given: an output whose first answer breaks off after 4 bytes
    content = b"0123456789" * 100
    sha256 = hashlib.sha256(content).hexdigest()
    server.route(
        "GET",
        "/api/v1/jobs/7/outputs/",
        {
            "count": 1,
            "next": None,
            "previous": None,
            "results": [
                {
                    "name": "plots/a.txt",
                    "size": len(content),
                    "sha256": sha256,
                    "attempt": 1,
                    "uploaded_at": None,
                }
            ],
        },
    )

    class Cut(httpx.SyncByteStream):
        def __iter__(self):
            yield content[:4]
            raise httpx.ReadError("cut")

    def answer(request: httpx.Request) -> httpx.Response:
        if "range" in request.headers:
            start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
            return httpx.Response(206, content=content[start:])
        return httpx.Response(200, stream=Cut())

    server.route("GET", "/api/v1/jobs/7/outputs/plots/a.txt", answer)
    server.route("GET", "/api/v1/jobs/7/", job_json(status="succeeded"))
    job = server.client().job(7)

    # when
    path = job.download("plots/a.txt", tmp_path)

    # then: whole, where its name says, and resumed from byte 4
    assert path == tmp_path / "plots" / "a.txt"
    assert path.read_bytes() == content
    ranges = [h.get("range") for _, p, h in server.log if p.endswith("a.txt")]
    assert ranges == [None, "bytes=4-"]


def test_a_download_that_does_not_match_its_sha256_is_not_kept(server, tmp_path) -> None:
    server.route(
        "GET",
        "/api/v1/jobs/7/outputs/",
        {
            "count": 1,
            "next": None,
            "previous": None,
            "results": [
                {"name": "a.txt", "size": 3, "sha256": "0" * 64, "attempt": 1, "uploaded_at": None}
            ],
        },
    )
    server.route("GET", "/api/v1/jobs/7/outputs/a.txt", httpx.Response(200, content=b"abc"))
    server.route("GET", "/api/v1/jobs/7/", job_json(status="succeeded"))

    with pytest.raises(ConnectionFailed, match="sha256"):
        server.client().job(7).download("a.txt", tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []
