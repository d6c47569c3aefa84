"""``manage.py organisation_grant ORGANISATION_ID AMOUNT_MICROS --staff USERNAME --reason TEXT
[--key KEY]``: a staff grant into an organisation's wallet (docs/pools.md, "The institution
pays").

Posts grants -> organisation_wallet through ``ledger.services.organisation_credit`` in one
durable transaction. The key defaults to one made for this run; pass ``--key`` to make a
rerun of the same grant post nothing new (a repeat with another amount is refused).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organisation, User
from config.errors import ServiceError
from config.transactions import durable_call
from ledger.services import organisation_credit


class Command(BaseCommand):
    help = "Grant credits to an organisation's wallet (staff)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organisation_id", type=int)
        parser.add_argument("amount_micros", type=int)
        parser.add_argument("--staff", required=True, help="the active staff user granting")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--key", default="", help="idempotency key (default: a new one)")

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = Organisation.objects.filter(pk=options["organisation_id"]).first()
        if organisation is None:
            raise CommandError(f"no organisation #{options['organisation_id']}")
        staff = User.objects.filter(username=options["staff"]).first()
        if staff is None:
            raise CommandError(f"no user {options['staff']!r}")
        key = options["key"] or f"organisation-grant:{secrets.token_hex(12)}"
        try:
            posted = durable_call(
                organisation_credit,
                organisation=organisation,
                amount_micros=options["amount_micros"],
                key=key,
                reason=options["reason"],
                staff_user=staff,
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        replay = " (posted before: nothing new)" if posted.is_replay else ""
        self.stdout.write(
            f"granted {options['amount_micros']} micro-credits to {organisation.name} "
            f"(transaction {posted.pk}, key {key}){replay}"
        )
