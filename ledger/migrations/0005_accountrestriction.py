import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """AccountRestriction moves from payments into the ledger core (issue 10): the model only.

    The table, its rows, its index and its constraints stay as they are
    (``payments_accountrestriction``, kept as the model's db_table); this migration creates the
    model in the ledger's state and payments 0002 deletes it from payments' state. Nothing runs
    on the database, so no row is copied and none can be lost.
    """

    dependencies = [
        ("ledger", "0004_transaction_host_id"),
        ("payments", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AccountRestriction",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "reason",
                            models.CharField(
                                choices=[
                                    ("refund", "Refund of spent credits"),
                                    ("dispute", "Lost dispute of spent credits"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("shortfall_micros", models.PositiveBigIntegerField()),
                        ("recovered_micros", models.PositiveBigIntegerField(default=0)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("lifted_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "lifted_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "payment",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="restrictions",
                                to="payments.payment",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="restrictions",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "payments_accountrestriction",
                        "indexes": [
                            models.Index(
                                condition=models.Q(("lifted_at__isnull", True)),
                                fields=["user"],
                                name="restriction_open",
                            )
                        ],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("recovered_micros__lte", models.F("shortfall_micros"))
                                ),
                                name="restriction_recovered_within_shortfall",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
