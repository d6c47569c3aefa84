from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.idempotency import idempotency_records_prune
from accounts.models import IdempotencyRecord, IdempotencyState, Organisation
from accounts.tasks import idempotency_records_prune_task
from tests.accounts.idempotency_urls import GATE, Gate

pytestmark = pytest.mark.urls("tests.accounts.idempotency_urls")

THINGS = "/api/things/"


@pytest.fixture(autouse=True)
def _fresh_gate():
    fresh = Gate()
    GATE.entered, GATE.release, GATE.fail_next = fresh.entered, fresh.release, fresh.fail_next


def _post(client: APIClient, body: dict[str, object], key: str | None, url: str = THINGS):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url, body, format="json", headers=headers)


def _error(code: str, message: str, fields: dict[str, object] | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


@pytest.mark.django_db
def test_without_a_key_every_request_runs(client_for, alice):
    # given
    client = client_for(alice)

    # when
    statuses = [_post(client, {"name": f"t{i}"}, None).status_code for i in range(2)]

    # then
    assert statuses == [201, 201]
    assert Organisation.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_repeat_returns_the_first_response(client_for, alice):
    # given
    client = client_for(alice)
    first = _post(client, {"name": "one"}, "key-1")

    # when
    repeat = _post(client, {"name": "one"}, "key-1")

    # then
    assert first.status_code == 201
    assert repeat.status_code == 201
    assert repeat.json() == first.json() == {"id": Organisation.objects.get().pk, "name": "one"}
    assert repeat["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    record = IdempotencyRecord.objects.get()
    assert (record.user, record.endpoint, record.key) == (alice, "POST /api/things/", "key-1")
    assert record.state == IdempotencyState.COMPLETED
    assert (record.response_status, record.response_body) == (201, first.json())


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_422(client_for, alice):
    # given
    client = client_for(alice)
    _post(client, {"name": "one"}, "key-1")
    record_before = IdempotencyRecord.objects.values().get()

    # when
    response = _post(client, {"name": "two"}, "key-1")

    # then
    assert response.status_code == 422
    assert response.json() == _error(
        "idempotency_key_reused",
        "This Idempotency-Key was already used with a different request body.",
    )
    assert list(Organisation.objects.values_list("name", flat=True)) == ["one"]
    assert IdempotencyRecord.objects.values().get() == record_before


@pytest.mark.django_db
def test_keys_are_scoped_per_user_and_endpoint(client_for, alice, mallory):
    # when
    statuses = [
        _post(client_for(alice), {"name": "a"}, "shared").status_code,
        _post(client_for(mallory), {"name": "m"}, "shared").status_code,
        _post(client_for(alice), {"name": "o"}, "shared", url="/api/other-things/").status_code,
    ]

    # then
    assert statuses == [201, 201, 201]
    assert sorted(Organisation.objects.values_list("name", flat=True)) == ["a", "m", "o"]
    assert IdempotencyRecord.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_an_empty_or_too_long_key_is_400(client_for, alice, key):
    # when
    response = _post(client_for(alice), {"name": "one"}, key)

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "invalid_idempotency_key",
        "Idempotency-Key must be 1 to 255 characters.",
        {"Idempotency-Key": ["Must be 1 to 255 characters."]},
    )
    assert Organisation.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_key_of_255_characters_is_fine(client_for, alice):
    # when
    response = _post(client_for(alice), {"name": "one"}, "k" * 255)

    # then
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().key == "k" * 255


@pytest.mark.django_db
def test_a_required_key_that_is_missing_is_400(client_for, alice):
    # when
    response = _post(client_for(alice), {"name": "one"}, None, url="/api/strict-things/")

    # then
    assert response.status_code == 400
    assert response.json() == _error(
        "idempotency_key_required",
        "This endpoint requires an Idempotency-Key header.",
        {"Idempotency-Key": ["This header is required."]},
    )
    assert Organisation.objects.count() == 0


@pytest.mark.django_db
def test_an_anonymous_request_with_a_key_is_401(api):
    # when
    response = _post(api, {"name": "one"}, "key-1", url="/api/open-things/")

    # then
    assert response.status_code == 401
    assert Organisation.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_when_the_view_raises_the_key_is_let_go_and_a_retry_runs(client_for, alice):
    # given
    client = client_for(alice)
    GATE.fail_next = True

    # when
    failed = _post(client, {"name": "one"}, "key-1")

    # then
    assert failed.status_code == 402
    assert failed.json() == _error("insufficient_credits", "Not enough credits.")
    assert IdempotencyRecord.objects.count() == 0
    assert Organisation.objects.count() == 0

    # when
    retried = _post(client, {"name": "one"}, "key-1")

    # then
    assert retried.status_code == 201
    assert Organisation.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyState.COMPLETED


@pytest.mark.django_db
def test_a_duplicate_while_the_first_is_processing_is_409(client_for, alice):
    # given: the first request is still running (its row says so)
    client = client_for(alice)
    _post(client, {"name": "one"}, "key-1")
    IdempotencyRecord.objects.update(
        state=IdempotencyState.PROCESSING, response_status=None, response_body=None
    )

    # when
    response = _post(client, {"name": "one"}, "key-1")

    # then
    assert response.status_code == 409
    assert response.json() == _error(
        "idempotency_key_in_progress",
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    )
    assert Organisation.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyState.PROCESSING


@pytest.mark.django_db
def test_a_key_left_processing_by_a_crash_is_reclaimed_after_the_timeout(
    client_for, alice, settings
):
    # given: a request that died mid-flight long ago
    client = client_for(alice)
    _post(client, {"name": "one"}, "key-1")
    Organisation.objects.all().delete()
    long_ago = timezone.now() - timedelta(
        seconds=settings.IDEMPOTENCY_PROCESSING_TIMEOUT_SECONDS + 1
    )
    IdempotencyRecord.objects.update(
        state=IdempotencyState.PROCESSING,
        response_status=None,
        response_body=None,
        started_at=long_ago,
    )

    # when
    response = _post(client, {"name": "one"}, "key-1")

    # then
    assert response.status_code == 201
    assert Organisation.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.state == IdempotencyState.COMPLETED
    assert record.started_at > long_ago


@pytest.mark.django_db
def test_prune_deletes_records_past_their_ttl(client_for, alice, settings):
    # given
    client = client_for(alice)
    _post(client, {"name": "old"}, "old")
    _post(client, {"name": "new"}, "new")
    ttl = timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    IdempotencyRecord.objects.filter(key="old").update(
        started_at=timezone.now() - ttl - timedelta(seconds=1)
    )

    # when
    deleted = idempotency_records_prune()

    # then
    assert deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_beat_runs_the_prune_task(settings):
    # then
    entry = settings.CELERY_BEAT_SCHEDULE["idempotency-records-prune"]
    assert entry["task"] == idempotency_records_prune_task.name


@pytest.mark.django_db
def test_the_prune_task_prunes(client_for, alice, settings):
    # given
    _post(client_for(alice), {"name": "old"}, "old")
    IdempotencyRecord.objects.update(started_at=timezone.now() - timedelta(days=30))

    # when
    deleted = idempotency_records_prune_task.delay().get()

    # then
    assert deleted == 1
    assert IdempotencyRecord.objects.count() == 0


def test_the_schema_documents_the_header():
    # given
    reset_generator_stats()

    # when
    schema = SchemaGenerator(urlconf="tests.accounts.idempotency_urls").get_schema(
        request=None, public=True
    )

    # then
    assert not GENERATOR_STATS

    def header(path: str) -> dict[str, object]:
        (parameter,) = schema["paths"][path]["post"]["parameters"]
        return {
            "in": parameter["in"],
            "name": parameter["name"],
            "required": parameter.get("required", False),
        }

    assert header("/api/things/") == {"in": "header", "name": "Idempotency-Key", "required": False}
    assert header("/api/strict-things/") == {
        "in": "header",
        "name": "Idempotency-Key",
        "required": True,
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_duplicates_run_the_view_once(alice):
    # given: ten threads post the same key and body at once; the winner is held in the view
    threads_count = 10
    results: list[tuple[int, object]] = []
    done = threading.Condition()
    start = threading.Barrier(threads_count)

    def post() -> None:
        client = APIClient()
        client.force_authenticate(alice)
        try:
            start.wait(timeout=10)
            response = _post(client, {"name": "once"}, "race", url="/api/slow-things/")
            with done:
                results.append((response.status_code, response.json()))
                done.notify_all()
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(threads_count)]

    # when
    for thread in threads:
        thread.start()
    assert GATE.entered.wait(timeout=10)
    with done:
        # every duplicate is answered while the first is still inside the view
        assert done.wait_for(lambda: len(results) == threads_count - 1, timeout=10)
    GATE.release.set()
    for thread in threads:
        thread.join(timeout=10)

    # then
    organisation = Organisation.objects.get()
    first = {"id": organisation.pk, "name": "once"}
    in_progress = _error(
        "idempotency_key_in_progress",
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    )
    assert sorted(results, key=lambda r: r[0]) == [(201, first)] + [(409, in_progress)] * 9
    assert IdempotencyRecord.objects.get().state == IdempotencyState.COMPLETED
    # and a later repeat gets the first response
    client = APIClient()
    client.force_authenticate(alice)
    replay = _post(client, {"name": "once"}, "race", url="/api/slow-things/")
    assert (replay.status_code, replay.json()) == (201, first)
    assert Organisation.objects.count() == 1


@pytest.mark.django_db
def test_a_multipart_body_read_by_the_csrf_check_is_fingerprinted_by_content(alice):
    # given: a browser session; Django's CSRF check parses the multipart body first
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/api/v1/auth/csrf/")
    csrf = browser.cookies["csrftoken"].value

    def upload(content: bytes, key: str = "k"):
        file = SimpleUploadedFile("main.py", content)
        return browser.post(
            THINGS,
            {"name": "one", "file": file, "csrfmiddlewaretoken": csrf},
            format="multipart",
            headers={"Idempotency-Key": key},
        )

    # when
    first = upload(b"print(1)")
    repeat = upload(b"print(1)")
    other = upload(b"print(2)")

    # then
    assert (first.status_code, repeat.status_code, other.status_code) == (201, 201, 422)
    assert repeat.json() == first.json()
    assert Organisation.objects.count() == 1
