"""PostgreSQL guard: the database itself keeps a pool's audit trail append-only
(docs/pools.md, "Audit"). Any UPDATE or DELETE of an entry is refused; TRUNCATE is left
alone (test teardown and disaster recovery use it), as for the ledger
(ledger/migrations/0002_append_only_triggers.py).

SQLite has no such triggers: there only the one writer (``jobs.services.audit``), which only
inserts, guards it. These operations are no-ops on any database but PostgreSQL.
"""

from collections.abc import Callable

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

FORWARD = """
CREATE FUNCTION jobs_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER jobs_poolauditevent_append_only
    BEFORE UPDATE OR DELETE ON jobs_poolauditevent
    FOR EACH ROW EXECUTE FUNCTION jobs_audit_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS jobs_poolauditevent_append_only ON jobs_poolauditevent;
DROP FUNCTION IF EXISTS jobs_audit_refuse_change();
"""


def _on_postgres(sql: str) -> Callable[[StateApps, BaseDatabaseSchemaEditor], None]:
    def run(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            # No parameters: the % signs belong to PL/pgSQL's RAISE, not to the driver.
            schema_editor.execute(sql, None)

    return run


class Migration(migrations.Migration):
    dependencies = [("jobs", "0010_pools")]

    operations = [migrations.RunPython(_on_postgres(FORWARD), _on_postgres(BACKWARD))]
