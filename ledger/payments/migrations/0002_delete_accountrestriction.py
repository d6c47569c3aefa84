from django.db import migrations


class Migration(migrations.Migration):
    """AccountRestriction now lives in the ledger core (ledger 0005): removed from payments'
    state only; the table and its rows stay, now the ledger model's."""

    dependencies = [
        ("payments", "0001_initial"),
        ("ledger", "0005_accountrestriction"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AccountRestriction")],
            database_operations=[],
        ),
    ]
