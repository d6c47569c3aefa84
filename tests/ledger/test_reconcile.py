"""ledger_reconcile finds every broken invariant, records the run, and changes no money."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from accounts.models import User
from ledger.models import Account, AccountKind, LedgerTransaction, Posting, ReconciliationRun
from ledger.providers import providers
from ledger.services import JobFact, hold_capture, hold_place, ledger_reconcile, wallet_credit
from ledger.tasks import ledger_reconcile_task
from tests.ledger.helpers import ledger_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(alice: User, hana: User) -> None:
    """Alice holds 1,000 for job 5 (cap 1,000) and was charged 600 of it."""
    wallet_credit(user=alice, amount_micros=2_000, key="buy", reason="card payment")
    hold_place(user=alice, job_id=5, amount_micros=1_000, key="hold:5")
    hold_capture(job_id=5, attempt=1, host_owner=hana, gross_micros=600, fee_micros=60, key="u:5")


def _problems(report: Any) -> list[tuple[str, int | None, int | None]]:
    return [(p.invariant, p.expected_micros, p.actual_micros) for p in report.problems]


def test_a_healthy_ledger_is_clean_and_the_run_is_recorded(busy: None) -> None:
    # given
    before = ledger_state()
    # when
    report = ledger_reconcile()
    # then
    assert (report.is_clean, report.problems) == (True, [])
    assert (report.accounts_checked, report.transactions_checked) == (5, 3)
    run = ReconciliationRun.objects.get()
    assert (run.pk, run.is_clean, run.problem_count, run.problems) == (report.run_id, True, 0, [])
    assert run.checks == [
        "transaction_balanced",
        "balance_matches_postings",
        "no_forbidden_negative",
        "payouts_within_matured",
        "platform_loss_paths",
    ]
    assert ledger_state() == before


def test_a_cached_balance_that_drifted_is_reported(busy: None, alice: User) -> None:
    # given: someone wrote a balance behind the posting service's back
    wallet = Account.objects.get(kind=AccountKind.WALLET, user=alice)
    Account.objects.filter(pk=wallet.pk).update(balance_micros=1_001)
    # when
    report = ledger_reconcile()
    # then
    assert _problems(report) == [("balance_matches_postings", 1_000, 1_001)]
    assert report.problems[0].account_id == wallet.pk
    assert (
        report.problems[0].message
        == f"wallet of user {alice.pk}: cached 1001, postings sum to 1000"
    )


def test_an_unbalanced_transaction_and_a_negative_rebuilt_balance_are_reported(
    busy: None, alice: User
) -> None:
    # given: a transaction written behind the service's back that takes 5,000 from a wallet
    # holding 1,000 and puts back only 4,999 (on PostgreSQL the deferred trigger would refuse
    # it at commit, so it is rolled back before that)
    wallet = Account.objects.get(kind=AccountKind.WALLET, user=alice)
    stripe = Account.objects.get(kind=AccountKind.STRIPE_CLEARING)
    with transaction.atomic():
        txn = LedgerTransaction.objects.create(key="forged", kind="adjustment")
        Posting.objects.create(transaction=txn, account=wallet, amount_micros=-5_000)
        Posting.objects.create(transaction=txn, account=stripe, amount_micros=4_999)
        # when
        report = ledger_reconcile()
        run = ReconciliationRun.objects.get()
        transaction.set_rollback(True)
    # then
    assert _problems(report) == [
        ("transaction_balanced", 0, -1),
        ("balance_matches_postings", 2_999, -2_000),
        ("balance_matches_postings", -4_000, 1_000),
        ("no_forbidden_negative", 0, -4_000),
    ]
    assert report.problems[0].transaction_id == txn.pk
    assert report.problems[3].account_id == wallet.pk
    assert (run.is_clean, run.problem_count, len(run.problems)) == (False, 4, 4)
    assert run.problems[0]["invariant"] == "transaction_balanced"


def test_job_facts_check_finished_escrows_and_caps(busy: None) -> None:
    # given: job 5 is finished but its escrow still holds 400, and its cap was 500
    asked: list[frozenset[int]] = []

    def facts(job_ids: frozenset[int]) -> Mapping[int, JobFact]:
        asked.append(job_ids)
        return {5: JobFact(is_finished=True, cap_micros=500)}

    # when
    report = ledger_reconcile(job_facts=facts)
    # then
    assert asked == [frozenset({5})]
    assert _problems(report) == [
        ("finished_job_escrow_empty", 0, 400),
        ("charges_within_cap", 500, 600),
    ]
    assert report.problems[0].job_id == 5
    assert report.checks[-3:] == [
        "finished_job_escrow_empty",
        "charges_within_cap",
        "job_cost_matches_charges",
    ]


def test_a_running_job_within_its_cap_is_fine(busy: None) -> None:
    report = ledger_reconcile(job_facts=lambda ids: {5: JobFact(is_finished=False, cap_micros=600)})
    assert report.is_clean


def running_job_facts(job_ids: frozenset[int]) -> Mapping[int, JobFact]:
    return {job_id: JobFact(is_finished=True) for job_id in job_ids}


def test_the_job_facts_provider_is_the_registered_one(
    busy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    monkeypatch.setattr(providers, "job_facts", running_job_facts)
    # when
    report = ledger_reconcile()
    # then
    assert _problems(report) == [("finished_job_escrow_empty", 0, 400)]


def test_the_beat_task_runs_the_reconciliation(busy: None) -> None:
    # when
    result = ledger_reconcile_task.delay().get()
    # then
    run = ReconciliationRun.objects.get()
    assert result == {"run_id": run.pk, "is_clean": True, "problem_count": 0}


def test_the_command_runs_a_reconciliation_and_fails_when_it_is_not_clean(
    busy: None, alice: User
) -> None:
    # when: the first run, the next one (after a purchase), and one asked to be full
    outputs = []
    for arguments in ([], [], ["--full"]):
        out = io.StringIO()
        call_command("ledger_reconcile", *arguments, stdout=out)
        outputs.append(out.getvalue())
        if not arguments and len(outputs) == 1:
            wallet_credit(user=alice, amount_micros=5, key="buy-more", reason="card payment")
    # then
    assert [ReconciliationRun.objects.get(pk=int(o.split()[2][:-1])).mode for o in outputs] == [
        "full",
        "incremental",
        "full",
    ]
    assert "full (the first run)" in outputs[0]
    # the purchase's 2 postings, and on PostgreSQL, inside the test's transaction (which had
    # written), every posting: there the checkpoint can't pass an open transaction's ids
    read = int(outputs[1].split(" postings checked")[0].split()[-1])
    assert read == (2 if connection.vendor == "sqlite" else Posting.objects.count())
    assert "full (asked for)" in outputs[2]
    assert all(output.endswith("clean\n") for output in outputs)
    # when: a balance drifted
    Account.objects.filter(kind=AccountKind.WALLET, user=alice).update(balance_micros=1)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"not clean: 1 problem\(s\)"):
        call_command("ledger_reconcile", "--full", stdout=out)
    # then: the problem is printed
    assert "balance_matches_postings: wallet of user" in out.getvalue()
