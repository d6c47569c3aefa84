"""The double-entry credit ledger (docs/ledger.md).

Only ``ledger.services`` writes these tables. Every amount is an integer of micro-credits. A
posting's amount is added to its account's balance: positive credits the account, negative debits
it; the postings of one transaction sum to zero. Transactions and postings are append-only (on
PostgreSQL, triggers refuse UPDATE and DELETE, and a deferred constraint trigger refuses an
unbalanced transaction at commit).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class AccountKind(models.TextChoices):
    # Per user.
    WALLET = "wallet", "Wallet"
    EARNINGS_PENDING = "earnings_pending", "Earnings (pending)"
    EARNINGS_AVAILABLE = "earnings_available", "Earnings (available)"
    # Per job: the hold on the renter's credits. Its user is the renter who placed it; its
    # organisation, for a pool job, the organisation whose wallet paid the hold (docs/pools.md).
    ESCROW = "escrow", "Escrow"
    # Per organisation: the wallet its admins fund and its members' pool jobs spend from.
    ORGANISATION_WALLET = "organisation_wallet", "Organisation wallet"
    # The platform's own accounts, one row per shard (only revenue uses more than shard 0).
    REVENUE = "revenue", "Platform revenue"
    STRIPE_CLEARING = "stripe_clearing", "Stripe clearing"
    PAYOUTS_CLEARING = "payouts_clearing", "Payouts clearing"
    PLATFORM_LOSS = "platform_loss", "Platform loss"
    GRANTS = "grants", "Platform grants and adjustments"


USER_KINDS = frozenset(
    {AccountKind.WALLET, AccountKind.EARNINGS_PENDING, AccountKind.EARNINGS_AVAILABLE}
)
ORGANISATION_KINDS = frozenset({AccountKind.ORGANISATION_WALLET})
PLATFORM_KINDS = frozenset(
    {
        AccountKind.REVENUE,
        AccountKind.STRIPE_CLEARING,
        AccountKind.PAYOUTS_CLEARING,
        AccountKind.PLATFORM_LOSS,
        AccountKind.GRANTS,
    }
)
# Accounts that hold someone's money and so can never be overdrawn. The platform's own and the
# external mirror accounts may go negative: stripe_clearing mirrors money held at Stripe (its
# balance is minus what came in), platform_loss and grants accumulate what the platform paid.
NON_NEGATIVE_KINDS = frozenset(
    {
        AccountKind.WALLET,
        AccountKind.ORGANISATION_WALLET,
        AccountKind.ESCROW,
        AccountKind.EARNINGS_PENDING,
        AccountKind.EARNINGS_AVAILABLE,
        AccountKind.PAYOUTS_CLEARING,
    }
)


class Account(models.Model):
    """A ledger account with a cached balance (the sum of its postings).

    The balance changes only inside the posting service, under a row lock taken in pk order.
    """

    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_accounts",
    )
    # The organisation an organisation wallet belongs to, and the one that paid a pool job's
    # escrow (its ``user`` stays the renter: who spent). Null for everything else.
    organisation = models.ForeignKey(
        "accounts.Organisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_accounts",
        db_index=False,
    )
    # The job an escrow belongs to. A plain integer, not a foreign key: the ledger knows nothing
    # about the jobs app (dependencies point towards the ledger, never out of it).
    job_id = models.BigIntegerField(null=True, blank=True)
    # Platform accounts that every charge would touch are split into shards so that concurrent
    # charges don't queue on one row (see ledger.services.accounts).
    shard = models.PositiveSmallIntegerField(default=0)
    balance_micros = models.BigIntegerField(default=0)
    must_not_be_negative = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(must_not_be_negative=False) | Q(balance_micros__gte=0),
                name="ledger_account_not_negative",
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind__in=sorted(USER_KINDS),
                        user__isnull=False,
                        job_id__isnull=True,
                        organisation__isnull=True,
                        shard=0,
                    )
                    | Q(kind=AccountKind.ESCROW, user__isnull=False, job_id__isnull=False, shard=0)
                    | Q(
                        kind__in=sorted(ORGANISATION_KINDS),
                        organisation__isnull=False,
                        user__isnull=True,
                        job_id__isnull=True,
                        shard=0,
                    )
                    | Q(
                        kind__in=sorted(PLATFORM_KINDS),
                        user__isnull=True,
                        job_id__isnull=True,
                        organisation__isnull=True,
                    )
                ),
                name="ledger_account_owner_fits_kind",
            ),
            models.UniqueConstraint(
                fields=["kind", "user"],
                condition=Q(kind__in=sorted(USER_KINDS)),
                name="ledger_account_uniq_user_kind",
            ),
            models.UniqueConstraint(
                fields=["job_id"],
                condition=Q(kind=AccountKind.ESCROW),
                name="ledger_account_uniq_escrow_job",
            ),
            models.UniqueConstraint(
                fields=["kind", "organisation"],
                condition=Q(kind__in=sorted(ORGANISATION_KINDS)),
                name="ledger_account_uniq_organisation_kind",
            ),
            models.UniqueConstraint(
                fields=["kind", "shard"],
                condition=Q(kind__in=sorted(PLATFORM_KINDS)),
                name="ledger_account_uniq_platform_shard",
            ),
        ]
        indexes = [
            # A member's pool jobs of one month (the monthly cap, ledger.services.organisation).
            models.Index(
                fields=["organisation", "user", "created_at"],
                condition=Q(kind=AccountKind.ESCROW, organisation__isnull=False),
                name="ledger_account_pool_escrow",
            )
        ]

    def __str__(self) -> str:
        if self.kind == AccountKind.ESCROW:
            return f"escrow of job {self.job_id}"
        if self.organisation_id is not None:
            return f"{self.kind} of organisation {self.organisation_id}"
        if self.user_id is not None:
            return f"{self.kind} of user {self.user_id}"
        return f"{self.kind}#{self.shard}" if self.shard else str(self.kind)


class TransactionKind(models.TextChoices):
    PURCHASE = "purchase", "Credit purchase"
    GRANT = "grant", "Staff grant"
    ADJUSTMENT = "adjustment", "Staff adjustment"
    HOLD = "hold", "Hold for a job"
    CAPTURE = "capture", "Usage charge"
    RELEASE = "release", "Hold released"
    REVERSAL = "reversal", "Charges reversed"
    MATURITY = "maturity", "Earnings matured"
    # Payments (ledger/payments/money.py, docs/payments.md).
    REFUND = "refund", "Purchase refunded or disputed"
    PAYOUT = "payout", "Payout requested"
    PAYOUT_PAID = "payout_paid", "Payout transferred"
    PAYOUT_REVERSAL = "payout_reversal", "Payout failed"


class LedgerTransaction(models.Model):
    """One balanced, append-only set of postings, named by a unique idempotency key."""

    # Unique through the constraint below rather than unique=True, which on PostgreSQL would add
    # a second (pattern-matching) index that every charge pays to maintain.
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=TransactionKind.choices)
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The staff member behind a grant or adjustment.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # The job (and attempt) a hold, capture, release or reversal belongs to; also in metadata.
    job_id = models.BigIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    # The host a capture ran on (and a reversal of its charges), for per-host reports. A plain
    # integer like job_id: the ledger imports nothing from the hosts app. Metering passes it to
    # hold_capture; captures posted without it are reported as "no host".
    host_id = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    # Not a column: the posting service sets it on the instance it returns when the key had been
    # posted before and this is that first transaction.
    is_replay = False

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key"], name="ledger_txn_uniq_key")]
        indexes = [
            models.Index(fields=["job_id", "attempt"], name="ledger_txn_job_attempt"),
            models.Index(
                fields=["host_id", "created_at"],
                name="ledger_txn_host_created",
                condition=Q(host_id__isnull=False),
            ),
        ]
        permissions = [("adjust_credits", "Can grant or adjust credits")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class Posting(models.Model):
    """One line of a transaction: ``amount_micros`` added to ``account``'s balance."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    # Indexed together with the id below (an account's lines, newest first).
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    amount_micros = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount_micros=0), name="ledger_posting_amount_not_zero"
            )
        ]
        indexes = [models.Index(fields=["account", "id"], name="ledger_posting_account_id")]

    def __str__(self) -> str:
        return f"{self.amount_micros:+d} on account {self.account_id}"


class ReconciliationMode(models.TextChoices):
    # Every posting, transaction and account, from scratch.
    FULL = "full", "Full"
    # The postings after the checkpoint, against the sums kept up to it (docs/ledger.md).
    INCREMENTAL = "incremental", "Incremental"


class ReconciliationRun(models.Model):
    """The outcome of one ``ledger_reconcile``: which checks ran and every problem found."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    is_clean = models.BooleanField()
    checks = models.JSONField(default=list)
    mode = models.CharField(
        max_length=12, choices=ReconciliationMode.choices, default=ReconciliationMode.FULL
    )
    # Why a run was full (the first one, the daily one, asked for, a problem found); "" when
    # incremental.
    reason = models.CharField(max_length=200, blank=True)
    # What this run read: for a full run every account and transaction, for an incremental run
    # those the postings after the checkpoint touched (and the open escrows).
    accounts_checked = models.PositiveIntegerField(default=0)
    transactions_checked = models.PositiveIntegerField(default=0)
    postings_checked = models.PositiveBigIntegerField(default=0)
    # The checkpoint after the run: the postings up to this id are in the kept sums.
    through_posting_id = models.BigIntegerField(default=0)
    problem_count = models.PositiveIntegerField(default=0)
    # [{"invariant", "message", "account_id", "transaction_id", "job_id", "expected_micros",
    #   "actual_micros"}], at most RECONCILE_PROBLEMS_KEPT of them.
    problems = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["-started_at"], name="ledger_recon_started")]

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M} ({self.problem_count} problems)"


class LedgerCheckpoint(models.Model):
    """How far a periodic ledger job has taken the postings: one row per job, by name.

    ``posting_id`` and ``transaction_id`` are a *safe horizon* (ledger.services.horizon): no
    posting or transaction with an id up to them can still commit. Written only by that job,
    under this row's lock (reconciliation) or by a monotone update (maturity). Derived data,
    not money: deleting the rows costs one slow run, nothing else.
    """

    name = models.CharField(max_length=32, primary_key=True)
    posting_id = models.BigIntegerField(default=0)
    transaction_id = models.BigIntegerField(default=0)
    # Reconciliation: when the last full run was, and whether the last run was clean.
    full_at = models.DateTimeField(null=True, blank=True)
    is_clean = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} through posting {self.posting_id}"


# An escrow whose job reconciliation still asks about on every run: money left in it, or its
# job not yet seen settled (its recorded cost not compared yet).
RECONCILED_OPEN_JOB = Q(job_id__isnull=False) & (~Q(postings_micros=0) | Q(job_settled=False))


class ReconciledAccount(models.Model):
    """One account's postings summed up to the reconciliation checkpoint
    (``LedgerCheckpoint`` "reconcile"): what an incremental run adds the newer postings to.

    Written only by ``ledger_reconcile``, under the checkpoint's lock; a full run rebuilds them
    all from the postings.
    """

    account = models.OneToOneField(
        Account, on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    # The escrow's job (null for other accounts).
    job_id = models.BigIntegerField(null=True, blank=True)
    postings_micros = models.BigIntegerField(default=0)
    # By the kind of their transaction: maturity; payout and payout_reversal; capture and
    # reversal (an escrow's charges, negative).
    matured_micros = models.BigIntegerField(default=0)
    payouts_micros = models.BigIntegerField(default=0)
    charged_micros = models.BigIntegerField(default=0)
    # The job's facts said it settled (its recorded cost final) when its cost was compared.
    job_settled = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(
                fields=["job_id"], condition=RECONCILED_OPEN_JOB, name="ledger_reconciled_open_job"
            )
        ]

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.postings_micros} through the checkpoint"


class MaturityState(models.Model):
    """Where maturity stands for one earnings_pending account (ledger.services.earnings).

    Every posting on the account up to ``posting_id`` is either due at ``cutoff`` (counted
    through the balance) or in a ``MaturityWaiting`` row; ``waiting_micros`` is their sum,
    ``unsettled_jobs`` how many of them are jobs not settled yet, ``next_due_at`` when the
    earliest of the others is due.
    Written only under the account's lock, in the owner's maturity transaction.
    """

    account = models.OneToOneField(
        Account, on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    posting_id = models.BigIntegerField(default=0)
    cutoff = models.DateTimeField()
    waiting_micros = models.BigIntegerField(default=0)
    # How many of the rows are jobs not settled yet, and when the earliest of the others is due
    # (so that a run reads the rows only when there is something to find).
    unsettled_jobs = models.PositiveIntegerField(default=0)
    next_due_at = models.DateTimeField(null=True, blank=True)
    # Decided by the jobs' settlement (a job facts provider was registered), or by age only.
    by_jobs = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"maturity of account {self.account_id} at {self.cutoff:%Y-%m-%d %H:%M}"


class MaturityWaiting(models.Model):
    """Pending earnings not yet due: a job's that has not settled (``due_at`` null, one row per
    job), or what becomes due at ``due_at`` (a settled job's, a young capture)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    job_id = models.BigIntegerField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # The job's latest capture (rows of jobs not settled yet): due no earlier than that.
    last_capture_at = models.DateTimeField(null=True, blank=True)
    amount_micros = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "job_id"],
                condition=Q(due_at__isnull=True),
                name="ledger_waiting_uniq_unsettled_job",
            )
        ]
        indexes = [
            models.Index(
                fields=["due_at"], condition=Q(due_at__isnull=False), name="ledger_waiting_due"
            ),
            models.Index(
                fields=["job_id"], condition=Q(due_at__isnull=True), name="ledger_waiting_unsettled"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount_micros} waiting on account {self.account_id}"


class RestrictionReason(models.TextChoices):
    REFUND = "refund", "Refund of spent credits"
    DISPUTE = "dispute", "Lost dispute of spent credits"


class AccountRestriction(models.Model):
    """A renter owes the platform credits that a refund or lost dispute could not take back.

    While any restriction is open the user can place no new job holds and request no
    payouts. Later purchases repay the shortfall first; the restriction lifts when
    ``recovered_micros`` reaches ``shortfall_micros`` or staff write the rest off.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="restrictions"
    )
    # The payment whose refund or dispute left the shortfall. Named by app label, not imported:
    # the ledger core imports nothing from payments (docs/ledger.md, "Restrictions").
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, related_name="restrictions"
    )
    reason = models.CharField(max_length=16, choices=RestrictionReason.choices)
    shortfall_micros = models.PositiveBigIntegerField()
    recovered_micros = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        # The table it had when it lived in payments (migration 0005 moved only the model).
        db_table = "payments_accountrestriction"
        constraints = [
            models.CheckConstraint(
                condition=Q(recovered_micros__lte=F("shortfall_micros")),
                name="restriction_recovered_within_shortfall",
            ),
        ]
        indexes = [
            models.Index(
                fields=["user"], condition=Q(lifted_at__isnull=True), name="restriction_open"
            )
        ]

    def __str__(self) -> str:
        return f"restriction {self.pk} of user {self.user_id} ({self.outstanding_micros} µcr)"

    @property
    def outstanding_micros(self) -> int:
        return self.shortfall_micros - self.recovered_micros
